/**
 * The policy model: what a policy sees (a ClusterSnapshot) and what it returns (a Plan).
 * Policies are pure functions `plan(snapshot, args) → Plan`: no I/O, no clock (the
 * snapshot's `nowMs` is the time), no randomness, input never mutated. Like Nomad's
 * scheduler, a plan records the snapshot it came from and explains every decision:
 * "nothing to do because …" is an annotation, never silence.
 *
 * The snapshot is a JSON contract (schema below, `policies/snapshot.schema.json` for tools
 * outside Herd): `herd control` builds it from the metric windows every evaluation, and
 * `herd plan --snapshot FILE` / `herd simulate` feed a saved one to a policy offline.
 */
import { z } from 'zod';

const ratio = z.number().finite().min(0);
const nonNegative = z.number().finite().min(0);

/** A compute host as the last window saw it. Aggregates are over the window's samples. */
export const hostSnapshotSchema = z.strictObject({
  hostId: z.string().min(1),
  /** Offline hosts are never a source or target. */
  online: z.boolean(),
  /** Being drained (`herd drain`): its containers leave, none arrive. */
  draining: z.boolean().optional(),
  /**
   * Cores the host's containers may use (its cpuset size). Absent while unknown (no status
   * listing its CPUs, no sample yet): never invented, and such a host is no source or
   * target of CPU decisions.
   */
  cores: z.number().positive().optional(),
  /** The CPU numbers of that set, when known. */
  cpus: z.array(z.number().int().min(0)).optional(),
  /** Mean busy share of those cores over the window (0..1). */
  cpuUtil: ratio.max(1).optional(),
  /** Highest sample of the window (0..1). */
  cpuUtilMax: ratio.max(1).optional(),
  /** Mean disk operations per second (reads + writes). */
  diskOpsPerSec: nonNegative.optional(),
  /** Mean share of time a disk was busy (0..1). */
  diskActiveRatio: ratio.optional(),
  /** Mean PSI "some" over 10 s, percent of wall time (0..100). */
  cpuPressurePct: nonNegative.max(100).optional(),
  ioPressurePct: nonNegative.max(100).optional(),
  memoryAvailableBytes: nonNegative.optional(),
  /** Samples in the window, and the share of expected samples that did not arrive (0..1). */
  sampleCount: z.number().int().min(0),
  missingRatio: ratio.max(1),
  /** Its window restarted then (ms; within the window): a migration to or from it, whose older samples were forgotten. */
  windowRestartedAtMs: nonNegative.optional(),
});
export type HostSnapshot = z.infer<typeof hostSnapshotSchema>;

/** A Herd-managed container as the last window saw it. */
export const containerSnapshotSchema = z.strictObject({
  herdId: z.string().min(1),
  name: z.string(),
  /** Where it runs now. */
  hostId: z.string().min(1),
  /** Mean CPU used in cores over the window (1 = one core busy). */
  cpuCores: nonNegative.optional(),
  cpuCoresMax: nonNegative.optional(),
  /** Its CPU limit in cores (quota, else cpuset size, else the host's cores). */
  cpuLimitCores: nonNegative.optional(),
  /** Processes and threads: how many cores it could use at once. */
  processCount: z.number().int().min(0).optional(),
  threadCount: z.number().int().min(0).optional(),
  /** Mean disk operations per second (reads + writes). */
  diskOpsPerSec: nonNegative.optional(),
  memoryBytes: nonNegative.optional(),
  sampleCount: z.number().int().min(0),
  missingRatio: ratio.max(1),
  /** Its host's window restarted then (ms; within the window): a migration to or from that host, whose older samples were forgotten. */
  windowRestartedAtMs: nonNegative.optional(),
  /** Docker created it then (ms; within the window): the window's samples before that never were, they are not missing. */
  createdAtMs: nonNegative.optional(),
  /** A migration of it is in flight (its own or a manual one). */
  migrating: z.boolean(),
  /**
   * The safety layer holds it until then (ms; a cooldown after a move, a backoff after a
   * failed one): policies leave it alone and plan with the others instead.
   */
  heldUntilMs: nonNegative.optional(),
});
export type ContainerSnapshot = z.infer<typeof containerSnapshotSchema>;

export const migrationInFlightSchema = z.strictObject({
  migrationId: z.string().min(1),
  herdId: z.string().min(1),
  sourceHost: z.string().min(1),
  targetHost: z.string().min(1),
  /** Issued by `herd migrate` (or anything but the control loop). */
  manual: z.boolean(),
  startedAtMs: nonNegative,
});
export type MigrationInFlight = z.infer<typeof migrationInFlightSchema>;

export const clusterSnapshotSchema = z
  .strictObject({
    /** Identifies this snapshot; a plan names the snapshot it came from. */
    version: z.string().min(1),
    /** The time (ms since the epoch): policies use this, never a clock. */
    nowMs: nonNegative,
    windowSeconds: z.number().positive(),
    hosts: z.array(hostSnapshotSchema),
    containers: z.array(containerSnapshotSchema),
    /**
     * Its containers need not be listed (a frozen container is not running; the containers of
     * an offline host are not listed), nor its hosts (a host gone from the cluster view).
     */
    inFlight: z.array(migrationInFlightSchema),
  })
  // Consistency, every problem with its path: one host per id, one container per id, each on a listed host, one entry per migration.
  .superRefine((s, ctx) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const hostIds = new Map<string, number>();
    s.hosts.forEach((h, i) => {
      const first = hostIds.get(h.hostId);
      if (first !== undefined) issue(['hosts', i, 'hostId'], `duplicate host id "${h.hostId}" (also hosts.${first}.hostId)`);
      else hostIds.set(h.hostId, i);
    });
    const herdIds = new Map<string, number>();
    s.containers.forEach((c, i) => {
      const first = herdIds.get(c.herdId);
      if (first !== undefined) issue(['containers', i, 'herdId'], `duplicate herdId "${c.herdId}" (also containers.${first}.herdId)`);
      else herdIds.set(c.herdId, i);
      if (!hostIds.has(c.hostId)) issue(['containers', i, 'hostId'], `no host "${c.hostId}" in hosts`);
    });
    const migrationIds = new Map<string, number>();
    s.inFlight.forEach((f, i) => {
      const first = migrationIds.get(f.migrationId);
      if (first !== undefined) issue(['inFlight', i, 'migrationId'], `duplicate migrationId "${f.migrationId}" (also inFlight.${first}.migrationId)`);
      else migrationIds.set(f.migrationId, i);
    });
  });
