import { describe, expect, it } from 'vitest';
import { binMatrix } from './binning.ts';
import { histPassSource, plainHistPass } from './grow.ts';
import { seededRng } from './random.ts';
import { trainGbdt } from './train.ts';
import { matrixFromColumns } from './matrix.ts';

describe('binMatrix', () => {
  it('cuts at every distinct value but the smallest when there are few, bin = number of cuts <= value', () => {
    const m = binMatrix(matrixFromColumns({ a: [3, 1, 2, 2, 5, 1] }), 256);
    expect([...(m.cuts[0] as Float64Array)]).toEqual([2, 3, 5]);
    expect([...(m.bins[0] as Uint16Array)]).toEqual([2, 0, 1, 1, 3, 0]);
    expect(m.upper[0]).toBeCloseTo(10 + 1e-5, 12);
  });

  it('spreads the cuts over the values between a heavily repeated smallest value and the largest, as XGBoost does', () => {
    // 80 % zeros, then 2,000 distinct values: the zeros must not use up 80 % of the bins.
    const a = [...Array.from({ length: 8000 }, () => 0), ...Array.from({ length: 2000 }, (_, i) => i + 1)];
    const m = binMatrix(matrixFromColumns({ a }), 256);
    const cuts = m.cuts[0] as Float64Array;
    expect(cuts.length).toBe(255);
    expect(cuts[0]).toBeLessThan(20);
    expect(cuts[254]).toBeGreaterThan(1980);
  });

  it('gives a column with missing values all maxBin value bins and the missing slot after them', () => {
    const a = [...Array.from({ length: 3000 }, (_, i) => i), Number.NaN];
    const m = binMatrix(matrixFromColumns({ a }), 256);
    expect(m.nBins[0]).toBe(256);
    expect((m.bins[0] as Uint16Array)[3000]).toBe(256);
    expect(Math.max(...(m.bins[0] as Uint16Array).subarray(0, 3000))).toBe(255);
  });
});

describe('histogram passes', () => {
  it('are generated only for a checked column count', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 33]) expect(() => histPassSource(bad)).toThrow(/columns per pass/);
    expect(histPassSource(3)).not.toMatch(/\d\.\d|e[+-]?\d|Infinity|NaN/);
  });

  it('add up what the plain loop adds up', () => {
    const rng = seededRng(11);
    const rows = 300;
    const cols = 7;
    const rb = Uint16Array.from({ length: rows * cols }, () => rng.int(9));
    const idx = Uint32Array.from({ length: 200 }, (_, i) => i + rng.int(2));
    const grad = Float64Array.from({ length: rows }, () => rng.normal());
    const col = Int32Array.from([6, 0, 3, 2, 5]);
    const off = Int32Array.from(col, (c) => c * 20);
    const plain = new Float64Array(200);
    plainHistPass(4, plain, rb, cols, idx, grad, 5, 190, col, off, 1);
    const generated = new Float64Array(200);
    new Function('hist', 'rb', 'cols', 'idx', 'grad', 'start', 'end', 'col', 'off', 'from', histPassSource(4))(generated, rb, cols, idx, grad, 5, 190, col, off, 1);
    expect(generated).toEqual(plain);
    expect(plain.some((v) => v !== 0)).toBe(true);
  });

  it('build the same trees with more columns than one pass takes (40, sampled or not)', () => {
    const rng = seededRng(7);
    const cols: Record<string, number[]> = {};
    for (let c = 0; c < 40; c++) cols[`c${c}`] = Array.from({ length: 600 }, () => (rng.next() < 0.05 ? Number.NaN : Math.floor(rng.next() * 50)));
    const y = Float64Array.from({ length: 600 }, (_, r) => ((cols.c37 as number[])[r] as number) > 20 ? 5 : -5);
    const x = matrixFromColumns(cols);
    const model = trainGbdt(x, y, { nEstimators: 5, maxDepth: 3 });
    expect(model.importance()[0]?.feature).toBe('c37');
    const sampled = trainGbdt(x, y, { nEstimators: 20, maxDepth: 3, colsampleByTree: 0.9, seed: 3 });
    expect(sampled.importance()[0]?.feature).toBe('c37');
  });
});
