/**
 * A hand-written model in Herd's JSON format, for tests (the property tests give it to the
 * policy): 100 + (host_cpu_util < 0.7 ? 700 : 300) ops/s, i.e. 800 ops/s on a host below
 * 70 % CPU, 400 above (NaN: the "above" side).
 */
import { OPS_LABEL, SNAPSHOT_FEATURES } from './features.ts';

export const TINY_MODEL = {
  format: 'herd-gbdt',
  version: 1,
  source: 'herd',
  label: OPS_LABEL,
  featureNames: [...SNAPSHOT_FEATURES],
  nFeatures: SNAPSHOT_FEATURES.length,
  baseScore: 100,
  float32: false,
  trees: [
    {
      feature: [SNAPSHOT_FEATURES.indexOf('host_cpu_util'), -1, -1],
      threshold: [0.7, 0, 0],
      defaultLeft: [0, 0, 0],
      left: [1, -1, -1],
      right: [2, -1, -1],
      value: [0, 700, 300],
      gain: [1000, 0, 0],
    },
  ],
};
