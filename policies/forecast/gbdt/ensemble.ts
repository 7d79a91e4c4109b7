/**
 * Prediction. Every tree is laid out as a complete binary tree of its own depth (children
 * of slot i at 2i + 1 and 2i + 2; a leaf above the last level is copied into every leaf
 * slot below it), so that a row descends by arithmetic, `i = 2i + 1 + (x >= threshold)`,
 * with no branch that depends on the data. Rows go through in blocks of BLOCK: the block is
 * copied row-major into a small buffer that stays in cache, and every tree descends eight
 * rows at once (four where a NaN is), so that their independent descents overlap.
 *
 * Rows without a missing value go through a descent generated for the tree's depth and the
 * number of columns (compiled.ts: levels unrolled, row offsets, the leaves' offset and the
 * root's split as constants, the tree's slots as views of their own, so fewer live values
 * and no per-tree base added at every step), compiled once per (depth, columns) with
 * `new Function`; only those two checked integers go into the generated source, never a
 * model's numbers. Measured on one core of a busy 2-vCPU VM, 200 trees of depth 6, best of
 * 7, side by side in one process: Friedman #1 (20,000 rows) 57-59 ms against 70-77 ms for a
 * generated descent that added the tree's base at every step and 75-79 ms for the generic
 * eight-row loop (descendRows); the lab test rows (21,863) 60-63 ms against 68-76 and
 * 79-84 ms. In bench:forecast on a quiet VM: lab 58.8 ms (XGBoost 71.0), Friedman 50.2 ms
 * (XGBoost 65.5). Groups of 4, 12 or 16 rows were slower than 8; blocks of 64, 256 or 512
 * rows no better than 128; rows quantized once to per-feature threshold ranks (Uint16) with
 * each split packed into one Int32 (feature << 16 | rank) were slower (lab 74-84 ms against
 * 69-71 ms), the descents alone no faster; loading a level's eight values before comparing
 * them made no difference. Earlier: 330 ms for a walk of node-and-child arrays with a branch
 * per node, 140 ms for the whole block descending level by level through a slot array.
 *
 * A NaN fails `v >= t`, so it would go left; in a block holding a NaN, `v !== v` adds the
 * node's default direction (still no branch). Trees deeper than MAX_COMPLETE_DEPTH (a
 * complete layout would be too big) are walked node by node.
 *
 * `float32` reproduces XGBoost's arithmetic for imported models: inputs are rounded to
 * float32 before the comparison with the (float32) split condition, and the sum of leaf
 * values is rounded to float32 after every tree, as XGBoost's predictor does.
 */
import { groupDescent, type GroupDescent } from './compiled.ts';
import { leafValue, type Tree } from './tree.ts';

const BLOCK = 128;
const MAX_COMPLETE_DEPTH = 12;

function depthOf(t: Tree): number {
  let max = 0;
  const stack: [number, number][] = [[0, 0]];
  while (stack.length > 0) {
    const [n, d] = stack.pop() as [number, number];
    if ((t.feature[n] as number) < 0) max = Math.max(max, d);
    else stack.push([t.left[n] as number, d + 1], [t.right[n] as number, d + 1]);
  }
  return max;
}

export class Ensemble {
  /** Per tree: its depth, where its split slots start, where its leaf slots start. */
  private readonly depth: Int32Array;
  private readonly splitBase: Int32Array;
  private readonly leafBase: Int32Array;
  /** Per split slot: feature, threshold, 1 when missing values go right. */
  private readonly feature: Int32Array;
  private readonly threshold: Float64Array;
  private readonly missingRight: Uint8Array;
  private readonly leaf: Float64Array;
  private readonly complete: boolean;
  /** Per tree: views of its split and leaf slots (for the generated descents). */
  private readonly treeFeature: Int32Array[];
  private readonly treeThreshold: Float64Array[];
  private readonly treeLeaf: Float64Array[];

