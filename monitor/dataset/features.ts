/**
 * The training table's feature columns: what a container sample and its host's sample
 * say, under names that the forecast-greedy policy can also compute from a cluster
 * snapshot (policies/forecast-greedy/features.ts holds the same names; a test in
 * control/cli/forecast-command.test.ts keeps both lists equal). `ctr_*` are the
 * container's own metrics, `host_*` those of the host it ran on at that time.
 */
export const CONTAINER_FEATURES = ['ctr_cpu_cores', 'ctr_cpu_limit_cores', 'ctr_cpu_util', 'ctr_disk_ops', 'ctr_memory_bytes', 'ctr_threads', 'ctr_processes'] as const;
export const HOST_FEATURES = ['host_cores', 'host_cpu_util', 'host_disk_ops', 'host_disk_active', 'host_cpu_pressure', 'host_io_pressure', 'host_memory_available_bytes'] as const;
export const FEATURES: readonly string[] = [...CONTAINER_FEATURES, ...HOST_FEATURES];

type Rec = Record<string, unknown>;
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : Number.NaN);
const sum = (a: number, b: number): number => (Number.isNaN(a) && Number.isNaN(b) ? Number.NaN : (Number.isNaN(a) ? 0 : a) + (Number.isNaN(b) ? 0 : b));

/** A container sample's features, in CONTAINER_FEATURES order (NaN where the sample lacks the value). */
export function containerFeatures(r: Rec): number[] {
  const cores = num(r.cpuCores);
  const limit = num(r.cpuLimitCores);
  return [cores, limit, Number.isNaN(num(r.cpuUtil)) && limit > 0 ? cores / limit : num(r.cpuUtil), sum(num(r.diskReadOpsPerSec), num(r.diskWriteOpsPerSec)), num(r.memoryBytes), num(r.threadCount), num(r.processCount)];
}

/** A host sample's features, in HOST_FEATURES order. */
export function hostFeatures(r: Rec): number[] {
  const pressure = (r.pressure ?? {}) as Rec;
  return [Array.isArray(r.cpus) ? r.cpus.length : Number.NaN, num(r.cpuUtil), num(r.diskOpsPerSec), num(r.diskActiveRatio), num(pressure.cpuSomeAvg10sPct), num(pressure.ioSomeAvg10sPct), num(r.memoryAvailableBytes)];
}
