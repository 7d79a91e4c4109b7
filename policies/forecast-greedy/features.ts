/**
 * The forecast model's feature columns computed from a cluster snapshot: the same names as
 * the training table's (monitor/dataset/features.ts; control/cli/forecast-command.test.ts
 * keeps both lists equal). `ctr_*`: the container's window means; `host_*`: its host's, or
 * a target host's "as if moved" (the container's CPU, disk ops and memory added).
 */
import { arrivingCpu, hostCpuUsed, type ClusterSnapshot, type ContainerSnapshot, type HostSnapshot } from '../model.ts';

export const SNAPSHOT_FEATURES = [
  'ctr_cpu_cores',
  'ctr_cpu_limit_cores',
  'ctr_cpu_util',
  'ctr_disk_ops',
  'ctr_memory_bytes',
  'ctr_threads',
  'ctr_processes',
  'host_cores',
  'host_cpu_util',
  'host_disk_ops',
  'host_disk_active',
  'host_cpu_pressure',
  'host_io_pressure',
  'host_memory_available_bytes',
] as const;
export type SnapshotFeature = (typeof SNAPSHOT_FEATURES)[number];

const v = (x: number | undefined): number => (x === undefined ? Number.NaN : x);

/** Feature values of container `c` on host `h`; `moved`: h is a target, c's load is added to it. */
export function featureValues(snapshot: ClusterSnapshot, c: ContainerSnapshot, h: HostSnapshot, moved: boolean): Record<SnapshotFeature, number> {
  const cores = c.cpuCores ?? 0;
  const hostUtil = moved ? (h.cores === undefined ? Number.NaN : Math.min(1, (hostCpuUsed(h, snapshot.containers) + arrivingCpu(snapshot, h.hostId) + cores) / h.cores)) : v(h.cpuUtil);
  return {
    ctr_cpu_cores: v(c.cpuCores),
    ctr_cpu_limit_cores: v(c.cpuLimitCores),
    ctr_cpu_util: c.cpuCores !== undefined && c.cpuLimitCores !== undefined && c.cpuLimitCores > 0 ? c.cpuCores / c.cpuLimitCores : Number.NaN,
    ctr_disk_ops: v(c.diskOpsPerSec),
    ctr_memory_bytes: v(c.memoryBytes),
    ctr_threads: v(c.threadCount),
    ctr_processes: v(c.processCount),
    host_cores: v(h.cores),
    host_cpu_util: hostUtil,
    host_disk_ops: moved && h.diskOpsPerSec !== undefined ? h.diskOpsPerSec + (c.diskOpsPerSec ?? 0) : v(h.diskOpsPerSec),
    host_disk_active: v(h.diskActiveRatio),
    host_cpu_pressure: v(h.cpuPressurePct),
    host_io_pressure: v(h.ioPressurePct),
    host_memory_available_bytes: moved && h.memoryAvailableBytes !== undefined ? Math.max(0, h.memoryAvailableBytes - (c.memoryBytes ?? 0)) : v(h.memoryAvailableBytes),
  };
}
