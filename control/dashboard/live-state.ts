/**
 * What the dashboard shows, kept live from the broker: the placement (hosts and their
 * containers, from the cluster view), short CPU and disk series per host and container
 * (from the monitors' samples), migrations as their phases go by (from their events), and
 * the control loop's decisions (its events, history and latest plan). It folds messages
 * into state and tells its listeners what changed, as small typed updates that the page
 * applies without reloading (sent as server-sent events by dashboard-server.ts).
 */
import type { ContainerMetricsBatch, ContainerSummary, ControlEvent, HostMetrics, HostStatus, MigrationEvent } from '../../protocol/messages.ts';

/** Points kept per series: 10 minutes of the monitor's 2 s samples. */
export const SERIES_POINTS = 300;
/** Finished migrations kept for the page. */
const RECENT_MIGRATIONS = 50;
/** A running migration with no event for this long is shown as unknown (its source may be gone): `herd migrate --status` asks the hosts. */
export const SILENT_MIGRATION_MS = 15 * 60_000;

export interface Series {
  /** Unix seconds. */
  t: number[];
  cpu: (number | null)[];
  disk: (number | null)[];
}

export interface MigrationView {
  migrationId: string;
  herdId: string;
  container: string;
  from: string;
  to: string;
  startedAt: string;
  updatedAt: string;
  /** The phase now (or the last one: done, failed). */
  phase: string;
  /** `in-doubt`: the source cannot tell yet whether the target runs it (frozen, never twice); its source announces the end later. */
  state: 'running' | 'in-doubt' | 'done' | 'failed' | 'unknown';
  /** ms per finished phase. */
  phases: Record<string, number>;
  bytes?: number;
  totalBytes?: number;
  downtimeMs?: number;
  totalMs?: number;
  error?: string;
}

export type DashboardUpdate =
  | { type: 'host-metrics'; hostId: string; t: number; cpu: number | null; disk: number | null; memoryUsedBytes: number | null; stale: boolean }
  | { type: 'container-metrics'; hostId: string; t: number; samples: { herdId: string; cpu: number | null; disk: number | null; memoryBytes: number | null }[] }
  | { type: 'placement'; hosts: HostStatus[]; containers: ContainerSummary[] }
  | { type: 'migration'; migration: MigrationView }
  | { type: 'control'; event: ControlEvent };

/** Not ended yet: running, or in doubt until its source announces the end. */
const isOpen = (m: MigrationView) => m.state === 'running' || m.state === 'in-doubt';

const num = (v: number | undefined): number | null => (v === undefined ? null : v);

function push(series: Series, t: number, cpu: number | null, disk: number | null): void {
  series.t.push(t);
  series.cpu.push(cpu);
  series.disk.push(disk);
  if (series.t.length > SERIES_POINTS) {
    series.t.shift();
    series.cpu.shift();
    series.disk.shift();
  }
}

const emptySeries = (): Series => ({ t: [], cpu: [], disk: [] });

