/**
 * `node monitor/dataset/bench.ts [containers] [hosts] [minutes]`: the resample + join of
 * build.ts (typed arrays) against danfo.ts (danfojs-node) on synthetic samples shaped like
 * the monitor's (every 2 s, hosts and containers out of phase). Figures in README.md.
 */
import { buildTable } from './build.ts';
import { resampleJoinDanfo } from './danfo.ts';

const [nc = 100, nh = 10, minutes = 60] = process.argv.slice(2).map(Number);
const T0 = Date.parse('2026-11-26T00:00:00Z');
const hosts: Record<string, unknown>[] = [];
const containers: Record<string, unknown>[] = [];
for (let k = 0; k < minutes * 30; k++) {
  for (let h = 0; h < nh; h++) hosts.push({ v: 1, hostId: `h${h}`, at: new Date(T0 + k * 2000 + h * 37).toISOString(), stale: false, cpus: [0, 1], cpuUtil: Math.random(), diskOpsPerSec: 100 * Math.random(), diskActiveRatio: Math.random(), memoryAvailableBytes: 1e9, pressure: { cpuSomeAvg10sPct: 3, memorySomeAvg10sPct: 0, ioSomeAvg10sPct: 1 } });
  for (let c = 0; c < nc; c++) containers.push({ v: 1, herdId: `c${c}`, hostId: `h${c % nh}`, name: `c${c}`, dockerId: 'd', at: new Date(T0 + k * 2000 + 500 + c * 7).toISOString(), state: 'running', cpuCores: Math.random(), cpuLimitCores: 1, memoryBytes: 1e6, diskReadOpsPerSec: 1, diskWriteOpsPerSec: 2, threadCount: 4, processCount: 1 });
}
const time = (f: () => number): [number, number] => {
  const t = performance.now();
  const rows = f();
  return [performance.now() - t, rows];
};
console.log(`${containers.length} container samples, ${hosts.length} host samples (${nc} containers, ${nh} hosts, ${minutes} min at 2 s)`);
const [typedMs, typedRows] = time(() => buildTable(hosts as never, containers as never, { labelMetric: 'ctr_cpu_cores' }).rows);
console.log(`typed arrays: ${typedMs.toFixed(0)} ms, ${typedRows} rows`);
const [danfoMs, danfoRows] = time(() => resampleJoinDanfo(hosts as never, containers as never).rows.length);
console.log(`danfojs-node: ${danfoMs.toFixed(0)} ms, ${danfoRows} rows (${(danfoMs / typedMs).toFixed(0)}× slower)`);
const speedUp = danfoMs / typedMs;
console.log(`target typed arrays' speed-up over danfojs-node (resample + join): ${speedUp.toFixed(1)}x vs >= 1x: ${speedUp >= 1 ? 'MET' : 'MISSED'}`);