  constructor(
    readonly trees: Tree[],
    readonly baseScore: number,
    readonly float32 = false,
    /** False: no generated descent (the generic loops only; for tests and comparisons). */
    readonly generated = true,
  ) {
    this.depth = Int32Array.from(trees, depthOf);
    this.complete = this.depth.every((d) => d <= MAX_COMPLETE_DEPTH);
    this.splitBase = new Int32Array(trees.length);
    this.leafBase = new Int32Array(trees.length);
    let splits = 0;
    let leaves = 0;
    if (this.complete)
      trees.forEach((_, i) => {
        this.splitBase[i] = splits;
        this.leafBase[i] = leaves;
        splits += 2 ** (this.depth[i] as number) - 1;
        leaves += 2 ** (this.depth[i] as number);
      });
    this.feature = new Int32Array(splits);
    this.threshold = new Float64Array(splits);
    this.missingRight = new Uint8Array(splits);
    this.leaf = new Float64Array(leaves);
    if (this.complete) trees.forEach((t, i) => this.layOut(t, i));
    const span = (i: number) => [this.splitBase[i] as number, (this.splitBase[i] as number) + 2 ** (this.depth[i] as number) - 1] as const;
    const leafSpan = (i: number) => [this.leafBase[i] as number, (this.leafBase[i] as number) + 2 ** (this.depth[i] as number)] as const;
    this.treeFeature = this.complete ? trees.map((_, i) => this.feature.subarray(...span(i))) : [];
    this.treeThreshold = this.complete ? trees.map((_, i) => this.threshold.subarray(...span(i))) : [];
    this.treeLeaf = this.complete ? trees.map((_, i) => this.leaf.subarray(...leafSpan(i))) : [];
  }

  /** Copies tree `ti` into its complete layout (slots below an early leaf repeat the leaf). */
  private layOut(t: Tree, ti: number): void {
    const d = this.depth[ti] as number;
    const firstLeafSlot = 2 ** d - 1;
    const stack: [number, number][] = [[0, 0]];
    while (stack.length > 0) {
      const [node, slot] = stack.pop() as [number, number];
      if (slot >= firstLeafSlot) {
        this.leaf[(this.leafBase[ti] as number) + slot - firstLeafSlot] = t.value[node] as number;
        continue;
      }
      const at = (this.splitBase[ti] as number) + slot;
      const f = t.feature[node] as number;
      if (f >= 0) {
        this.feature[at] = f;
        this.threshold[at] = t.threshold[node] as number;
        this.missingRight[at] = t.defaultLeft[node] ? 0 : 1;
      }
      stack.push([f >= 0 ? (t.left[node] as number) : node, 2 * slot + 1], [f >= 0 ? (t.right[node] as number) : node, 2 * slot + 2]);
    }
  }

  /** Predictions for `rows` rows of the column-major `data` with `cols` columns. */
  predict(data: Float64Array, rows: number, cols: number): Float64Array {
    const out = new Float64Array(rows).fill(this.float32 ? Math.fround(this.baseScore) : this.baseScore);
    if (rows === 0) return out;
    const x = this.float32 ? Float64Array.from(Float32Array.from(data)) : data;
    if (!this.complete) {
      for (const t of this.trees) this.walk(t, x, rows, out);
      return out;
    }
    const fns = Array.from(this.depth, (d) => (this.generated && d > 0 && cols <= 2 ** 24 ? groupDescent(d, cols, this.float32) : undefined));
    const block = new Float64Array(BLOCK * cols);
    const acc = new Float64Array(BLOCK);
    // Where each row of the block goes in `block`: rows without a missing value first.
    const slot = new Int32Array(BLOCK);
    const missing = new Uint8Array(BLOCK);
    const init = out[0] as number;
    for (let b0 = 0; b0 < rows; b0 += BLOCK) {
      const m = Math.min(rows, b0 + BLOCK) - b0;
      missing.fill(0);
      for (let c = 0; c < cols; c++) {
        const from = c * rows + b0;
        for (let j = 0; j < m; j++) {
          const v = x[from + j] as number;
          if (v !== v) missing[j] = 1;
        }
      }
      let clean = 0;
      for (let j = 0; j < m; j++) if (missing[j] === 0) slot[j] = clean++;
      for (let j = 0, k = clean; j < m; j++) if (missing[j] === 1) slot[j] = k++;
      for (let c = 0; c < cols; c++) {
        const from = c * rows + b0;
        for (let j = 0; j < m; j++) block[(slot[j] as number) * cols + c] = x[from + j] as number;
      }
      acc.fill(init);
      for (let t = 0; t < this.trees.length; t++) this.descend(t, block, cols, clean, m, acc, fns[t]);
      for (let j = 0; j < m; j++) out[b0 + j] = acc[slot[j] as number] as number;
    }
    return out;
  }

