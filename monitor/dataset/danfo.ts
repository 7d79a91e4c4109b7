/**
 * The same resample and join as build.ts, with danfojs-node (kept for the measurement in
 * bench.ts and an equivalence test; build.ts is what Herd runs — see README.md for why).
 * A sample belongs to the grid time t = ceil(at / step) × step, i.e. to (t − step, t]; the
 * last sample of each (series, t) group is the series' value at t (build.ts with
 * toleranceMs = stepMs). Labels are not part of it (build.ts's sweep attaches them).
 */
import * as dfd from 'danfojs-node';
import type { DatasetRecord } from '../dataset.ts';
import { CONTAINER_FEATURES, containerFeatures, HOST_FEATURES, hostFeatures } from './features.ts';

export interface FeatureRows {
  herdIds: string[];
  hostIds: string[];
  atMs: number[];
  /** Row-major features (CONTAINER_FEATURES then HOST_FEATURES). */
  rows: number[][];
}

export function resampleJoinDanfo(hosts: readonly DatasetRecord[], containers: readonly DatasetRecord[], stepMs = 5000): FeatureRows {
  const bucket = (at: string) => Math.ceil(Date.parse(at) / stepMs) * stepMs;
  const running = containers.filter((r) => r.state === 'running');
  const ccols: Record<string, unknown[]> = { herdId: [], hostId: [], ts: [], t: [] };
  for (const name of CONTAINER_FEATURES) ccols[name] = [];
  for (const r of running) {
    const t = bucket(r.at);
    ccols.herdId?.push(String(r.herdId));
    ccols.hostId?.push(String(r.hostId));
    ccols.ts?.push(Date.parse(r.at));
    ccols.t?.push(t);
    containerFeatures(r).forEach((x, i) => ccols[CONTAINER_FEATURES[i] as string]?.push(x));
  }
  const hcols: Record<string, unknown[]> = { key: [], ts: [] };
  for (const name of HOST_FEATURES) hcols[name] = [];
  for (const r of hosts) {
    hcols.key?.push(`${String(r.hostId)}|${bucket(r.at)}`);
    hcols.ts?.push(Date.parse(r.at));
    hostFeatures(r).forEach((x, i) => hcols[HOST_FEATURES[i] as string]?.push(x));
  }
  const ctr = new dfd.DataFrame(ccols).sortValues('ts') as dfd.DataFrame;
  const ctrLast = ctr.groupby(['herdId', 't']).last() as dfd.DataFrame;
  const keys = (ctrLast.column('hostId').values as string[]).map((h, i) => `${h}|${String((ctrLast.column('t').values as number[])[i])}`);
  ctrLast.addColumn('key', keys, { inplace: true });
  const host = new dfd.DataFrame(hcols).sortValues('ts') as dfd.DataFrame;
  const hostLast = (host.groupby(['key']).last() as dfd.DataFrame).drop({ columns: ['key_Group', 'ts'] });
  const joined = dfd.merge({ left: ctrLast, right: hostLast, on: ['key'], how: 'left' }).sortValues('t') as dfd.DataFrame;
  const cols = [...CONTAINER_FEATURES, ...HOST_FEATURES].map((n) => joined.column(n).values as number[]);
  const herdIds = joined.column('herdId').values as string[];
  const n = herdIds.length;
  const rows: number[][] = [];
  for (let i = 0; i < n; i++) rows.push(cols.map((c) => (c[i] === null || c[i] === undefined ? Number.NaN : Number(c[i]))));
  return { herdIds, hostIds: joined.column('hostId').values as string[], atMs: joined.column('t').values as number[], rows };
}
