/**
 * Sample windows: every host and container sample of the last `windowSeconds` as it
 * arrived from the monitors, and the window aggregates (mean, max, sample count,
 * missing-sample share) computed with danfojs-node, the users' choice for tabular work.
 *
 * Samples are stored in long form (entity, metric, value) with only the values a sample
 * had: danfojs' groupby counts a missing value as NaN (which poisons the mean) or null as
 * zero, so a metric a sample lacked is simply not a row. One groupby over a single key
 * column (entity + metric) aggregates everything at once (groupby on several columns is
 * slow in danfojs). danfojs runs in a worker thread (danfo-aggregator.ts): its load and
 * its groupby take seconds at scale, and the control daemon's event loop runs its broker.
 */
import type { ContainerMetricsBatch, HostMetrics } from '../../protocol/messages.ts';
import { aggregateByKey } from './danfo-aggregator.ts';

export const HOST_METRICS = ['cpuUtil', 'diskOpsPerSec', 'diskActiveRatio', 'cpuPressurePct', 'ioPressurePct', 'memoryAvailableBytes'] as const;
export const CONTAINER_METRICS = ['cpuCores', 'cpuLimitCores', 'threadCount', 'processCount', 'diskOpsPerSec', 'memoryBytes'] as const;
export type HostMetric = (typeof HOST_METRICS)[number];
export type ContainerMetric = (typeof CONTAINER_METRICS)[number];

export interface MetricAggregate {
  mean: number;
  max: number;
  count: number;
}

export interface EntityAggregate<M extends string> {
  /** Samples of the entity in the window. */
  sampleCount: number;
  /** 1 − samples / expected samples (window / sampling interval), at least 0. */
  missingRatio: number;
  metrics: Partial<Record<M, MetricAggregate>>;
  /** The latest sample's time (ms). */
  lastAtMs: number;
}

export interface WindowAggregates {
  hosts: Map<string, EntityAggregate<HostMetric>>;
  containers: Map<string, EntityAggregate<ContainerMetric>>;
}

interface Sample {
  id: string;
  /** The host it was taken on (the host itself for host samples). */
  hostId: string;
  atMs: number;
  values: Record<string, number | undefined>;
}

const SEP = '\u0000';

export class SampleWindows {
  private hosts: Sample[] = [];
  private containers: Sample[] = [];
  private readonly cores = new Map<string, number>();
  /** When each host's window last restarted (forgetHosts). */
  private readonly restarts = new Map<string, number>();

  constructor(private readonly options: { windowSeconds: number; hostIntervalSeconds: number; containerIntervalSeconds: number }) {}

  addHost(s: HostMetrics): void {
    if (s.stale) return;
    if (s.cpus !== undefined && s.cpus.length > 0) this.cores.set(s.hostId, s.cpus.length);
    this.hosts.push({
      id: s.hostId,
      hostId: s.hostId,
      atMs: Date.parse(s.at),
      values: {
        cpuUtil: s.cpuUtil,
        diskOpsPerSec: s.diskOpsPerSec,
        diskActiveRatio: s.diskActiveRatio,
        cpuPressurePct: s.pressure?.cpuSomeAvg10sPct,
        ioPressurePct: s.pressure?.ioSomeAvg10sPct,
        memoryAvailableBytes: s.memoryAvailableBytes,
      },
    });
  }

  addContainers(batch: ContainerMetricsBatch): void {
    for (const s of batch.samples) {
      if (s.state !== 'running') continue;
      const disk = s.diskReadOpsPerSec === undefined && s.diskWriteOpsPerSec === undefined ? undefined : (s.diskReadOpsPerSec ?? 0) + (s.diskWriteOpsPerSec ?? 0);
      this.containers.push({
        id: s.herdId,
        hostId: s.hostId,
        atMs: Date.parse(s.at),
        values: { cpuCores: s.cpuCores, cpuLimitCores: s.cpuLimitCores, threadCount: s.threadCount, processCount: s.processCount, diskOpsPerSec: disk, memoryBytes: s.memoryBytes },
      });
    }
  }

  /** Drops what is older than the window. */
  prune(nowMs: number): void {
    const from = nowMs - this.options.windowSeconds * 1000;
    this.hosts = this.hosts.filter((s) => s.atMs > from);
    this.containers = this.containers.filter((s) => s.atMs > from);
    for (const [h, at] of this.restarts) if (at <= from) this.restarts.delete(h);
  }

  /**
   * Forgets what was sampled on these hosts before `atMs`: after a migration between them
   * their old figures describe a placement that no longer exists (the moved container's
   * load on one, its absence on the other). Policies then wait for new samples instead of
   * acting twice on the same imbalance.
   */
  forgetHosts(hostIds: readonly string[], atMs: number): void {
    const stale = (s: Sample) => s.atMs < atMs && hostIds.includes(s.hostId);
    this.hosts = this.hosts.filter((s) => !stale(s));
    this.containers = this.containers.filter((s) => !stale(s));
    for (const h of hostIds) this.restarts.set(h, Math.max(atMs, this.restarts.get(h) ?? 0));
  }

  /** When the host's window restarted (forgetHosts), if that is within the window ending at `nowMs`. */
  restartedAt(hostId: string, nowMs: number): number | undefined {
    const at = this.restarts.get(hostId);
    return at !== undefined && at > nowMs - this.options.windowSeconds * 1000 ? at : undefined;
  }

  /** Cores a host's samples counted (its cpuset), from its latest sample. */
  hostCores(hostId: string): number | undefined {
    return this.cores.get(hostId);
  }

  async aggregate(nowMs: number): Promise<WindowAggregates> {
    this.prune(nowMs);
    return {
      hosts: await aggregateSamples<HostMetric>(this.hosts, HOST_METRICS, this.expected(this.options.hostIntervalSeconds)),
      containers: await aggregateSamples<ContainerMetric>(this.containers, CONTAINER_METRICS, this.expected(this.options.containerIntervalSeconds)),
    };
  }

  /** Samples a full window holds: one per interval, less one that sampling jitter may push across either edge. */
  private expected(intervalSeconds: number): number {
    return Math.max(1, Math.floor(this.options.windowSeconds / intervalSeconds) - 1);
  }
}

export async function aggregateSamples<M extends string>(samples: readonly Sample[], metrics: readonly M[], expected: number): Promise<Map<string, EntityAggregate<M>>> {
  const out = new Map<string, EntityAggregate<M>>();
  for (const s of samples) {
    const e = out.get(s.id);
    if (e === undefined) out.set(s.id, { sampleCount: 1, missingRatio: 0, metrics: {}, lastAtMs: s.atMs });
    else {
      e.sampleCount++;
      e.lastAtMs = Math.max(e.lastAtMs, s.atMs);
    }
  }
  for (const e of out.values()) e.missingRatio = Math.max(0, 1 - e.sampleCount / expected);
  const keys: string[] = [];
  const values: number[] = [];
  for (const s of samples) {
    for (const m of metrics) {
      const v = s.values[m];
      if (v === undefined || !Number.isFinite(v)) continue;
      keys.push(`${s.id}${SEP}${m}`);
      values.push(v);
    }
  }
  if (keys.length === 0) return out;
  for (const r of await aggregateByKey(keys, values)) {
    const cut = r.key.lastIndexOf(SEP);
    const e = out.get(r.key.slice(0, cut));
    if (e !== undefined) e.metrics[r.key.slice(cut + 1) as M] = { mean: r.value_mean, max: r.value_max, count: r.value_count };
  }
  return out;
}