  /**
   * Adds tree `t`'s leaf values for the `m` rows of `block` (row-major; the first `clean`
   * without a missing value) to `acc`: several rows at a time (the generated descent `fn`
   * for clean rows, descendRows for the others), the rest one by one.
   */
  private descend(t: number, block: Float64Array, cols: number, clean: number, m: number, acc: Float64Array, fn: GroupDescent | undefined): void {
    const { feature: f, threshold: th, leaf } = this;
    const d = this.depth[t] as number;
    const base = this.splitBase[t] as number;
    const leaves = (this.leafBase[t] as number) - (2 ** d - 1);
    const f32 = this.float32;
    const right = this.missingRight;
    const j = fn === undefined ? descendRows(f, th, leaf, base, leaves, d, block, cols, 0, clean, acc, f32, undefined) : fn(this.treeFeature[t] as Int32Array, this.treeThreshold[t] as Float64Array, this.treeLeaf[t] as Float64Array, block, 0, clean, acc);
    descendOneByOne(f, th, right, leaf, base, leaves, d, block, cols, j, clean, acc, f32);
    const k = descendRows(f, th, leaf, base, leaves, d, block, cols, clean, m, acc, f32, right);
    descendOneByOne(f, th, right, leaf, base, leaves, d, block, cols, k, m, acc, f32);
  }

  /** Adds tree `t`'s leaf values for every row, walking its node arrays (for deep trees). */
  private walk(t: Tree, x: Float64Array, rows: number, out: Float64Array): void {
    for (let r = 0; r < rows; r++) {
      const sum = (out[r] as number) + leafValue(t, x, rows, r);
      out[r] = this.float32 ? Math.fround(sum) : sum;
    }
  }
}

/**
 * Rows `from`… of a block several at a time (see Ensemble.descend), their slots in locals
 * so that independent descents overlap: eight rows without missing values (measured 10 %
 * faster than four on Friedman #1), four rows that may hold a NaN, where each step also
 * reads the split's default direction. Returns the first row it did not do.
 */
