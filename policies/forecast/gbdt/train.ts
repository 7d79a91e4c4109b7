/**
 * `trainGbdt`: gradient boosting of regression trees for squared error, in the manner of
 * XGBoost's `hist` method. Start from the mean of y (base score); every round takes the
 * gradients `pred − y`, samples rows (`subsample`, Bernoulli) and columns
 * (`colsampleByTree`, without replacement) with the seeded PRNG, grows a tree on bin
 * histograms (grow.ts) and adds it. With a validation set and `earlyStoppingRounds`,
 * training stops once the validation RMSE has not improved for that many rounds, and the
 * model keeps the trees up to the best round (`bestIteration`, 0-based). A validation set
 * must have rows and finite targets: with none, or with a NaN among them, the RMSE never
 * improves after round 0 and early stopping would silently keep one tree.
 *
 * The model records each feature's [min, max] over the training rows (`featureRanges`) and,
 * when the caller says, what it predicts (`label`): see model.ts.
 */
import { binMatrix, type BinnedMatrix } from './binning.ts';
import { TreeGrower } from './grow.ts';
import type { Matrix } from './matrix.ts';
import { TreeModel, assertFeatures, type FeatureRange, type GbdtModel, type GbdtParams } from './model.ts';
import { seededRng } from './random.ts';
import { leafValue, type Tree } from './tree.ts';

/** XGBoost's defaults, 100 rounds. */
export const DEFAULT_PARAMS: GbdtParams = {
  nEstimators: 100,
  maxDepth: 6,
  eta: 0.3,
  lambda: 1,
  gamma: 0,
  minChildWeight: 1,
  subsample: 1,
  colsampleByTree: 1,
  maxBin: 256,
  seed: 0,
};

export function resolveParams(params: Partial<GbdtParams>): GbdtParams {
  const p: GbdtParams = { ...DEFAULT_PARAMS };
  for (const [k, v] of Object.entries(params)) if (v !== undefined) (p as unknown as Record<string, unknown>)[k] = v;
  const bad: string[] = [];
  const check = (name: keyof GbdtParams, ok: boolean, what: string) => {
    if (!ok) bad.push(`${name} must be ${what}, got ${String(p[name])}`);
  };
  const int = (v: unknown) => typeof v === 'number' && Number.isInteger(v);
  check('nEstimators', int(p.nEstimators) && p.nEstimators >= 0, 'an integer >= 0');
  check('maxDepth', int(p.maxDepth) && p.maxDepth >= 0 && p.maxDepth <= 30, 'an integer in 0..30');
  check('eta', p.eta > 0, '> 0');
  check('lambda', p.lambda >= 0, '>= 0');
  check('gamma', p.gamma >= 0, '>= 0');
  check('minChildWeight', p.minChildWeight >= 0, '>= 0');
  check('subsample', p.subsample > 0 && p.subsample <= 1, 'in (0, 1]');
  check('colsampleByTree', p.colsampleByTree > 0 && p.colsampleByTree <= 1, 'in (0, 1]');
  check('maxBin', int(p.maxBin) && p.maxBin >= 2 && p.maxBin <= 256, 'an integer in 2..256');
  check('seed', int(p.seed), 'an integer');
  if (p.earlyStoppingRounds !== undefined) check('earlyStoppingRounds', int(p.earlyStoppingRounds) && p.earlyStoppingRounds >= 1, 'an integer >= 1');
  if (bad.length > 0) throw new Error(`invalid GBDT parameters: ${bad.join('; ')}`);
  return p;
}

/** Called after each boosting round (0-based) with the validation RMSE so far, when there is a validation set. */
export type RoundListener = (round: number, rounds: number, validationRmse: number | undefined) => void;

/** What the model records besides its trees: `label`, the name of what y is (the table's label column or metric). */
export interface TrainMeta {
  label?: string;
}

