/**
 * The label: a container's operations per second, from sysbench's per-interval reports in
 * its log (`<datasetDir>/logs/<herdId>.log`, written by monitor/log-store.ts):
 *
 *   [ 10s ] thds: 4 tps: 123.45 qps: 2469.00 (r/w/o: …) lat (ms,95%): 44.17 err/s: 0.00 reconn/s: 0.00   (oltp_*: tps)
 *   [ 1s ] thds: 1 eps: 1234.00 lat (ms,95%): 0.82                                                       (cpu, --report-interval)
 *   [ 1s ] 3300.46 MiB/sec                                                                                (memory, --report-interval: MiB/s)
 *   events/s (eps): 1234.56                                                                               (cpu, end-of-run summary: ignored, it is no interval)
 *
 * A report is stamped with the time Docker saw its line (the end of its interval).
 */
import { readLog } from '../log-reader.ts';

export interface OpsReport {
  /** End of the interval (ms since the epoch). */
  atMs: number;
  /** Operations per second over the interval (tps, eps, or MiB/s for the memory test). */
  opsPerSec: number;
}

const INTERVAL_LINE = /^\[\s*\d+(?:\.\d+)?s\s*\]\s+(?:thds:\s*\d+\s+(?:tps|eps):\s*([0-9]+(?:\.[0-9]+)?)|([0-9]+(?:\.[0-9]+)?) MiB\/sec$)/;

/** Ops/s of one sysbench per-interval report line; undefined for any other line. */
export function parseSysbenchLine(text: string): number | undefined {
  const m = INTERVAL_LINE.exec(text.trim());
  return m === null ? undefined : Number(m[1] ?? m[2]);
}

/** The reports found in log records, in time order. */
export function opsReports(records: ReadonlyArray<{ at: string; text: string }>): OpsReport[] {
  const out: OpsReport[] = [];
  for (const r of records) {
    const ops = parseSysbenchLine(r.text);
    if (ops === undefined) continue;
    const atMs = Date.parse(r.at);
    if (Number.isFinite(atMs)) out.push({ atMs, opsPerSec: ops });
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

/** The reports in a container's stored log (rotated files too). */
export function readOpsReports(logPath: string): OpsReport[] {
  return opsReports(readLog(logPath).records);
}
