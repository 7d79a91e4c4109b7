/**
 * The training table from the monitor's recorded samples: container and host series put
 * on one time grid, each container's row joined with its host's row at the same grid
 * time, and a label per row.
 *
 * Grid: multiples of `stepMs` (default 5 s) since the epoch. The value of a series at grid
 * time t is its last sample in (t − toleranceMs, t] (default toleranceMs = stepMs): the
 * monitor samples hosts and containers asynchronously (every 2 s by default), so this takes
 * the freshest sample of each at every grid time.
 *   - No container sample at t (or it was not running) → no row.
 *   - No host sample at t → the row stays, host columns NaN (the learner handles missing values).
 *   - A field a sample lacks → NaN in its column.
 *   - No label at t → the row is dropped (counted in `dropped.noLabel`).
 *   - Rows come in time order, then by Herd id.
 * Label: sysbench ops/s (see sysbench.ts): the first report at or after t and less than
 * `labelToleranceMs` (default 10 s) after it (a report covers the interval that ends at
 * its time, so the one after t covers t); or, with `labelMetric`, a metric of the
 * container's own sample at t (a feature column name such as `ctr_disk_ops`, or any numeric
 * field of the container sample such as `cpuCores`). Every feature computed from the label
 * is removed (LABEL_LEAKS): with `cpuCores` as the label, ctr_cpu_cores is the label itself
 * and ctr_cpu_util × ctr_cpu_limit_cores gives it back.
 *
 * Implementation: typed arrays and a single sweep per series (host look-ups by binary
 * search). danfojs-node does the same resample and join (danfo.ts); measured with
 * `npx tsx monitor/dataset/bench.ts C H MIN` (2 vCPU, Node 20), resample + join only:
 *   18 000 container + 3 600 host samples:    typed 113 ms,  danfo   6.0 s (53×)
 *   45 000 + 4 500 (50 containers, 30 min):    typed 255 ms,  danfo 104.9 s (412×)
 *   180 000 + 18 000 (100 containers, 1 h):    typed 946 ms,  danfo > 500 s (stopped)
 * danfo's cost grows faster than linearly (sortValues 1.1 s and groupby().last() 1.5 s at
 * 18 000 rows; merge 57 ms), so a day of a 100-container cluster would not finish: Herd
 * uses the typed arrays. Figures and choice also in README.md.
 */
import { HerdError } from '../../protocol/errors.ts';
import { readDataset, requireDatasetDir, type DatasetRecord } from '../dataset.ts';
import { CONTAINER_FEATURES, containerFeatures, FEATURES, HOST_FEATURES, hostFeatures } from './features.ts';
import { readOpsReports, type OpsReport } from './sysbench.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface BuildOptions {
  stepMs?: number;
  toleranceMs?: number;
  /** Sysbench reports per Herd id (the default label). */
  reports?: ReadonlyMap<string, readonly OpsReport[]>;
  labelToleranceMs?: number;
  /** Label from this metric instead of sysbench reports. */
  labelMetric?: string;
}

/** A training table: named feature columns (Float64Array each), the label, and each row's key. */
export interface TrainingTable {
  names: string[];
  columns: Float64Array[];
  label: Float64Array;
  rows: number;
  atMs: Float64Array;
  herdIds: string[];
  hostIds: string[];
  dropped: { noLabel: number };
}

interface Series {
  t: Float64Array;
  /** Feature values, row-major (t.length × width). */
  f: Float64Array;
  hostIds?: string[];
  records?: DatasetRecord[];
}

const byTime = (a: DatasetRecord, b: DatasetRecord) => Date.parse(a.at) - Date.parse(b.at);

/**
 * Which feature columns each container sample field feeds (features.ts: containerFeatures;
 * the monitor's cpuUtil is cpuCores / cpuLimitCores), and so which columns must go when that
 * field, or a column computed from it, is the label: left in, they give the label back
 * (exactly, or with one other column). A field not listed feeds no feature.
 */
