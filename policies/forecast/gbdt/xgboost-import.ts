/**
 * Reads a model saved by XGBoost (1.7 and later) with `save_model("m.json")` and predicts
 * with it exactly as XGBoost does, for regression objectives with an identity link
 * (`reg:squarederror` and friends).
 *
 * The schema used: `learner.learner_model_param.base_score` (a string like "5E-1"; XGBoost
 * ≥ 3.1 writes a list, "[5E-1]", one value per target: one value is read, more are refused
 * as a multi-target model),
 * `learner.feature_names` (may be empty), `learner.objective.name`, and for every tree in
 * `learner.gradient_booster.model.trees` (`gradient_booster.gbtree.model` for `dart`, whose
 * `weight_drop` scales each tree): `left_children` (-1 on leaves), `right_children`,
 * `split_indices`, `split_conditions` (a leaf's value on leaves), `default_left` and
 * `loss_changes` (for gain importance). XGBoost sends `x < split_condition` left and NaN to
 * `default_left`, in float32: the ensemble runs in its float32 mode for these models.
 * All trees are used (like `Booster.predict`), even when `best_iteration` is recorded.
 *
 * What the model predicts: XGBoost's JSON has no such field, so Herd reads it from the
 * booster attribute `herd_label` (`learner.attributes`, set with
 * `bst.set_attr(herd_label="label")` before `save_model`), the name of the training table's
 * column it was trained on (`label`: ops/s). Without the attribute the model has no label,
 * and forecast-greedy refuses it: a file that does not say it predicts ops/s is not taken
 * on trust.
 */
import { TreeModel } from './model.ts';
import type { Tree } from './tree.ts';

const IDENTITY_OBJECTIVES = new Set(['reg:squarederror', 'reg:linear', 'reg:squaredlogerror', 'reg:pseudohubererror', 'reg:absoluteerror', 'reg:quantileerror']);

type Json = Record<string, unknown>;

function obj(v: unknown, path: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`XGBoost model: ${path} is missing or not an object`);
  return v as Json;
}

function numArray(v: unknown, path: string): number[] {
  if (!Array.isArray(v)) throw new Error(`XGBoost model: ${path} is missing or not an array`);
  return v.map((x, i) => {
    const n = typeof x === 'boolean' ? (x ? 1 : 0) : Number(x);
    if (!Number.isFinite(n)) throw new Error(`XGBoost model: ${path}[${i}] is not a number`);
    return n;
  });
}

/** base_score: "5E-1" (XGBoost < 3.1), or "[5E-1]" (≥ 3.1: a vector, one value per target). */
function baseScoreOf(v: unknown): number {
  let text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : '';
  if (text.startsWith('[') && text.endsWith(']')) {
    const values = text.slice(1, -1).split(',').map((x) => x.trim());
    if (values.length !== 1 || values[0] === '') throw new Error(`XGBoost model: base_score ${text} holds ${values[0] === '' ? 'no value' : `${values.length} values (a multi-target model)`}; only single-target regression is supported`);
    text = values[0] as string;
  }
  const n = Number(text);
  if (text === '' || !Number.isFinite(n)) throw new Error(`XGBoost model: base_score ${String(v)} is not a number`);
  return n;
}

