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

/**
 * What the policy's model must predict: the training table's label column (monitor/dataset
 * csv.ts LABEL_COLUMN, sysbench ops/s; control/cli/forecast-command.test.ts keeps both equal),
 * as `herd forecast train` records it in the model's `label` field.
 */
export const OPS_LABEL = 'label';

/**
 * The monitor records a container without a CPU limit with cpuLimitCores = its host's cores
 * (monitor/container-metrics.ts: `limits.cpuLimitCores ?? hostCpuCount`, the cpuset size,
 * which is also the snapshot's host `cores`). So the training rows of an unlimited container
 * on an 8-core host say limit 8, util = cores / 8. A limit equal to the current host's cores
 * (within the window mean's rounding) is read as "no limit": on a target it becomes the
 * target's cores. A container given an explicit limit of exactly its host's cores cannot be
 * told apart in the snapshot; it is treated the same way (what the monitor would record for it
 * after a move differs then: it would keep its limit).
 */
const NO_LIMIT_TOLERANCE = 1e-3;

function limitOn(snapshot: ClusterSnapshot, c: ContainerSnapshot, h: HostSnapshot, moved: boolean, hostOf: HostLookup): number | undefined {
  if (!moved || c.cpuLimitCores === undefined || h.cores === undefined) return c.cpuLimitCores;
  const current = hostOf(c.hostId);
  if (current?.cores === undefined || Math.abs(c.cpuLimitCores - current.cores) > NO_LIMIT_TOLERANCE) return c.cpuLimitCores;
  return h.cores;
}

const v = (x: number | undefined): number => (x === undefined ? Number.NaN : x);

/** A host of the snapshot by id (a Map's get when called for many rows: the default searches the list). */
export type HostLookup = (hostId: string) => HostSnapshot | undefined;

/** Feature values of container `c` on host `h`; `moved`: h is a target, c's load is added to it. */
export function featureValues(snapshot: ClusterSnapshot, c: ContainerSnapshot, h: HostSnapshot, moved: boolean, hostOf: HostLookup = (id) => snapshot.hosts.find((x) => x.hostId === id)): Record<SnapshotFeature, number> {
  const cores = c.cpuCores ?? 0;
  const hostUtil = moved ? (h.cores === undefined ? Number.NaN : Math.min(1, (hostCpuUsed(h, snapshot.containers) + arrivingCpu(snapshot, h.hostId) + cores) / h.cores)) : v(h.cpuUtil);
  const limit = limitOn(snapshot, c, h, moved, hostOf);
  return {
    ctr_cpu_cores: v(c.cpuCores),
    ctr_cpu_limit_cores: v(limit),
    ctr_cpu_util: c.cpuCores !== undefined && limit !== undefined && limit > 0 ? c.cpuCores / limit : Number.NaN,
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