const FIELD_FEEDS: Readonly<Record<string, readonly string[]>> = {
  cpuCores: ['ctr_cpu_cores', 'ctr_cpu_util'], // util × limit = cores
  cpuLimitCores: ['ctr_cpu_limit_cores', 'ctr_cpu_util'], // cores / util = limit
  cpuUtil: ['ctr_cpu_util', 'ctr_cpu_cores'], // cores / limit = util
  diskReadOpsPerSec: ['ctr_disk_ops'],
  diskWriteOpsPerSec: ['ctr_disk_ops'],
  memoryBytes: ['ctr_memory_bytes'],
  threadCount: ['ctr_threads'],
  processCount: ['ctr_processes'],
};
/** The sample field behind each feature column that stands for one field. */
const COLUMN_FIELD: Readonly<Record<string, string>> = { ctr_cpu_cores: 'cpuCores', ctr_cpu_limit_cores: 'cpuLimitCores', ctr_cpu_util: 'cpuUtil', ctr_memory_bytes: 'memoryBytes', ctr_threads: 'threadCount', ctr_processes: 'processCount' };

/** The feature columns to drop when `label` (a sample field or a feature column) is the label. */
export function labelLeaks(label: string): string[] {
  const field = Object.hasOwn(FIELD_FEEDS, label) ? label : Object.hasOwn(COLUMN_FIELD, label) ? COLUMN_FIELD[label] : undefined;
  const leaks = new Set<string>(field === undefined ? [] : FIELD_FEEDS[field]);
  if (FEATURES.includes(label)) leaks.add(label);
  return FEATURES.filter((f) => leaks.has(f));
}

function series(records: DatasetRecord[], width: number, extract: (r: DatasetRecord) => number[], keep: boolean): Series {
  records.sort(byTime);
  const t = new Float64Array(records.length);
  const f = new Float64Array(records.length * width);
  records.forEach((r, i) => {
    t[i] = Date.parse(r.at);
    f.set(extract(r), i * width);
  });
  return keep ? { t, f, hostIds: records.map((r) => String(r.hostId)), records } : { t, f };
}

function groupBy(records: readonly DatasetRecord[], key: string, filter?: (r: DatasetRecord) => boolean): Map<string, DatasetRecord[]> {
  const out = new Map<string, DatasetRecord[]>();
  for (const r of records) {
    if (filter !== undefined && !filter(r)) continue;
    const k = r[key];
    if (typeof k !== 'string') continue;
    const list = out.get(k);
    if (list === undefined) out.set(k, [r]);
    else list.push(r);
  }
  return out;
}