export function trainGbdt(train: Matrix, y: Float64Array, params: Partial<GbdtParams> = {}, validation?: { x: Matrix; y: Float64Array }, onRound?: RoundListener, meta: TrainMeta = {}): GbdtModel {
  const p = resolveParams(params);
  const n = train.rows;
  if (train.names.length !== train.cols) throw new Error(`the matrix has ${train.cols} columns but ${train.names.length} names`);
  if (new Set(train.names).size !== train.names.length) throw new Error(`duplicate column names: ${train.names.filter((c, i) => train.names.indexOf(c) !== i).join(', ')}`);
  if (train.data.length !== n * train.cols) throw new Error(`matrix data has ${train.data.length} values, expected rows × cols = ${n * train.cols}`);
  if (y.length !== n) throw new Error(`y has ${y.length} values for ${n} rows`);
  if (n === 0) throw new Error('no training rows');
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = y[i] as number;
    if (!Number.isFinite(v)) throw new Error(`y[${i}] is ${v}: targets must be finite`);
    sum += v;
  }
  if (validation) {
    assertFeatures({ featureNames: train.names }, validation.x.names);
    if (validation.y.length !== validation.x.rows) throw new Error(`validation y has ${validation.y.length} values for ${validation.x.rows} rows`);
    if (validation.x.data.length !== validation.x.rows * validation.x.cols) throw new Error(`validation matrix data has ${validation.x.data.length} values, expected rows × cols = ${validation.x.rows * validation.x.cols}`);
    // Either would leave the validation RMSE at 0 or NaN every round: never an improvement after
    // round 0, so early stopping would keep a single tree without a word.
    if (validation.x.rows === 0) throw new Error('the validation set has no rows: give one with rows, or none');
    const bad = validation.y.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`validation y[${bad}] is ${validation.y[bad]}: targets must be finite`);
  }
  if (meta.label !== undefined && meta.label.trim() === '') throw new Error('the label name is empty');
  const base = sum / n;
  const binned = binMatrix(train, p.maxBin);
  const grower = new TreeGrower(binned, p);
  const rng = seededRng(p.seed);
  const pred = new Float64Array(n).fill(base);
  const grad = new Float64Array(n);
  const rows = new Uint32Array(n);
  const allCols = Int32Array.from({ length: train.cols }, (_, i) => i);
  const nCols = Math.max(1, Math.floor(p.colsampleByTree * train.cols));
  const trees: Tree[] = [];
  const valPred = validation ? new Float64Array(validation.y.length).fill(base) : undefined;
  let best = Infinity;
  let bestIteration = -1;
  for (let round = 0; round < p.nEstimators; round++) {
    for (let i = 0; i < n; i++) grad[i] = (pred[i] as number) - (y[i] as number);
    let nRows = 0;
    if (p.subsample >= 1) for (let i = 0; i < n; i++) rows[nRows++] = i;
    else for (let i = 0; i < n; i++) if (rng.next() < p.subsample) rows[nRows++] = i;
    const feats = nCols === train.cols ? allCols : sampleColumns(train.cols, nCols, rng);
    const tree = grower.grow(grad, rows, nRows, feats);
    trees.push(tree);
    addTreeToTraining(grower, tree, binned, pred, train, nRows < n);
    if (validation && valPred) {
      // One new tree per round: walk it per row rather than lay out an ensemble every round.
      let se = 0;
      for (let i = 0; i < valPred.length; i++) {
        valPred[i] = (valPred[i] as number) + leafValue(tree, validation.x.data, validation.x.rows, i);
        const d = (valPred[i] as number) - (validation.y[i] as number);
        se += d * d;
      }
      const rmse = Math.sqrt(se / Math.max(1, valPred.length));
      onRound?.(round, p.nEstimators, rmse);
      if (rmse < best) {
        best = rmse;
        bestIteration = round;
      } else if (p.earlyStoppingRounds !== undefined && round - bestIteration >= p.earlyStoppingRounds) break;
    } else onRound?.(round, p.nEstimators, undefined);
  }
  const stopped = validation !== undefined && p.earlyStoppingRounds !== undefined && bestIteration >= 0;
  const kept = stopped ? trees.slice(0, bestIteration + 1) : trees;
  const { earlyStoppingRounds, ...rest } = p;
  const recorded: Partial<GbdtParams> = earlyStoppingRounds === undefined ? rest : { ...rest, earlyStoppingRounds };
  return new TreeModel([...train.names], train.cols, kept, base, { source: 'herd', params: recorded, ...(stopped ? { bestIteration } : {}), ...(meta.label === undefined ? {} : { label: meta.label }), featureRanges: featureRanges(train) });
}

/** Each column's [min, max] over the finite values of its rows (NaN, a missing value, left out; null when none is finite: JSON has no NaN or ±Infinity). */
export function featureRanges(x: Matrix): FeatureRange[] {
  const out: FeatureRange[] = [];
  for (let c = 0; c < x.cols; c++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let r = c * x.rows, end = r + x.rows; r < end; r++) {
      const v = x.data[r] as number;
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    out.push(lo <= hi ? [lo, hi] : null);
  }
  return out;
}

/** `k` of `n` columns without replacement (partial Fisher–Yates), in increasing order. */
function sampleColumns(n: number, k: number, rng: ReturnType<typeof seededRng>): Int32Array {
  const all = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(n - i);
    const t = all[i] as number;
    all[i] = all[j] as number;
    all[j] = t;
  }
  return all.slice(0, k).sort();
}

/**
 * Adds a freshly grown tree's output to every training row: the sampled rows through the
 * grower's leaf ranges, the others (only with `subsample` < 1) by walking the tree.
 */
function addTreeToTraining(grower: TreeGrower, tree: Tree, m: BinnedMatrix, pred: Float64Array, x: Matrix, sampled: boolean): void {
  const idx = grower.rows();
  const seen = sampled ? new Uint8Array(m.rows) : undefined;
  for (let l = 0; l < grower.leafValue.length; l++) {
    const v = grower.leafValue[l] as number;
    const end = grower.leafEnd[l] as number;
    for (let i = grower.leafStart[l] as number; i < end; i++) {
      const r = idx[i] as number;
      pred[r] = (pred[r] as number) + v;
      if (seen) seen[r] = 1;
    }
  }
  if (!seen) return;
  for (let r = 0; r < x.rows; r++) if (!seen[r]) pred[r] = (pred[r] as number) + leafValue(tree, x.data, x.rows, r);
}
