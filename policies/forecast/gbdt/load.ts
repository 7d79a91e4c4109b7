/**
 * `loadModel`: reads a saved model, telling Herd's own format (`format: "herd-gbdt"`) from
 * XGBoost's JSON (`learner.gradient_booster`) by its shape.
 */
import { loadHerdModel, HERD_FORMAT, type GbdtModel } from './model.ts';
import { loadXgboostModel } from './xgboost-import.ts';

export function loadModel(json: unknown): GbdtModel {
  if (typeof json === 'object' && json !== null) {
    if ((json as { format?: unknown }).format === HERD_FORMAT) return loadHerdModel(json);
    if (typeof (json as { learner?: unknown }).learner === 'object') return loadXgboostModel(json);
  }
  throw new Error('neither a herd-gbdt model nor an XGBoost JSON model (expected `format: "herd-gbdt"` or `learner.gradient_booster`)');
}