export class LiveState {
  readonly hostSeries = new Map<string, Series>();
  readonly containerSeries = new Map<string, Series>();
  readonly latestHost = new Map<string, { cpu: number | null; disk: number | null; memoryUsedBytes: number | null; at: string; stale: boolean }>();
  readonly latestContainer = new Map<string, { cpu: number | null; disk: number | null; memoryBytes: number | null; at: string }>();
  private readonly migrations = new Map<string, MigrationView>();
  private readonly listeners = new Set<(u: DashboardUpdate) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Calls `listener` with every update until the returned function is called. */
  subscribe(listener: (u: DashboardUpdate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(u: DashboardUpdate): void {
    for (const l of this.listeners) l(u);
  }

  host(sample: HostMetrics): void {
    const t = Date.parse(sample.at) / 1000;
    const cpu = num(sample.cpuUtil);
    const disk = num(sample.diskOpsPerSec);
    let s = this.hostSeries.get(sample.hostId);
    if (s === undefined) this.hostSeries.set(sample.hostId, (s = emptySeries()));
    push(s, t, cpu, disk);
    this.latestHost.set(sample.hostId, { cpu, disk, memoryUsedBytes: num(sample.memoryUsedBytes), at: sample.at, stale: sample.stale });
    // `stale` too: the page marks a host whose monitor cannot read it (its pmproxy failed) as it happens.
    this.emit({ type: 'host-metrics', hostId: sample.hostId, t, cpu, disk, memoryUsedBytes: num(sample.memoryUsedBytes), stale: sample.stale });
  }

  containers(batch: ContainerMetricsBatch): void {
    const t = Date.parse(batch.at) / 1000;
    const samples = batch.samples.map((c) => {
      const disk = c.diskReadOpsPerSec === undefined && c.diskWriteOpsPerSec === undefined ? null : (c.diskReadOpsPerSec ?? 0) + (c.diskWriteOpsPerSec ?? 0);
      return { herdId: c.herdId, cpu: num(c.cpuCores), disk, memoryBytes: num(c.memoryBytes) };
    });
    for (const c of samples) {
      let s = this.containerSeries.get(c.herdId);
      if (s === undefined) this.containerSeries.set(c.herdId, (s = emptySeries()));
      push(s, t, c.cpu, c.disk);
      this.latestContainer.set(c.herdId, { cpu: c.cpu, disk: c.disk, memoryBytes: c.memoryBytes, at: batch.at });
    }
    this.emit({ type: 'container-metrics', hostId: batch.hostId, t, samples });
  }

  /** The placement changed (a host's status or container list): the page redraws its hosts. Series of hosts and containers that left are dropped. */
  placement(hosts: HostStatus[], containers: ContainerSummary[]): void {
    // A host that left (its retained status cleared) is no longer listed; one offline still is, with its series.
    const hostIds = new Set(hosts.map((h) => h.hostId));
    for (const id of this.hostSeries.keys()) if (!hostIds.has(id)) this.hostSeries.delete(id);
    for (const id of this.latestHost.keys()) if (!hostIds.has(id)) this.latestHost.delete(id);
    const known = new Set(containers.map((c) => c.herdId));
    for (const id of this.containerSeries.keys()) if (!known.has(id)) this.containerSeries.delete(id);
    for (const id of this.latestContainer.keys()) if (!known.has(id)) this.latestContainer.delete(id);
    this.emit({ type: 'placement', hosts, containers });
  }

  migration(e: MigrationEvent): void {
    let m = this.migrations.get(e.migrationId);
    if (m === undefined) {
      m = { migrationId: e.migrationId, herdId: e.herdId, container: e.container, from: e.sourceHost, to: e.targetHost, startedAt: e.at, updatedAt: e.at, phase: e.phase, state: 'running', phases: {} };
      this.migrations.set(e.migrationId, m);
    }
    m.updatedAt = e.at;
    m.phase = e.phase;
    if (e.status === 'progress' || (e.phase === 'transfer' && e.bytes !== undefined)) {
      if (e.bytes !== undefined) m.bytes = e.bytes;
      if (e.totalBytes !== undefined) m.totalBytes = e.totalBytes;
    }
    if ((e.status === 'finished' || e.status === 'failed') && e.durationMs !== undefined && e.phase !== 'done' && e.phase !== 'failed') m.phases[e.phase] = e.durationMs;
    if (e.phase === 'done') {
      m.state = 'done';
      if (e.timings !== undefined) {
        m.downtimeMs = e.timings.downtimeMs;
        m.totalMs = e.timings.totalMs;
        m.bytes = e.timings.checkpointBytes + e.timings.filesystemBytes + (e.timings.precopyBytes ?? 0);
      }
    } else if (e.phase === 'failed') {
      // IN_DOUBT is not an end: the source keeps resolving it and announces the end (done or failed) later.
      m.state = e.error?.code === 'IN_DOUBT' ? 'in-doubt' : 'failed';
      if (e.error !== undefined) m.error = `${e.error.code}: ${e.error.message}`;
    }
    // Only an end adds to the finished ones (progress events come twice a second).
    if (!isOpen(m)) this.trim();
    this.emit({ type: 'migration', migration: { ...m, phases: { ...m.phases } } });
  }

  control(e: ControlEvent): void {
    this.emit({ type: 'control', event: e });
  }

  /** Running migrations first, then the latest finished ones, newest first. */
  migrationList(): MigrationView[] {
    for (const m of this.migrations.values()) {
      if (isOpen(m) && this.now() - Date.parse(m.updatedAt) > SILENT_MIGRATION_MS) {
        m.state = 'unknown';
        m.error = `no event for ${SILENT_MIGRATION_MS / 60_000} min: herd migrate --status ${m.migrationId}`;
      }
    }
    return [...this.migrations.values()].sort((a, b) => (isOpen(a) !== isOpen(b) ? (isOpen(a) ? -1 : 1) : b.startedAt.localeCompare(a.startedAt)));
  }

  private trim(): void {
    const finished = [...this.migrations.values()].filter((m) => !isOpen(m)).sort((a, b) => a.updatedAt.localeCompare(b.updatedAt));
    for (const m of finished.slice(0, Math.max(0, finished.length - RECENT_MIGRATIONS))) this.migrations.delete(m.migrationId);
  }
}
