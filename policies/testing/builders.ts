/** Builders for snapshots in tests: defaults that pass every threshold, overrides per field. */
import type { ClusterSnapshot, ContainerSnapshot, HostSnapshot } from '../model.ts';

export function host(hostId: string, o: Partial<HostSnapshot> = {}): HostSnapshot {
  return { hostId, online: true, cores: 1, cpuUtil: 0, sampleCount: 15, missingRatio: 0, ...o };
}

export function container(name: string, hostId: string, o: Partial<ContainerSnapshot> = {}): ContainerSnapshot {
  return { herdId: `id-${name}`, name, hostId, cpuCores: 0, threadCount: 1, sampleCount: 15, missingRatio: 0, migrating: false, ...o };
}

/** A snapshot whose host utilisation is what its containers use (unless given). */
export function snapshot(hosts: HostSnapshot[], containers: ContainerSnapshot[], o: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  const filled = hosts.map((h) => {
    if (h.cpuUtil !== 0 || h.cores === undefined) return h;
    const used = containers.filter((c) => c.hostId === h.hostId).reduce((s, c) => s + (c.cpuCores ?? 0), 0);
    return { ...h, cpuUtil: Math.min(1, used / h.cores) };
  });
  return { version: 's1', nowMs: 1_000_000, windowSeconds: 30, hosts: filled, containers, inFlight: [], ...o };
}
