/**
 * Builds the policies' ClusterSnapshot from what the control daemon sees: the cluster
 * view (which hosts are online, which containers run where, which are migrating), the
 * window aggregates, the migrations in flight and the hosts being drained.
 */
import type { ClusterView } from '../../protocol/cluster-view.ts';
import type { ClusterSnapshot, ContainerSnapshot, HostSnapshot, MigrationInFlight } from '../../policies/model.ts';
import type { WindowAggregates } from './windows.ts';

export interface SnapshotInputs {
  version: string;
  nowMs: number;
  windowSeconds: number;
  view: Pick<ClusterView, 'hosts' | 'containers'>;
  aggregates: WindowAggregates;
  inFlight: MigrationInFlight[];
  draining: ReadonlySet<string>;
  /** Cores of a host when its status does not list its CPUs. */
  hostCores: (hostId: string) => number | undefined;
  /** When a host's window restarted (after a migration on it), if within the window. */
  windowRestartedAt?: (hostId: string) => number | undefined;
}

const mean = (a: { mean: number } | undefined) => a?.mean;

export function buildSnapshot(inputs: SnapshotInputs): ClusterSnapshot {
  const { aggregates } = inputs;
  const hosts: HostSnapshot[] = inputs.view.hosts().map((status) => {
    const agg = aggregates.hosts.get(status.hostId);
    const m = agg?.metrics ?? {};
    const host: HostSnapshot = {
      hostId: status.hostId,
      online: status.state === 'online',
      sampleCount: agg?.sampleCount ?? 0,
      missingRatio: agg?.missingRatio ?? 1,
    };
    const restarted = inputs.windowRestartedAt?.(status.hostId);
    if (restarted !== undefined) host.windowRestartedAtMs = restarted;
    // Unknown (no CPUs in its status, no sample yet) stays unknown: the policies then leave the host out of CPU decisions.
    const cores = status.cpus?.length || inputs.hostCores(status.hostId);
    if (cores !== undefined && cores > 0) host.cores = cores;
    if (status.cpus !== undefined) host.cpus = status.cpus;
    if (inputs.draining.has(status.hostId)) host.draining = true;
    const set = <K extends keyof HostSnapshot>(k: K, v: HostSnapshot[K] | undefined) => {
      if (v !== undefined) host[k] = v;
    };
    set('cpuUtil', clamp01(mean(m.cpuUtil)));
    set('cpuUtilMax', clamp01(m.cpuUtil?.max));
    set('diskOpsPerSec', mean(m.diskOpsPerSec));
    set('diskActiveRatio', clamp01(mean(m.diskActiveRatio)));
    set('cpuPressurePct', mean(m.cpuPressurePct));
    set('ioPressurePct', mean(m.ioPressurePct));
    set('memoryAvailableBytes', mean(m.memoryAvailableBytes));
    return host;
  });
  const migrating = new Set(inputs.inFlight.map((f) => f.herdId));
  const hostIds = new Set(hosts.map((h) => h.hostId));
  const seen = new Set<string>();
  const containers: ContainerSnapshot[] = inputs.view
    .containers()
    // One entry per container, on a listed host (what the snapshot schema requires): two hosts' lists may both
    // show a migrating container running for a moment (each list is published on its own); the first is kept.
    .filter((c) => {
      if (c.state !== 'running' || !hostIds.has(c.hostId) || seen.has(c.herdId)) return false;
      seen.add(c.herdId);
      return true;
    })
    .map((c) => {
      const agg = aggregates.containers.get(c.herdId);
      const m = agg?.metrics ?? {};
      const out: ContainerSnapshot = {
        herdId: c.herdId,
        name: c.name,
        hostId: c.hostId,
        sampleCount: agg?.sampleCount ?? 0,
        missingRatio: agg?.missingRatio ?? 1,
        migrating: c.migrationId !== undefined || migrating.has(c.herdId),
      };
      const restarted = inputs.windowRestartedAt?.(c.hostId);
      if (restarted !== undefined) out.windowRestartedAtMs = restarted;
      const created = c.createdAt === undefined ? NaN : Date.parse(c.createdAt);
      // (A host's clock ahead of this one's says "created in the future": just now.)
      if (created > inputs.nowMs - inputs.windowSeconds * 1000) out.createdAtMs = Math.min(created, inputs.nowMs);
      const set = <K extends keyof ContainerSnapshot>(k: K, v: ContainerSnapshot[K] | undefined) => {
        if (v !== undefined) out[k] = v;
      };
      set('cpuCores', mean(m.cpuCores));
      set('cpuCoresMax', m.cpuCores?.max);
      set('cpuLimitCores', mean(m.cpuLimitCores));
      set('threadCount', m.threadCount === undefined ? undefined : Math.round(m.threadCount.max));
      set('processCount', m.processCount === undefined ? undefined : Math.round(m.processCount.max));
      set('diskOpsPerSec', mean(m.diskOpsPerSec));
      set('memoryBytes', mean(m.memoryBytes));
      return out;
    });
  return { version: inputs.version, nowMs: inputs.nowMs, windowSeconds: inputs.windowSeconds, hosts, containers, inFlight: inputs.inFlight };
}

function clamp01(v: number | undefined): number | undefined {
  return v === undefined ? undefined : Math.min(1, Math.max(0, v));
}
