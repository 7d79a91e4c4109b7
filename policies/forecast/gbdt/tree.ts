/**
 * One regression tree as flat arrays (node 0 is the root): the form both Herd's learner
 * and the XGBoost importer produce, and what the ensemble concatenates for prediction.
 * A split sends a value left when `value < threshold`, NaN to `defaultLeft`; a leaf has
 * `feature = -1` and its output (already scaled by the learning rate) in `value`.
 */
export interface Tree {
  feature: Int32Array;
  threshold: Float64Array;
  defaultLeft: Uint8Array;
  left: Int32Array;
  right: Int32Array;
  value: Float64Array;
  /** The split's gain (0 on leaves), for gain importance. */
  gain: Float64Array;
}

export function treeFromArrays(a: { feature: number[]; threshold: number[]; defaultLeft: number[]; left: number[]; right: number[]; value: number[]; gain: number[] }): Tree {
  return {
    feature: Int32Array.from(a.feature),
    threshold: Float64Array.from(a.threshold),
    defaultLeft: Uint8Array.from(a.defaultLeft),
    left: Int32Array.from(a.left),
    right: Int32Array.from(a.right),
    value: Float64Array.from(a.value),
    gain: Float64Array.from(a.gain),
  };
}

/** Throws unless every child index is in range and the root reaches no node twice (no cycles). */
export function checkTree(t: Tree, nFeatures: number, where: string): void {
  const n = t.feature.length;
  if (n === 0) throw new Error(`${where}: a tree has no nodes`);
  for (const [name, arr] of Object.entries(t)) if ((arr as ArrayLike<number>).length !== n) throw new Error(`${where}: ${name} has ${(arr as ArrayLike<number>).length} entries, expected ${n}`);
  const seen = new Uint8Array(n);
  const stack = [0];
  while (stack.length > 0) {
    const i = stack.pop() as number;
    if (seen[i]) throw new Error(`${where}: node ${i} is reached twice`);
    seen[i] = 1;
    const f = t.feature[i] as number;
    if (f < 0) continue;
    if (f >= nFeatures) throw new Error(`${where}: node ${i} splits on feature ${f}, but the model has ${nFeatures}`);
    for (const c of [t.left[i] as number, t.right[i] as number]) {
      if (!(c > 0 && c < n)) throw new Error(`${where}: node ${i} has child ${c} out of range`);
      stack.push(c);
    }
  }
}

/** The leaf value tree `t` gives row `r` of the column-major `x` with `rows` rows (NaN takes the default direction). */
export function leafValue(t: Tree, x: Float64Array, rows: number, r: number): number {
  const { feature, threshold, left, right, defaultLeft, value } = t;
  let n = 0;
  let f = feature[0] as number;
  while (f >= 0) {
    const v = x[f * rows + r] as number;
    const th = threshold[n] as number;
    n = v < th ? (left[n] as number) : v >= th ? (right[n] as number) : defaultLeft[n] ? (left[n] as number) : (right[n] as number);
    f = feature[n] as number;
  }
  return value[n] as number;
}