export type ClusterSnapshot = z.infer<typeof clusterSnapshotSchema>;

/** One proposed live migration, with the reason it is worth it. */
export interface Move {
  herdId: string;
  name: string;
  from: string;
  to: string;
  /** The policy that proposed it. */
  policy: string;
  /** Stable reason code (e.g. CPU_OVERLOAD, DISK_IMBALANCE) and a sentence with figures. */
  reasonCode: string;
  reason: string;
  /** Expected gain in the policy's unit (cores of CPU time, disk ops/s). */
  expectedGain: number;
}

export type AnnotationLevel = 'info' | 'skip' | 'veto' | 'error';

/** Why something did or did not happen. `code` is stable; `message` has the figures. */
export interface Annotation {
  level: AnnotationLevel;
  code: string;
  message: string;
  policy?: string;
  herdId?: string;
  hostId?: string;
}

export interface Plan {
  snapshotVersion: string;
  /** The policy (or chain) that made it. */
  policy: string;
  moves: Move[];
  annotations: Annotation[];
}

/** A policy: validated arguments with visible defaults, and a pure plan function. */
export interface PolicyDefinition<A = Record<string, unknown>> {
  name: string;
  description: string;
  /** zod schema of the arguments; every field has a default. */
  argsSchema: z.ZodType<A>;
  plan(snapshot: ClusterSnapshot, args: A): Plan;
}

/** Index helpers policies share (no mutation of the snapshot). */
export function onlineHosts(snapshot: ClusterSnapshot): HostSnapshot[] {
  return snapshot.hosts.filter((h) => h.online);
}

export function containersByHost(snapshot: ClusterSnapshot): Map<string, ContainerSnapshot[]> {
  const by = new Map<string, ContainerSnapshot[]>();
  for (const h of snapshot.hosts) by.set(h.hostId, []);
  for (const c of snapshot.containers) {
    const list = by.get(c.hostId);
    if (list === undefined) by.set(c.hostId, [c]);
    else list.push(c);
  }
  return by;
}

/** Deterministic order: by the key, then by id. */
export function byKeyThenId<T>(key: (x: T) => number, id: (x: T) => string, descending = false): (a: T, b: T) => number {
  return (a, b) => {
    const d = descending ? key(b) - key(a) : key(a) - key(b);
    if (d !== 0 && Number.isFinite(d)) return d;
    const ia = id(a);
    const ib = id(b);
    return ia < ib ? -1 : ia > ib ? 1 : 0;
  };
}

export const fmt = (x: number, digits = 2): string => x.toFixed(digits);

/** A host whose core count is known: only such a host is a source or target of CPU decisions. */
export type CpuKnownHost = HostSnapshot & { cores: number };
export const coresKnown = (h: HostSnapshot): h is CpuKnownHost => h.cores !== undefined;

/** CPU a host uses as the window saw it, in cores: its busy share, else what its containers used. */
export function hostCpuUsed(h: HostSnapshot, containers: readonly ContainerSnapshot[]): number {
  if (h.cpuUtil !== undefined && h.cores !== undefined) return h.cpuUtil * h.cores;
  return containers.filter((c) => c.hostId === h.hostId).reduce((sum, c) => sum + (c.cpuCores ?? 0), 0);
}

/** CPU, in cores, of the containers migrating to a host: on their way, not in its window yet. */
export function arrivingCpu(snapshot: ClusterSnapshot, hostId: string): number {
  let sum = 0;
  for (const f of snapshot.inFlight) {
    if (f.targetHost !== hostId) continue;
    const c = snapshot.containers.find((x) => x.herdId === f.herdId);
    if (c !== undefined && c.hostId !== hostId) sum += c.cpuCores ?? 0;
  }
  return sum;
}

/** May a host receive containers? */
export const acceptsContainers = (h: HostSnapshot): boolean => h.online && h.draining !== true;

/** Share of a host's available memory an arriving container may take: the rest is headroom. */
export const MEMORY_HEADROOM = 0.9;

const mib = (bytes: number): string => `${fmt(bytes / 2 ** 20, 0)} MiB`;

/**
 * Why container `c` does not fit in `freeBytes` of available memory on host `hostId`, or
 * undefined (also when either figure is unknown). The one memory rule of every policy and
 * of the last re-check.
 */
export function memoryProblem(c: ContainerSnapshot, hostId: string, freeBytes: number | undefined): string | undefined {
  if (freeBytes === undefined || c.memoryBytes === undefined || c.memoryBytes <= freeBytes * MEMORY_HEADROOM) return undefined;
  return `${c.name} needs ~${mib(c.memoryBytes)} of memory, ${hostId} has ${mib(freeBytes)} available (at most ${fmt(MEMORY_HEADROOM * 100, 0)} % of it is used)`;
}