export function loadXgboostModel(json: unknown): TreeModel {
  const learner = obj(obj(json, '(root)').learner, 'learner');
  const param = obj(learner.learner_model_param, 'learner.learner_model_param');
  const baseScore = baseScoreOf(param.base_score);
  const nFeatures = Number(param.num_feature);
  if (!Number.isInteger(nFeatures) || nFeatures < 0) throw new Error(`XGBoost model: num_feature ${String(param.num_feature)} is not a count`);
  if (Number(param.num_class ?? 0) > 1 || Number(param.num_target ?? 1) > 1) throw new Error('XGBoost model: multi-class and multi-target models are not supported (regression only)');
  const objective = String(obj(learner.objective, 'learner.objective').name);
  if (!IDENTITY_OBJECTIVES.has(objective)) throw new Error(`XGBoost model: objective ${objective} is not supported (regression objectives with an identity link only: ${[...IDENTITY_OBJECTIVES].join(', ')})`);
  const names = Array.isArray(learner.feature_names) ? learner.feature_names.map(String) : [];
  if (names.length > 0 && names.length !== nFeatures) throw new Error(`XGBoost model: ${names.length} feature names for ${nFeatures} features`);

  const booster = obj(learner.gradient_booster, 'learner.gradient_booster');
  let model: Json;
  let weights: number[] | undefined;
  if (booster.name === 'gbtree') model = obj(booster.model, 'learner.gradient_booster.model');
  else if (booster.name === 'dart') {
    model = obj(obj(booster.gbtree, 'learner.gradient_booster.gbtree').model, 'learner.gradient_booster.gbtree.model');
    weights = numArray(booster.weight_drop, 'learner.gradient_booster.weight_drop');
  } else throw new Error(`XGBoost model: booster ${String(booster.name)} is not supported (gbtree or dart)`);
  if (!Array.isArray(model.trees)) throw new Error('XGBoost model: gradient_booster model has no trees array');
  const trees = model.trees.map((raw, i) => importTree(obj(raw, `trees[${i}]`), `trees[${i}]`, weights?.[i] ?? 1));
  const attributes = obj(learner.attributes ?? {}, 'learner.attributes');
  const bestIteration = Number(attributes.best_iteration);
  const label = attributes.herd_label;
  if (label !== undefined && (typeof label !== 'string' || label.trim() === '')) throw new Error(`XGBoost model: learner.attributes.herd_label ${JSON.stringify(label)} is not a column name`);
  return new TreeModel(names, nFeatures, trees, baseScore, { source: 'xgboost', float32: true, ...(Number.isInteger(bestIteration) ? { bestIteration } : {}), ...(label === undefined ? {} : { label }) });
}

function importTree(t: Json, path: string, weight: number): Tree {
  const left = numArray(t.left_children, `${path}.left_children`);
  const right = numArray(t.right_children, `${path}.right_children`);
  const index = numArray(t.split_indices, `${path}.split_indices`);
  const cond = numArray(t.split_conditions, `${path}.split_conditions`);
  const defaultLeft = numArray(t.default_left, `${path}.default_left`);
  const loss = Array.isArray(t.loss_changes) ? numArray(t.loss_changes, `${path}.loss_changes`) : [];
  const splitType = Array.isArray(t.split_type) ? numArray(t.split_type, `${path}.split_type`) : [];
  const n = left.length;
  for (const [name, a] of [['right_children', right], ['split_indices', index], ['split_conditions', cond], ['default_left', defaultLeft]] as const) {
    if (a.length !== n) throw new Error(`XGBoost model: ${path}.${name} has ${a.length} entries, left_children ${n}`);
  }
  const tree: Tree = {
    feature: new Int32Array(n),
    threshold: new Float64Array(n),
    defaultLeft: new Uint8Array(n),
    left: new Int32Array(n),
    right: new Int32Array(n),
    value: new Float64Array(n),
    gain: new Float64Array(n),
  };
  for (let i = 0; i < n; i++) {
    const leaf = left[i] === -1;
    if (!leaf && (splitType[i] ?? 0) !== 0) throw new Error(`XGBoost model: ${path} node ${i} is a categorical split, not supported`);
    tree.feature[i] = leaf ? -1 : (index[i] as number);
    tree.left[i] = leaf ? -1 : (left[i] as number);
    tree.right[i] = leaf ? -1 : (right[i] as number);
    tree.defaultLeft[i] = defaultLeft[i] ? 1 : 0;
    tree.threshold[i] = leaf ? 0 : Math.fround(cond[i] as number);
    tree.value[i] = leaf ? Math.fround((cond[i] as number) * weight) : 0;
    tree.gain[i] = leaf ? 0 : (loss[i] ?? 0);
  }
  return tree;
}
