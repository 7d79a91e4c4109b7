import { describe, expect, it } from 'vitest';
import { assertFeatures, loadModel, matrixFromColumns, seededRng, trainGbdt, type Matrix } from './index.ts';

function rmse(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += ((a[i] as number) - (b[i] as number)) ** 2;
  return Math.sqrt(s / a.length);
}

/**
 * `n` rows of `signal` and `noise`, both uniform on a grid of 200 values in [0,1) (so that
 * every value has its own bin and a step can be cut exactly), y = f(signal) (+ noise on y).
 */
function data(n: number, seed: number, f: (x: number) => number, yNoise = 0): { x: Matrix; y: Float64Array } {
  const rng = seededRng(seed);
  const signal = new Float64Array(n);
  const noise = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    signal[i] = rng.int(200) / 200;
    noise[i] = rng.int(200) / 200;
    y[i] = f(signal[i] as number) + yNoise * rng.normal();
  }
  return { x: matrixFromColumns({ signal, noise }), y };
}

const step = (x: number) => (x < 0.4 ? 1 : 5);

describe('trainGbdt', () => {
  it('learns a noiseless step exactly', () => {
    const { x, y } = data(2000, 1, step);
    const model = trainGbdt(x, y, { nEstimators: 200, maxDepth: 2, eta: 0.3, lambda: 0 });
    expect(rmse(model.predict(x), y)).toBeLessThan(1e-6);
    const test = data(500, 2, step);
    expect(rmse(model.predict(test.x), test.y)).toBeLessThan(0.05);
  });

  it('gives a pure-noise feature (near) zero importance and the informative one most', () => {
    const { x, y } = data(3000, 3, step);
    const model = trainGbdt(x, y, { nEstimators: 50, maxDepth: 3, eta: 0.3 });
    const imp = Object.fromEntries(model.importance().map((i) => [i.feature, i.gain]));
    const total = (imp.signal ?? 0) + (imp.noise ?? 0);
    expect((imp.signal ?? 0) / total).toBeGreaterThan(0.99);
    expect(model.importance()[0]?.feature).toBe('signal');
  });

  it('is deterministic for a seed, with row and column sampling', () => {
    const { x, y } = data(1500, 4, (v) => Math.sin(6 * v), 0.1);
    const params = { nEstimators: 30, maxDepth: 4, subsample: 0.7, colsampleByTree: 0.5, seed: 42 };
    const a = JSON.stringify(trainGbdt(x, y, params).toJSON());
    expect(JSON.stringify(trainGbdt(x, y, params).toJSON())).toBe(a);
    expect(JSON.stringify(trainGbdt(x, y, { ...params, seed: 43 }).toJSON())).not.toBe(a);
  });

  it('stops early when the validation error starts rising', () => {
    const train = data(300, 5, (v) => Math.sin(6 * v), 1);
    const valid = data(1000, 6, (v) => Math.sin(6 * v), 1);
    const model = trainGbdt(train.x, train.y, { nEstimators: 500, maxDepth: 6, eta: 0.3, minChildWeight: 0, earlyStoppingRounds: 10 }, valid);
    expect(model.bestIteration).toBeDefined();
    expect(model.bestIteration as number).toBeLessThan(100);
    expect((model.toJSON() as { trees: unknown[] }).trees).toHaveLength((model.bestIteration as number) + 1);
  });

  it('learns missing values into a default direction', () => {
    const n = 2000;
    const rng = seededRng(7);
    const a = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const missing = rng.next() < 0.3;
      a[i] = missing ? Number.NaN : rng.int(100) / 100;
      y[i] = missing ? 10 : (a[i] as number) < 0.5 ? 0 : 3;
    }
    const x = matrixFromColumns({ a });
    const model = trainGbdt(x, y, { nEstimators: 100, maxDepth: 2, eta: 0.5, lambda: 0 });
    expect(rmse(model.predict(x), y)).toBeLessThan(1e-6);
    expect([...model.predict(matrixFromColumns({ a: [Number.NaN, 0.1, 0.9] }))].map((v) => Math.round(v * 1000) / 1000)).toEqual([10, 0, 3]);
  });

  it('survives degenerate inputs: one row, a constant column, all-NaN column, tiny subsample', () => {
    const one = trainGbdt(matrixFromColumns({ a: [1] }), Float64Array.of(3), { nEstimators: 3 });
    expect([...one.predict(matrixFromColumns({ a: [5] }))]).toEqual([3]);
    const x = matrixFromColumns({ c: [1, 1, 1, 1], n: [Number.NaN, Number.NaN, Number.NaN, Number.NaN], v: [0, 1, 2, 3] });
    const y = Float64Array.of(0, 0, 10, 10);
    const m = trainGbdt(x, y, { nEstimators: 50, maxDepth: 2, lambda: 0, minChildWeight: 0, subsample: 0.01, seed: 3 });
    expect([...m.predict(x)].every(Number.isFinite)).toBe(true);
  });

  it('saves and loads to identical predictions', () => {
    const { x, y } = data(1000, 8, (v) => v * v, 0.2);
    const model = trainGbdt(x, y, { nEstimators: 20, maxDepth: 4, eta: 0.2 });
    const loaded = loadModel(JSON.parse(JSON.stringify(model.toJSON())));
    expect([...loaded.predict(x)]).toEqual([...model.predict(x)]);
    expect(loaded.featureNames).toEqual(['signal', 'noise']);
    expect(loaded.importance()).toEqual(model.importance());
  });

  it('refuses data whose columns differ, naming them', () => {
    const { x, y } = data(200, 9, step);
    const model = trainGbdt(x, y, { nEstimators: 2 });
    expect(() => assertFeatures(model, ['signal', 'cpu'])).toThrow(/missing column\(s\): noise; extra column\(s\): cpu/);
    expect(() => assertFeatures(model, ['noise', 'signal'])).toThrow(/different order/);
    expect(() => model.predict(matrixFromColumns({ signal: [1], other: [2] }))).toThrow(/missing column\(s\): noise/);
    expect(() => assertFeatures(model, ['signal', 'noise'])).not.toThrow();
  });

  it('rejects bad parameters and inputs with clear errors', () => {
    const { x, y } = data(10, 10, step);
    expect(() => trainGbdt(x, y, { maxBin: 1000, eta: 0 })).toThrow(/eta must be > 0.*maxBin must be an integer in 2..256/);
    expect(() => trainGbdt(x, y.subarray(0, 5))).toThrow(/y has 5 values for 10 rows/);
    expect(() => loadModel({ format: 'herd-gbdt', version: 99 })).toThrow(/version 99 is newer/);
    expect(() => loadModel({ hello: 1 })).toThrow(/neither a herd-gbdt model nor an XGBoost JSON model/);
  });

  it('refuses a validation set without rows or with a non-finite target (early stopping would keep one tree)', () => {
    const { x, y } = data(300, 11, (v) => 10 * v);
    const params = { nEstimators: 50, earlyStoppingRounds: 5 };
    expect(() => trainGbdt(x, y, params, { x: matrixFromColumns({ signal: [], noise: [] }), y: new Float64Array(0) })).toThrow(/validation set has no rows/);
    expect(() => trainGbdt(x, y, params, { x: matrixFromColumns({ signal: [0.5, 0.2], noise: [0.1, 0.1] }), y: Float64Array.of(1, Number.NaN) })).toThrow(/validation y\[1\] is NaN: targets must be finite/);
    expect(() => trainGbdt(x, y, params, { x: matrixFromColumns({ signal: [0.5], noise: [0.1] }), y: Float64Array.of(Number.POSITIVE_INFINITY) })).toThrow(/validation y\[0\] is Infinity/);
  });

  it('records what it predicts and each feature\'s training range, through save and load', () => {
    const x = matrixFromColumns({ a: [3, 1, Number.NaN, 2], b: [Number.NaN, Number.NaN, Number.NaN, Number.NaN], c: [-1, 0, 5, 0.5] });
    const model = trainGbdt(x, Float64Array.of(1, 2, 3, 4), { nEstimators: 2 }, undefined, undefined, { label: 'label' });
    expect(model.label).toBe('label');
    expect(model.featureRanges).toEqual([[1, 3], null, [-1, 5]]);
    const json = JSON.parse(JSON.stringify(model.toJSON())) as Record<string, unknown>;
    expect(json).toMatchObject({ label: 'label', featureRanges: [[1, 3], null, [-1, 5]] });
    const again = loadModel(json);
    expect(again.label).toBe('label');
    expect(again.featureRanges).toEqual([[1, 3], null, [-1, 5]]);
    // A file written before both fields existed still loads; it just does not say.
    const { label: _l, featureRanges: _r, ...old } = json;
    const older = loadModel(old);
    expect(older.label).toBeUndefined();
    expect(older.featureRanges).toBeUndefined();
    expect(() => loadModel({ ...json, featureRanges: [[1, 3], null] })).toThrow(/2 feature ranges for 3 features/);
    expect(() => loadModel({ ...json, featureRanges: [[3, 1], null, null] })).toThrow(/min above max/);
  });

  it('loads only a herd-gbdt model it could have written: version 1, distinct names, names for a Herd-trained model', () => {
    const { x, y } = data(200, 12, step);
    const json = trainGbdt(x, y, { nEstimators: 2 }).toJSON() as Record<string, unknown>;
    expect(() => loadModel(json)).not.toThrow();
    for (const version of [0, -3, 0.5, '1', undefined]) expect(() => loadModel({ ...json, version })).toThrow(/version .* is not one this Herd reads \(1\)/);
    expect(() => loadModel({ ...json, featureNames: ['signal', 'signal'] })).toThrow(/duplicate feature name\(s\): signal/);
    expect(() => loadModel({ ...json, featureNames: [] })).toThrow(/trained by Herd lists no feature names for its 2 features/);
    // A converted XGBoost model without names is read by column position, as XGBoost's own is.
    expect(loadModel({ ...json, source: 'xgboost', featureNames: [] }).featureNames).toEqual([]);
  });
});
