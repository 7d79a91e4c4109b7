/**
 * Quantile histogram binning, as XGBoost's `hist` method does: each column's values are
 * cut at (up to) `maxBin` quantiles once, before training, and every value is replaced by
 * its bin number (a Uint8Array per column). Trees are then grown on bin histograms instead
 * of sorted values, which is what makes training fast.
 *
 * Column c has `nBins[c]` bins for values and one more slot, `nBins[c]`, for NaN (missing).
 * `cuts[c]` holds `nBins[c] - 1` increasing thresholds; a value's bin is the number of
 * thresholds <= it, so "bin <= s" is exactly "value < cuts[c][s]" — the split test
 * XGBoost uses (`x < split_condition` goes left). With NaNs a column gets at most 255
 * value bins so that the missing slot still fits a byte.
 */
import type { Matrix } from './matrix.ts';

export interface BinnedMatrix {
  rows: number;
  cols: number;
  /** Per column: the bin of every row (`nBins[c]` = missing). */
  bins: Uint8Array[];
  /** Per column: the thresholds between bins. */
  cuts: Float64Array[];
  /** Per column: the number of value bins (the missing slot is one more). */
  nBins: Int32Array;
  /** Per column: a threshold above every value seen (for "all values left, missing right"). */
  upper: Float64Array;
  /** Per column: where its slots start in a node histogram. */
  offsets: Int32Array;
  /** Slots in a node histogram: sum over columns of nBins + 1. */
  totalSlots: number;
}

export function binMatrix(x: Matrix, maxBin: number): BinnedMatrix {
  if (!Number.isInteger(maxBin) || maxBin < 2 || maxBin > 256) throw new Error(`maxBin must be an integer in 2..256, got ${maxBin}`);
  const { rows, cols } = x;
  const bins: Uint8Array[] = [];
  const cuts: Float64Array[] = [];
  const nBins = new Int32Array(cols);
  const upper = new Float64Array(cols);
  const offsets = new Int32Array(cols);
  const values = new Float64Array(rows);
  let totalSlots = 0;
  for (let c = 0; c < cols; c++) {
    const col = x.data.subarray(c * rows, (c + 1) * rows);
    let n = 0;
    for (let r = 0; r < rows; r++) {
      const v = col[r] as number;
      if (v === v) values[n++] = v;
    }
    const sorted = values.subarray(0, n).sort();
    const limit = n < rows ? Math.min(maxBin, 255) : maxBin;
    const t = quantileCuts(sorted, limit);
    const nb = t.length + 1;
    const max = n === 0 ? 0 : (sorted[n - 1] as number);
    upper[c] = max + Math.max(Math.abs(max), 1) * 1e-6;
    const b = new Uint8Array(rows);
    for (let r = 0; r < rows; r++) {
      const v = col[r] as number;
      if (v !== v) {
        b[r] = nb;
        continue;
      }
      let lo = 0;
      let hi = t.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((t[mid] as number) <= v) lo = mid + 1;
        else hi = mid;
      }
      b[r] = lo;
    }
    bins.push(b);
    cuts.push(t);
    nBins[c] = nb;
    offsets[c] = totalSlots;
    totalSlots += nb + 1;
  }
  return { rows, cols, bins, cuts, nBins, upper, offsets, totalSlots };
}

/** At most `limit - 1` increasing thresholds: every distinct value if few, else quantiles. */
function quantileCuts(sorted: Float64Array, limit: number): Float64Array {
  const n = sorted.length;
  const out: number[] = [];
  if (n === 0) return new Float64Array(0);
  let distinct = 1;
  for (let i = 1; i < n && distinct <= limit; i++) if (sorted[i] !== sorted[i - 1]) distinct++;
  let prev = sorted[0] as number;
  if (distinct <= limit) {
    for (let i = 1; i < n; i++) {
      const v = sorted[i] as number;
      if (v !== prev) out.push(v);
      prev = v;
    }
  } else {
    for (let j = 1; j < limit; j++) {
      const v = sorted[Math.floor((j * n) / limit)] as number;
      if (v > prev) {
        out.push(v);
        prev = v;
      }
    }
  }
  return Float64Array.from(out);
}
