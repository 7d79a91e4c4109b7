/**
 * A trained model: the interface callers use (predict, gain importance, JSON, feature
 * names), Herd's own versioned JSON format, and `assertFeatures`, which refuses data whose
 * columns are not the model's with an error naming the missing and extra columns.
 *
 * Herd's format (`format: "herd-gbdt"`, `version: 1`) stores the feature names, base score,
 * the parameters trained with, the best iteration and every tree's arrays; numbers are JSON
 * doubles, so save → load predicts identically. Optional fields (absent from files written
 * before they existed, so such files still load):
 *   - `label`: what the model predicts (the training table's label column: `label`, ops/s,
 *     or the column or metric `--label` named), so that a consumer can refuse a model of
 *     something else (forecast-greedy wants ops/s);
 *   - `featureRanges`: per feature, in the model's column order, `[min, max]` of the
 *     training rows (`null` for a column that was missing in all of them), so that a
 *     consumer can tell a row the trees never saw the like of: beyond the range the trees
 *     answer as at its edge, whatever the value.
 */
import { z } from 'zod';
import { Ensemble } from './ensemble.ts';
import type { Matrix } from './matrix.ts';
import { checkTree, treeFromArrays, type Tree } from './tree.ts';

export interface GbdtParams {
  /** Boosting rounds (trees). */
  nEstimators: number;
  maxDepth: number;
  /** Learning rate η: every leaf weight is scaled by it. */
  eta: number;
  /** L2 regularisation λ on leaf weights. */
  lambda: number;
  /** Minimum split gain γ (subtracted from the halved gain; XGBoost's γ is twice this one). */
  gamma: number;
  /** Minimum hessian (here: row count) in each child. */
  minChildWeight: number;
  /** Share of rows sampled for each tree. */
  subsample: number;
  /** Share of columns sampled for each tree. */
  colsampleByTree: number;
  /** Histogram bins per feature (2..256). */
  maxBin: number;
  seed: number;
  /** Stop when the validation RMSE has not improved for this many rounds. */
  earlyStoppingRounds?: number;
}

export interface GbdtModel {
  predict(x: Matrix): Float64Array;
  /** Total split gain per feature, highest first (every feature listed). */
  importance(): { feature: string; gain: number }[];
  toJSON(): unknown;
  /** The columns the model expects, in order ([] for an XGBoost model saved without names). */
  featureNames: string[];
  /** 0-based round with the best validation score, when early stopping ran. */
  bestIteration?: number;
  /** What the model predicts (the label column or metric it was trained on), when recorded. */
  label?: string;
  /** Per feature (model order): [min, max] of the training rows, null when all were missing; when recorded. */
  featureRanges?: readonly FeatureRange[];
}

/** [min, max] of a feature over the training rows; null when every training row lacked it. */
export type FeatureRange = readonly [number, number] | null;

export const HERD_FORMAT = 'herd-gbdt';
export const HERD_FORMAT_VERSION = 1;

/** Throws unless `names` are the model's feature names in the model's order. */
export function assertFeatures(model: Pick<GbdtModel, 'featureNames'>, names: string[]): void {
  const want = model.featureNames;
  if (want.length === names.length && want.every((n, i) => n === names[i])) return;
  const have = new Set(names);
  const expected = new Set(want);
  const missing = want.filter((n) => !have.has(n));
  const extra = names.filter((n) => !expected.has(n));
  const parts: string[] = [];
  if (missing.length > 0) parts.push(`missing column(s): ${missing.join(', ')}`);
  if (extra.length > 0) parts.push(`extra column(s): ${extra.join(', ')}`);
  if (parts.length === 0) parts.push(`same columns in a different order (model: ${want.join(', ')}; data: ${names.join(', ')})`);
  throw new Error(`feature names differ from the model's: ${parts.join('; ')}`);
}

/** The model behind both Herd-trained and imported models. */
export class TreeModel implements GbdtModel {
  readonly ensemble: Ensemble;

  constructor(
    readonly featureNames: string[],
    readonly nFeatures: number,
    readonly trees: Tree[],
    readonly baseScore: number,
    readonly meta: { params?: Partial<GbdtParams>; bestIteration?: number; float32?: boolean; source: 'herd' | 'xgboost'; label?: string; featureRanges?: readonly FeatureRange[] },
  ) {
    // Two columns of one name: a table's column would feed both, or a snapshot's value the wrong one.
    const dup = featureNames.filter((n, i) => featureNames.indexOf(n) !== i);
    if (dup.length > 0) throw new Error(`duplicate feature name(s): ${[...new Set(dup)].join(', ')}`);
    if (meta.featureRanges !== undefined && meta.featureRanges.length !== nFeatures) throw new Error(`${meta.featureRanges.length} feature ranges for ${nFeatures} features`);
    trees.forEach((t, i) => checkTree(t, nFeatures, `tree ${i}`));
    this.ensemble = new Ensemble(trees, baseScore, meta.float32 ?? false);
  }

  get bestIteration(): number | undefined {
    return this.meta.bestIteration;
  }

  get label(): string | undefined {
    return this.meta.label;
  }

