import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { groupDescentSource } from './compiled.ts';
import { Ensemble } from './ensemble.ts';
import { leafValue, treeFromArrays, type Tree } from './tree.ts';

/** A random tree of at most `maxDepth` levels over `cols` features: leaves may come early, any split may send NaN either way. */
function randomTree(seed: number[], cols: number, maxDepth: number): Tree {
  const a = { feature: [] as number[], threshold: [] as number[], defaultLeft: [] as number[], left: [] as number[], right: [] as number[], value: [] as number[], gain: [] as number[] };
  let k = 0;
  const next = () => (seed[k++ % seed.length] as number) / 1000;
  const grow = (depth: number): number => {
    const id = a.feature.length;
    a.feature.push(-1);
    a.threshold.push(0);
    a.defaultLeft.push(0);
    a.left.push(-1);
    a.right.push(-1);
    a.value.push(next() * 10 - 5);
    a.gain.push(0);
    if (depth < maxDepth && next() < 0.8) {
      a.feature[id] = Math.floor(next() * cols);
      a.threshold[id] = next();
      a.defaultLeft[id] = next() < 0.5 ? 1 : 0;
      a.value[id] = 0;
      a.left[id] = grow(depth + 1);
      a.right[id] = grow(depth + 1);
    }
    return id;
  };
  grow(0);
  return treeFromArrays(a);
}

describe('Ensemble', () => {
  it('predicts what walking every tree node by node gives (early leaves, NaN both ways, deep trees, partial blocks)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 999 }), { minLength: 50, maxLength: 200 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 15 }),
        fc.integer({ min: 1, max: 300 }),
        fc.boolean(),
        fc.boolean(),
        (seed, cols, maxDepth, rows, float32, withNaN) => {
          const trees = [0, 1, 2].map((i) => randomTree([...seed.slice(i), ...seed.slice(0, i)], cols, maxDepth));
          const x = new Float64Array(rows * cols);
          for (let i = 0; i < x.length; i++) x[i] = withNaN && (seed[(i * 7) % seed.length] as number) % 13 === 0 ? Number.NaN : ((seed[(i * 3) % seed.length] as number) * (i + 1)) % 1000 / 1000;
          const got = new Ensemble(trees, 0.5, float32).predict(x, rows, cols);
          const xin = float32 ? Float64Array.from(Float32Array.from(x)) : x;
          for (let r = 0; r < rows; r++) {
            let want = float32 ? Math.fround(0.5) : 0.5;
            for (const t of trees) want = float32 ? Math.fround(want + leafValue(t, xin, rows, r)) : want + leafValue(t, xin, rows, r);
            expect(got[r]).toBe(want);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('generated descents', () => {
  it('agree with the generic loops and with walking node by node (early leaves, NaN both ways, blocks of any size)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 999 }), { minLength: 50, maxLength: 200 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 400 }),
        fc.boolean(),
        fc.boolean(),
        (seed, cols, maxDepth, rows, float32, withNaN) => {
          const trees = [0, 1, 2, 3].map((i) => randomTree([...seed.slice(i), ...seed.slice(0, i)], cols, maxDepth));
          const x = new Float64Array(rows * cols);
          for (let i = 0; i < x.length; i++) x[i] = withNaN && (seed[(i * 11) % seed.length] as number) % 17 === 0 ? Number.NaN : ((seed[(i * 3) % seed.length] as number) * (i + 1)) % 1000 / 1000;
          const generated = new Ensemble(trees, 0.25, float32, true).predict(x, rows, cols);
          const generic = new Ensemble(trees, 0.25, float32, false).predict(x, rows, cols);
          expect(generated).toEqual(generic);
          const xin = float32 ? Float64Array.from(Float32Array.from(x)) : x;
          for (let r = 0; r < rows; r++) {
            let want = float32 ? Math.fround(0.25) : 0.25;
            for (const t of trees) want = float32 ? Math.fround(want + leafValue(t, xin, rows, r)) : want + leafValue(t, xin, rows, r);
            expect(generated[r]).toBe(want);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('put only the checked depth and column count into the source: anything else is refused, not compiled', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, -1, 2.5, 0]) {
      expect(() => groupDescentSource(bad, 3, false)).toThrow(/depth must be an integer/);
      expect(() => groupDescentSource(3, bad, false)).toThrow(/cols must be an integer/);
    }
    const src = groupDescentSource(2, 3, true);
    // The numbers in the source are the group's row offsets (multiples of cols), constants of the layout, and nothing from a model.
    expect(src).not.toMatch(/\d\.\d|e[+-]?\d|Infinity|NaN/);
  });

  it('keep non-finite thresholds and leaf values in the arrays (they predict as walking does)', () => {
    const tree = treeFromArrays({ feature: [0, -1, 1, -1, -1], threshold: [Number.POSITIVE_INFINITY, 0, Number.NEGATIVE_INFINITY, 0, 0], defaultLeft: [1, 0, 0, 0, 0], left: [1, -1, 3, -1, -1], right: [2, -1, 4, -1, -1], value: [0, 1.5, 0, Number.NEGATIVE_INFINITY, 2], gain: [0, 0, 0, 0, 0] });
    const rows = 20;
    const x = new Float64Array(rows * 2);
    for (let i = 0; i < x.length; i++) x[i] = i % 5 === 0 ? Number.POSITIVE_INFINITY : i - 10;
    const got = new Ensemble([tree], 1).predict(x, rows, 2);
    for (let r = 0; r < rows; r++) expect(got[r]).toBe(1 + leafValue(tree, x, rows, r));
  });
});
