/**
 * Prediction: all trees concatenated into flat typed arrays (child indices absolute), walked
 * tree by tree over every row of a column-major matrix, with no object or closure per row
 * or node. A NaN fails both `v < t` and `v >= t` and so takes the node's default direction.
 *
 * `float32` reproduces XGBoost's arithmetic for imported models: inputs are rounded to
 * float32 before the comparison with the (float32) split condition, and the sum of leaf
 * values is rounded to float32 after every tree, as XGBoost's predictor does.
 */
import type { Tree } from './tree.ts';

export class Ensemble {
  readonly feature: Int32Array;
  readonly threshold: Float64Array;
  readonly defaultLeft: Uint8Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly value: Float64Array;
  readonly roots: Int32Array;

  constructor(
    readonly trees: Tree[],
    readonly baseScore: number,
    readonly float32 = false,
  ) {
    const n = trees.reduce((s, t) => s + t.feature.length, 0);
    this.feature = new Int32Array(n);
    this.threshold = new Float64Array(n);
    this.defaultLeft = new Uint8Array(n);
    this.left = new Int32Array(n);
    this.right = new Int32Array(n);
    this.value = new Float64Array(n);
    this.roots = new Int32Array(trees.length);
    let at = 0;
    trees.forEach((t, i) => {
      this.roots[i] = at;
      this.feature.set(t.feature, at);
      this.threshold.set(t.threshold, at);
      this.defaultLeft.set(t.defaultLeft, at);
      this.value.set(t.value, at);
      for (let j = 0; j < t.feature.length; j++) {
        this.left[at + j] = (t.left[j] as number) + at;
        this.right[at + j] = (t.right[j] as number) + at;
      }
      at += t.feature.length;
    });
  }

  /** Predictions for `rows` rows of the column-major `data`, using the first `nTrees` trees. */
  predict(data: Float64Array, rows: number, nTrees = this.trees.length): Float64Array {
    const out = new Float64Array(rows);
    const x = this.float32 ? Float64Array.from(Float32Array.from(data)) : data;
    out.fill(this.float32 ? Math.fround(this.baseScore) : this.baseScore);
    // Each split node's column offset into `data` for this row count (-1 on leaves).
    if (rows * Math.max(1, ...this.feature) >= 2 ** 31) throw new Error(`too many rows for one prediction call: ${rows}`);
    const col = new Int32Array(this.feature.length);
    for (let n = 0; n < col.length; n++) col[n] = (this.feature[n] as number) < 0 ? -1 : (this.feature[n] as number) * rows;
    for (let t = 0; t < nTrees; t++) this.addTree(x, rows, this.roots[t] as number, col, out);
    return out;
  }

  private addTree(x: Float64Array, rows: number, root: number, col: Int32Array, out: Float64Array): void {
    const { threshold, left, right, defaultLeft, value } = this;
    const f32 = this.float32;
    for (let r = 0; r < rows; r++) {
      let n = root;
      let c = col[n] as number;
      while (c >= 0) {
        const v = x[c + r] as number;
        const t = threshold[n] as number;
        n = v < t ? (left[n] as number) : v >= t ? (right[n] as number) : defaultLeft[n] ? (left[n] as number) : (right[n] as number);
        c = col[n] as number;
      }
      out[r] = f32 ? Math.fround((out[r] as number) + (value[n] as number)) : (out[r] as number) + (value[n] as number);
    }
  }
}