  get featureRanges(): readonly FeatureRange[] | undefined {
    return this.meta.featureRanges;
  }

  predict(x: Matrix): Float64Array {
    if (this.featureNames.length > 0) assertFeatures(this, x.names);
    else if (x.cols !== this.nFeatures) throw new Error(`the model expects ${this.nFeatures} columns, the data has ${x.cols}`);
    if (x.data.length !== x.rows * x.cols) throw new Error(`matrix data has ${x.data.length} values, expected rows × cols = ${x.rows * x.cols}`);
    return this.ensemble.predict(x.data, x.rows, x.cols);
  }

  importance(): { feature: string; gain: number }[] {
    const total = new Float64Array(this.nFeatures);
    for (const t of this.trees) for (let i = 0; i < t.feature.length; i++) {
      const f = t.feature[i] as number;
      if (f >= 0) total[f] = (total[f] as number) + (t.gain[i] as number);
    }
    return [...total].map((gain, i) => ({ feature: this.featureNames[i] ?? `f${i}`, gain })).sort((a, b) => b.gain - a.gain || a.feature.localeCompare(b.feature));
  }

  toJSON(): HerdModelJson {
    return {
      format: HERD_FORMAT,
      version: HERD_FORMAT_VERSION,
      source: this.meta.source,
      ...(this.meta.label === undefined ? {} : { label: this.meta.label }),
      featureNames: this.featureNames,
      nFeatures: this.nFeatures,
      baseScore: this.baseScore,
      float32: this.meta.float32 ?? false,
      ...(this.meta.params === undefined ? {} : { params: this.meta.params }),
      ...(this.meta.bestIteration === undefined ? {} : { bestIteration: this.meta.bestIteration }),
      ...(this.meta.featureRanges === undefined ? {} : { featureRanges: this.meta.featureRanges.map((r) => (r === null ? null : [r[0], r[1]] as [number, number])) }),
      trees: this.trees.map((t) => ({
        feature: [...t.feature],
        threshold: [...t.threshold],
        defaultLeft: [...t.defaultLeft],
        left: [...t.left],
        right: [...t.right],
        value: [...t.value],
        gain: [...t.gain],
      })),
    };
  }
}

const nums = z.array(z.number());
const treeJson = z.strictObject({ feature: z.array(z.number().int()), threshold: nums, defaultLeft: z.array(z.number().int()), left: z.array(z.number().int()), right: z.array(z.number().int()), value: nums, gain: nums });
export const herdModelJson = z.strictObject({
  format: z.literal(HERD_FORMAT),
  version: z.literal(HERD_FORMAT_VERSION),
  source: z.enum(['herd', 'xgboost']),
  label: z.string().min(1).optional(),
  featureNames: z.array(z.string().min(1)),
  nFeatures: z.number().int().min(0),
  baseScore: z.number(),
  float32: z.boolean(),
  params: z.record(z.string(), z.unknown()).optional(),
  bestIteration: z.number().int().min(0).optional(),
  featureRanges: z.array(z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo <= hi, 'min above max').nullable()).optional(),
  trees: z.array(treeJson),
});
export type HerdModelJson = z.infer<typeof herdModelJson>;

export function loadHerdModel(json: unknown): TreeModel {
  const version = (json as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version > HERD_FORMAT_VERSION) throw new Error(`herd-gbdt model version ${version} is newer than this Herd reads (${HERD_FORMAT_VERSION})`);
  // Only the versions this Herd wrote: 0, a negative or a fractional version is no file of ours.
  if (version !== HERD_FORMAT_VERSION) throw new Error(`herd-gbdt model version ${JSON.stringify(version)} is not one this Herd reads (${HERD_FORMAT_VERSION})`);
  const parsed = herdModelJson.safeParse(json);
  if (!parsed.success) throw new Error(`not a valid herd-gbdt model: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const m = parsed.data;
  // Herd's learner always names its columns; only a converted XGBoost model may lack names
  // (it is then fed by column position).
  if (m.source === 'herd' && m.featureNames.length === 0 && m.nFeatures > 0) throw new Error(`herd-gbdt model trained by Herd lists no feature names for its ${m.nFeatures} features`);
  if (m.featureNames.length > 0 && m.featureNames.length !== m.nFeatures) throw new Error(`herd-gbdt model lists ${m.featureNames.length} feature names for ${m.nFeatures} features`);
  if (m.featureRanges !== undefined && m.featureRanges.length !== m.nFeatures) throw new Error(`herd-gbdt model lists ${m.featureRanges.length} feature ranges for ${m.nFeatures} features`);
  return new TreeModel(m.featureNames, m.nFeatures, m.trees.map(treeFromArrays), m.baseScore, {
    source: m.source,
    float32: m.float32,
    ...(m.params === undefined ? {} : { params: m.params as Partial<GbdtParams> }),
    ...(m.bestIteration === undefined ? {} : { bestIteration: m.bestIteration }),
    ...(m.label === undefined ? {} : { label: m.label }),
    ...(m.featureRanges === undefined ? {} : { featureRanges: m.featureRanges }),
  });
}