function descendRows(f: Int32Array, th: Float64Array, leaf: Float64Array, base: number, leaves: number, d: number, block: Float64Array, cols: number, from: number, m: number, out: Float64Array, f32: boolean, right: Uint8Array | undefined): number {
  let j = from;
  if (right === undefined) {
    for (; j + 8 <= m; j += 8) {
      const r0 = j * cols;
      const r1 = r0 + cols;
      const r2 = r1 + cols;
      const r3 = r2 + cols;
      const r4 = r3 + cols;
      const r5 = r4 + cols;
      const r6 = r5 + cols;
      const r7 = r6 + cols;
      let i0 = 0;
      let i1 = 0;
      let i2 = 0;
      let i3 = 0;
      let i4 = 0;
      let i5 = 0;
      let i6 = 0;
      let i7 = 0;
      for (let level = 0; level < d; level++) {
        const n0 = base + i0;
        const n1 = base + i1;
        const n2 = base + i2;
        const n3 = base + i3;
        const n4 = base + i4;
        const n5 = base + i5;
        const n6 = base + i6;
        const n7 = base + i7;
        i0 = 2 * i0 + 1 + +((block[r0 + (f[n0] as number)] as number) >= (th[n0] as number));
        i1 = 2 * i1 + 1 + +((block[r1 + (f[n1] as number)] as number) >= (th[n1] as number));
        i2 = 2 * i2 + 1 + +((block[r2 + (f[n2] as number)] as number) >= (th[n2] as number));
        i3 = 2 * i3 + 1 + +((block[r3 + (f[n3] as number)] as number) >= (th[n3] as number));
        i4 = 2 * i4 + 1 + +((block[r4 + (f[n4] as number)] as number) >= (th[n4] as number));
        i5 = 2 * i5 + 1 + +((block[r5 + (f[n5] as number)] as number) >= (th[n5] as number));
        i6 = 2 * i6 + 1 + +((block[r6 + (f[n6] as number)] as number) >= (th[n6] as number));
        i7 = 2 * i7 + 1 + +((block[r7 + (f[n7] as number)] as number) >= (th[n7] as number));
      }
      const o = j;
      addLeaf(out, o, leaf[leaves + i0] as number, f32);
      addLeaf(out, o + 1, leaf[leaves + i1] as number, f32);
      addLeaf(out, o + 2, leaf[leaves + i2] as number, f32);
      addLeaf(out, o + 3, leaf[leaves + i3] as number, f32);
      addLeaf(out, o + 4, leaf[leaves + i4] as number, f32);
      addLeaf(out, o + 5, leaf[leaves + i5] as number, f32);
      addLeaf(out, o + 6, leaf[leaves + i6] as number, f32);
      addLeaf(out, o + 7, leaf[leaves + i7] as number, f32);
    }
    return j;
  }
  for (; j + 4 <= m; j += 4) {
    const r0 = j * cols;
    const r1 = r0 + cols;
    const r2 = r1 + cols;
    const r3 = r2 + cols;
    let i0 = 0;
    let i1 = 0;
    let i2 = 0;
    let i3 = 0;
    // A NaN fails `v >= t`; `v !== v` adds the node's default direction, still without a branch.
    for (let level = 0; level < d; level++) {
      const n0 = base + i0;
      const n1 = base + i1;
      const n2 = base + i2;
      const n3 = base + i3;
      const v0 = block[r0 + (f[n0] as number)] as number;
      const v1 = block[r1 + (f[n1] as number)] as number;
      const v2 = block[r2 + (f[n2] as number)] as number;
      const v3 = block[r3 + (f[n3] as number)] as number;
      i0 = 2 * i0 + 1 + (+(v0 >= (th[n0] as number)) | (+(v0 !== v0) & (right[n0] as number)));
      i1 = 2 * i1 + 1 + (+(v1 >= (th[n1] as number)) | (+(v1 !== v1) & (right[n1] as number)));
      i2 = 2 * i2 + 1 + (+(v2 >= (th[n2] as number)) | (+(v2 !== v2) & (right[n2] as number)));
      i3 = 2 * i3 + 1 + (+(v3 >= (th[n3] as number)) | (+(v3 !== v3) & (right[n3] as number)));
    }
    const o = j;
    addLeaf(out, o, leaf[leaves + i0] as number, f32);
    addLeaf(out, o + 1, leaf[leaves + i1] as number, f32);
    addLeaf(out, o + 2, leaf[leaves + i2] as number, f32);
    addLeaf(out, o + 3, leaf[leaves + i3] as number, f32);
  }
  return j;
}

/** Rows `from` to `to` of a block one by one (missing values go their split's default way). */
function descendOneByOne(f: Int32Array, th: Float64Array, right: Uint8Array, leaf: Float64Array, base: number, leaves: number, d: number, block: Float64Array, cols: number, from: number, to: number, out: Float64Array, f32: boolean): void {
  for (let j = from, row = from * cols; j < to; j++, row += cols) {
    let i = 0;
    for (let level = 0; level < d; level++) {
      const n = base + i;
      const v = block[row + (f[n] as number)] as number;
      i = 2 * i + 1 + (v === v ? +(v >= (th[n] as number)) : (right[n] as number));
    }
    addLeaf(out, j, leaf[leaves + i] as number, f32);
  }
}

/** out[o] += value, rounded to float32 after every tree as XGBoost does for imported models. */
function addLeaf(out: Float64Array, o: number, value: number, f32: boolean): void {
  const sum = (out[o] as number) + value;
  out[o] = f32 ? Math.fround(sum) : sum;
}