/** Index of the last time ≤ t (−1 when none). */
function lastAtOrBefore(t: Float64Array, x: number): number {
  let lo = 0;
  let hi = t.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((t[mid] as number) <= x) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

export function buildTable(hosts: readonly DatasetRecord[], containers: readonly DatasetRecord[], options: BuildOptions = {}): TrainingTable {
  const step = options.stepMs ?? 5000;
  const tol = options.toleranceMs ?? step;
  const labelTol = options.labelToleranceMs ?? 10_000;
  if (!(step > 0) || !(tol > 0) || !(labelTol > 0)) throw new HerdError('BAD_USAGE', `step, tolerance and label tolerance must be positive (got ${step}, ${tol}, ${labelTol} ms)`);
  const metric = options.labelMetric;
  const metricFeature = metric === undefined ? -1 : FEATURES.indexOf(metric);
  if (metric === undefined && options.reports === undefined) throw new HerdError('BAD_USAGE', 'no label: give sysbench reports (container logs) or a label metric');
  const cw = CONTAINER_FEATURES.length;
  const hw = HOST_FEATURES.length;
  const hostSeries = new Map<string, Series>();
  for (const [id, list] of groupBy(hosts, 'hostId')) hostSeries.set(id, series(list, hw, hostFeatures, false));

  const leaks = metric === undefined ? [] : labelLeaks(metric);
  const keepCols = FEATURES.map((_, i) => i).filter((i) => !leaks.includes(FEATURES[i] as string));
  const out: number[][] = keepCols.map(() => []);
  const label: number[] = [];
  const atMs: number[] = [];
  const herdIds: string[] = [];
  const hostIds: string[] = [];
  let noLabel = 0;
  const row = new Float64Array(cw + hw);
  for (const [herdId, list] of groupBy(containers, 'herdId', (r) => r.state === 'running')) {
    const s = series(list, cw, containerFeatures, true);
    const n = s.t.length;
    if (n === 0) continue;
    const reports = options.reports?.get(herdId) ?? [];
    let rp = 0;
    let p = 0;
    const first = Math.ceil((s.t[0] as number) / step) * step;
    const last = Math.ceil((s.t[n - 1] as number) / step) * step;
    for (let t = first; t <= last; t += step) {
      while (p + 1 < n && (s.t[p + 1] as number) <= t) p++;
      const ts = s.t[p] as number;
      if (!(ts <= t && ts > t - tol)) continue;
      let y: number;
      if (metric === undefined) {
        while (rp < reports.length && (reports[rp] as OpsReport).atMs < t) rp++;
        const r = reports[rp];
        y = r !== undefined && r.atMs - t < labelTol ? r.opsPerSec : Number.NaN;
      } else if (metricFeature >= 0 && metricFeature < cw) y = s.f[p * cw + metricFeature] as number;
      else if (metricFeature < 0) {
        const v = (s.records?.[p] as DatasetRecord)[metric];
        y = typeof v === 'number' ? v : Number.NaN;
      } else y = Number.NaN; // a host column: filled below
      const hostId = (s.hostIds as string[])[p] as string;
      row.set(s.f.subarray(p * cw, p * cw + cw), 0);
      const hs = hostSeries.get(hostId);
      const hp = hs === undefined ? -1 : lastAtOrBefore(hs.t, t);
      if (hs !== undefined && hp >= 0 && (hs.t[hp] as number) > t - tol) row.set(hs.f.subarray(hp * hw, hp * hw + hw), cw);
      else row.fill(Number.NaN, cw);
      if (metricFeature >= cw) y = row[metricFeature] as number;
      if (Number.isNaN(y)) {
        noLabel++;
        continue;
      }
      keepCols.forEach((c, k) => (out[k] as number[]).push(row[c] as number));
      label.push(y);
      atMs.push(t);
      herdIds.push(herdId);
      hostIds.push(hostId);
    }
  }
  // Rows in time order (then by container), as the CSV format promises: training holds out the last rows.
  const order = Array.from(label, (_, i) => i).sort((a, b) => (atMs[a] as number) - (atMs[b] as number) || ((herdIds[a] as string) < (herdIds[b] as string) ? -1 : 1));
  return {
    names: keepCols.map((c) => FEATURES[c] as string),
    columns: out.map((c) => Float64Array.from(order, (i) => c[i] as number)),
    label: Float64Array.from(order, (i) => label[i] as number),
    rows: label.length,
    atMs: Float64Array.from(order, (i) => atMs[i] as number),
    herdIds: order.map((i) => herdIds[i] as string),
    hostIds: order.map((i) => hostIds[i] as string),
    dropped: { noLabel },
  };
}

/** Reads the recorded samples (and, for the sysbench label, the container logs) of a dataset directory and builds the table. */
export async function buildTableFromDir(dir: string, range: { since: Date; to: Date }, options: Omit<BuildOptions, 'reports'> = {}): Promise<TrainingTable & { skippedLines: number }> {
  requireDatasetDir(dir);
  const hosts = await readDataset(dir, 'hosts', range);
  const containers = await readDataset(dir, 'containers', range);
  let reports: Map<string, OpsReport[]> | undefined;
  if (options.labelMetric === undefined) {
    reports = new Map();
    for (const id of new Set(containers.records.map((r) => String(r.herdId)))) {
      const path = join(dir, 'logs', `${id}.log`);
      if (existsSync(path)) reports.set(id, readOpsReports(path));
    }
  }
  const table = buildTable(hosts.records, containers.records, { ...options, ...(reports === undefined ? {} : { reports }) });
  if (table.rows === 0) {
    throw new HerdError('BAD_USAGE', `no training rows in ${dir} between ${range.since.toISOString()} and ${range.to.toISOString()}: ${containers.records.length} container samples, ${table.dropped.noLabel} grid rows without a label${options.labelMetric === undefined ? ' (no sysbench per-interval report line — "[ 10s ] thds: 4 tps: …" — in the containers\' logs near them; run sysbench with --report-interval, or use --label METRIC)' : ` (no ${options.labelMetric} value)`}`);
  }
  return { ...table, skippedLines: hosts.skippedLines + containers.skippedLines };
}
