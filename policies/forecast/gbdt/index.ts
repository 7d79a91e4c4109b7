/**
 * Herd's gradient-boosted regression trees (XGBoost `hist`-style learner, XGBoost JSON
 * import): the public surface of policies/forecast/gbdt/. See README.md.
 */
export { trainGbdt, resolveParams, featureRanges, DEFAULT_PARAMS, type TrainMeta } from './train.ts';
export { assertFeatures, TreeModel, type FeatureRange, type GbdtModel, type GbdtParams, type HerdModelJson } from './model.ts';
export { loadModel } from './load.ts';
export { loadXgboostModel } from './xgboost-import.ts';
export { matrixFromColumns, matrixFromRows, sliceRows, type Matrix } from './matrix.ts';
export { seededRng, type Rng } from './random.ts';
