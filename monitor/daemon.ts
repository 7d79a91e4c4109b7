/**
 * The monitor daemon: samples each configured host (PCP through its pmproxy) every
 * `hostIntervalSeconds` and its Herd-managed containers every `containerIntervalSeconds`,
 * publishes every sample on herd/v1/metrics/... and appends it to the dataset.
 *
 * Every host runs its own two loops: a host whose pmproxy is down, slow or answers odd
 * JSON is marked stale and retried with exponential backoff (capped), and never delays
 * or stops the other hosts. A container's series is keyed by its Herd id: when it starts
 * running on another host, its first sample there carries a `migration` marker, and the
 * leftover stopped copy on the old host is not published (no duplicate series).
 *
 * A container whose `io.herd.id` label is not a valid id is left out (with one warning): its
 * samples would make consumers reject its host's whole batch, and the id names its log file.
 */
import { brokerCredentials } from '../protocol/config.ts';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { toHerdError } from '../protocol/errors.ts';
import { containerMetricsSchema, hostMetricsSchema, PROTOCOL_VERSION, type ContainerMetrics, type HostMetrics } from '../protocol/messages.ts';
import { closeBroker, connectBroker, type MqttClient } from '../protocol/mqtt.ts';
import { ID_PATTERN, topics } from '../protocol/topics.ts';
import { defaultMonitorClientId, type MonitorConfig, type MonitorHostConfig } from './config.ts';
import { createCgroupUsageReader } from './cgroup-reader.ts';
import { ContainerSampler, HERD_ID_LABEL, type ContainerLister, type TrackedContainer } from './container-metrics.ts';
import { dockerContainerLister } from './docker-lister.ts';
import { DatasetWriter } from './dataset.ts';
import { activateBlkioAccounting } from './blkio-accounting.ts';
import { deviceNumbers } from './disk-stats.ts';
import { HostSampler } from './host-metrics.ts';
import { ContainerLogFollower, dockerLogSource, type FileFollowings, type LogFollowerStats, type LogSource } from './log-follower.ts';
import { ContainerLogStore } from './log-store.ts';
import { PcpClient } from './pcp-client.ts';
import { SeriesOwnership } from './series-ownership.ts';
import { BufferedPublisher, type PublisherStats } from './publisher.ts';
import { registerMonitorMetrics } from './monitor-metrics.ts';
import { newRegistry, serveMetrics, type MetricsServer } from '../protocol/metrics-endpoint.ts';

export interface MonitorDaemonDeps {
  log: Logger;
  /** How to list a host's containers; Docker on the host's socket by default. */
  listerFor?: (host: MonitorHostConfig) => ContainerLister;
  fetchImpl?: typeof fetch;
  /** Where container logs are read from; Docker's logs API on the host's socket by default. */
  logSourceFor?: (host: MonitorHostConfig) => LogSource;
  /** Called with every sample that passed its check, as it is published (tests, benchmarks). */
  onSample?: (kind: 'host' | 'container', sample: HostMetrics | ContainerMetrics) => void;
}

export interface LoopStatus {
  stale: boolean;
  reason?: string;
  failures: number;
  lastOkAt?: string;
  rounds: number;
}

export interface MonitorStatus {
  connected: boolean;
  startedAt?: string;
  publisher: PublisherStats;
  /** `containers.pcp`: why the container rounds go without PCP (CPU from the cgroup files), while they do. */
  hosts: Array<{ id: string; host: LoopStatus; containers: LoopStatus & { count: number; pcp?: string }; logs?: LogFollowerStats }>;
}

export interface MonitorDaemon {
  start(): Promise<void>;
  close(): Promise<void>;
  status(): MonitorStatus;
  /** Where GET /metrics is served, when metrics are on. */
  metricsUrl(): string | undefined;
}

interface Loop {
  status: LoopStatus;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

interface HostRuntime {
  config: MonitorHostConfig;
  hostSampler: HostSampler;
  containerSampler: ContainerSampler;
  lister: ContainerLister;
  logFollower?: ContainerLogFollower;
  hostLoop: Loop;
  containerLoop: Loop & { count: number };
  cpuCount?: number;
  /** Whether block I/O counting was turned on for this host's cgroup parent (or needs no more tries). */
  blkioDone: boolean;
  /** major:minor of the host's own disks (`disks`), read at start (a missing one is a config error then). */
  diskDevices?: string[];
  /** Docker containers already warned about for an invalid `io.herd.id` (once each). */
  badIdsWarned: Set<string>;
  /** Why the container rounds go without PCP, as last logged (undefined while PCP answers). */
  pcpProblem?: string;
}

/** One container sample in this many gets the full zod check (the rest: numbers finite and >= 0). */
export const FULL_CHECK_EVERY = 50;

function schemaProblem(schema: z.ZodType, sample: unknown): string | undefined {
  const checked = schema.safeParse(sample);
  return checked.success ? undefined : checked.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

/** Every metric of a sample is a finite, non-negative number (what the schema's numbers require). */
export function numericProblem(sample: Record<string, unknown>): string | undefined {
  for (const key in sample) {
    const v = sample[key];
    if (typeof v === 'number' && !(v >= 0 && v < Infinity)) return `${key}: ${v} is not a finite number >= 0`;
  }
  return undefined;
}

/** Delay before the next attempt after `failures` consecutive failures. */
export function backoffSeconds(intervalSeconds: number, failures: number, maxSeconds: number): number {
  if (failures <= 0) return intervalSeconds;
  return Math.min(maxSeconds, intervalSeconds * 2 ** Math.min(failures, 20));
}

export function buildMonitorDaemon(config: MonitorConfig, deps: MonitorDaemonDeps): MonitorDaemon {
  const { log } = deps;
  const publisher = new BufferedPublisher(config.publishBufferSize, log);
  const dataset = config.datasetDir === null ? undefined : new DatasetWriter(config.datasetDir);
  const logStore = config.datasetDir === null || !config.containerLogs ? undefined : new ContainerLogStore(join(config.datasetDir, 'logs'), { maxBytes: config.containerLogMaxBytes, rotatedFiles: config.containerLogRotatedFiles });
  const clientId = config.clientId ?? defaultMonitorClientId();
  const registry = newRegistry();
  let metricsServer: MetricsServer | undefined;
  const metrics = registerMonitorMetrics(registry, { publisher: () => publisher.stats(), staleHosts: () => hosts.filter((h) => h.hostLoop.status.stale).length });
  let client: MqttClient | undefined;
  let connectTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let startedAt: string | undefined;
  const ownership = new SeriesOwnership();

  // One registry for all hosts: a migration target's first log lines wait for its source's last ones.
  const fileFollowings: FileFollowings = new Map();
  const readers = config.hosts.map(() => createCgroupUsageReader(config.cgroupReader));
  const fallback = readers.find((r) => r.fallback !== undefined)?.fallback;
  if (fallback !== undefined) log.warn({ reason: fallback }, 'cgroup files are read by the JavaScript reader (about twice the CPU of the native one)');
  log.info({ cgroupReader: readers[0]?.reader.kind }, 'cgroup reader');

  const hosts: HostRuntime[] = config.hosts.map((h, i) => {
    // One PCP client (context) per loop: host and container loops have different periods.
    const pcp = (interval: number) => new PcpClient({ url: h.pmproxyUrl, pollIntervalSeconds: interval, timeoutMs: config.requestTimeoutMs, fetchImpl: metrics.timedFetch(h.id, deps.fetchImpl ?? fetch) });
    return {
      config: h,
      hostSampler: new HostSampler(pcp(config.hostIntervalSeconds), { hostId: h.id, log, ...(h.cpus === undefined ? {} : { cpus: h.cpus }), ...(h.interfaces === undefined ? {} : { interfaces: h.interfaces }), ...(h.disks === undefined ? {} : { disks: h.disks }), swapNetworkDirection: h.swapNetworkDirection }),
      containerSampler: new ContainerSampler(pcp(config.containerIntervalSeconds), { hostId: h.id, log, cgroup: { root: h.cgroupRoot, parent: h.cgroupParent, procRoot: h.procRoot }, ...(h.cpus === undefined ? {} : { hostCpuCount: h.cpus.length }) }, readers[i]!.reader),
      lister: deps.listerFor?.(h) ?? dockerContainerLister(h.dockerSocket, { timeoutMs: config.requestTimeoutMs }),
      ...(logStore === undefined ? {} : { logFollower: new ContainerLogFollower(logStore, deps.logSourceFor?.(h) ?? dockerLogSource(h.dockerSocket), { hostId: h.id, log, fileFollowings }) }),
      hostLoop: { status: { stale: false, failures: 0, rounds: 0 } },
      containerLoop: { status: { stale: false, failures: 0, rounds: 0 }, count: 0 },
      blkioDone: !config.blkioAccounting,
      badIdsWarned: new Set(),
      // A named disk that is not there is a config error, found now rather than as a stale host.
      ...(h.disks === undefined ? {} : { diskDevices: deviceNumbers(h.disks) }),
    };
  });

  /** Checks a sample against its schema; undefined when it passes. */
  let checked = 0;
  const problemOf = <S extends z.ZodType>(kind: 'host' | 'container', schema: S, sample: z.infer<S>): string | undefined => {
    // The samplers are typed code: the full schema check (~7 µs) runs on every host sample and
    // on one container sample in FULL_CHECK_EVERY; every sample gets the cheap numeric check.
    const full = kind === 'host' || checked++ % FULL_CHECK_EVERY === 0;
    const problem = full ? schemaProblem(schema, sample) : numericProblem(sample as Record<string, unknown>);
    // A bug in a sampler, never a reason to stop: log it and drop the sample.
    if (problem !== undefined) log.error({ kind, problem }, 'sample does not match its schema; dropped');
    return problem;
  };

  /** Checks and publishes a host sample; returns its encoded line for the dataset. */
  const emitHost = (sample: HostMetrics): { at: string; json: string } | undefined => {
    if (problemOf('host', hostMetricsSchema, sample) !== undefined) return undefined;
    const json = JSON.stringify(sample);
    publisher.publish(topics.hostMetrics(sample.hostId), json);
    metrics.samples('host', 1);
    deps.onSample?.('host', sample);
    return { at: sample.at, json };
  };

  /**
   * Checks one round's container samples of a host and publishes them as ONE batch message
   * (see ContainerMetricsBatch); each sample is encoded once, for the batch and the dataset.
   */
  const emitContainers = (hostId: string, at: string, samples: readonly ContainerMetrics[]): Array<{ at: string; json: string }> => {
    const lines: Array<{ at: string; json: string }> = [];
    let payload = `{"v":${PROTOCOL_VERSION},"hostId":${JSON.stringify(hostId)},"at":"${at}","samples":[`;
    for (const s of samples) {
      if (problemOf('container', containerMetricsSchema, s) !== undefined) continue;
      const json = JSON.stringify(s);
      payload += lines.length === 0 ? json : `,${json}`;
      lines.push({ at: s.at, json });
      deps.onSample?.('container', s);
    }
    payload += ']}';
    publisher.publish(topics.containerMetrics(hostId), payload, Math.max(1, lines.length));
    metrics.samples('container', lines.length);
    return lines;
  };

  /** Appends one round's encoded samples to the dataset in one write. */
  const store = (kind: 'hosts' | 'containers', lines: Array<{ at: string; json: string }>): void => {
    if (dataset === undefined || lines.length === 0) return;
    try {
      dataset.appendLines(kind, lines);
      metrics.datasetBytes(lines.reduce((n, l) => n + Buffer.byteLength(l.json) + 1, 0));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot append to the dataset');
    }
  };

  const runLoop = (loop: Loop, name: string, hostId: string, intervalSeconds: number, round: () => Promise<void>): void => {
    const tick = async () => {
      loop.timer = undefined;
      if (closed) return;
      try {
        await round();
        if (loop.status.stale) log.info({ hostId, loop: name }, 'host answers again');
        loop.status = { stale: false, failures: 0, rounds: loop.status.rounds + 1, lastOkAt: new Date().toISOString() };
      } catch (err) {
        const e = toHerdError(err);
        const failures = loop.status.failures + 1;
        if (!loop.status.stale || failures % 10 === 0) log.warn({ hostId, loop: name, code: e.code, err: e.message, failures }, 'host is stale');
        loop.status = { ...loop.status, stale: true, reason: `${e.code}: ${e.message}`, failures, rounds: loop.status.rounds + 1 };
      }
      if (closed) return;
      const delay = backoffSeconds(intervalSeconds, loop.status.failures, Math.max(config.maxBackoffSeconds, intervalSeconds));
      loop.timer = setTimeout(() => {
        loop.running = tick();
      }, delay * 1000);
    };
    loop.running = tick();
  };

  const hostRound = async (h: HostRuntime): Promise<void> => {
    try {
      const sample = await h.hostSampler.sample();
      if (sample.cpus !== undefined) h.cpuCount = sample.cpus.length;
      const line = emitHost(sample);
      if (line !== undefined) store('hosts', [line]);
    } catch (err) {
      const e = toHerdError(err);
      const stale: HostMetrics = { v: PROTOCOL_VERSION, hostId: h.config.id, at: new Date().toISOString(), stale: true, staleReason: `${e.code}: ${e.message}`.slice(0, 500) };
      const line = emitHost(stale);
      if (line !== undefined) store('hosts', [line]);
      throw err;
    }
  };

  /** The host's managed containers whose Herd id is valid; one warning per Docker container whose label is not. */
  const validContainers = (h: HostRuntime, listed: readonly TrackedContainer[]): TrackedContainer[] => {
    const valid = listed.filter((c) => ID_PATTERN.test(c.herdId));
    if (valid.length === listed.length) {
      h.badIdsWarned.clear();
      return valid;
    }
    const bad = listed.filter((c) => !ID_PATTERN.test(c.herdId));
    for (const c of bad) {
      if (h.badIdsWarned.has(c.dockerId)) continue;
      log.warn({ hostId: h.config.id, container: c.name, dockerId: c.dockerId, label: HERD_ID_LABEL, value: c.herdId }, `Docker container ${c.name} is left out: its ${HERD_ID_LABEL} label is not a Herd id (1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit)`);
    }
    // Remember only the ones still there, so a recreated container is named again.
    h.badIdsWarned = new Set(bad.map((c) => c.dockerId));
    return valid;
  };

  /** Logs, once each, when a host's container rounds start and stop going without PCP. */
  const notePcp = (h: HostRuntime): void => {
    const problem = h.containerSampler.pcpProblem;
    if (problem === h.pcpProblem) return;
    if (problem !== undefined && h.pcpProblem === undefined) log.warn({ hostId: h.config.id, reason: problem }, 'pmproxy fails: container samples go on with CPU from the cgroup files until it answers');
    else if (problem === undefined) log.info({ hostId: h.config.id }, 'pmproxy answers again: container CPU from PCP');
    h.pcpProblem = problem;
  };

  const containerRound = async (h: HostRuntime): Promise<void> => {
    let listed: TrackedContainer[];
    try {
      // Docker's empty label is not a Herd-managed container; any other invalid one is warned about.
      listed = validContainers(h, (await h.lister.list()).filter((c) => c.herdId !== ''));
    } catch (err) {
      // None of this host's copies counts as running now: a running copy elsewhere may take their series over.
      ownership.unknown(h.config.id);
      throw err;
    }
    h.containerLoop.count = listed.length;
    ownership.listed(h.config.id, listed);
    if (!h.blkioDone && listed.length > 0) {
      // The cgroup parent exists once the host's Docker started a container.
      const result = activateBlkioAccounting(h.config.cgroupRoot, h.config.cgroupParent, h.diskDevices);
      if (result.done) {
        h.blkioDone = true;
        if (result.added.length > 0) log.info({ hostId: h.config.id, devices: result.added }, 'turned on per-container block I/O counting (no-op throttle rule)');
      } else log.debug({ hostId: h.config.id, reason: result.reason }, 'block I/O counting not turned on yet');
    }
    h.logFollower?.sync(listed);
    const samples = await h.containerSampler.sample(listed);
    notePcp(h);
    const published: ContainerMetrics[] = [];
    for (const s of samples) {
      const verdict = ownership.decide(s.herdId, h.config.id, s.state === 'running');
      if (!verdict.publish) continue;
      if (verdict.movedFrom !== undefined) {
        const migrationId = listed.find((c) => c.dockerId === s.dockerId)?.migrationId;
        s.migration = { fromHost: verdict.movedFrom, toHost: h.config.id, ...(migrationId === undefined ? {} : { migrationId }) };
        log.info({ herdId: s.herdId, from: verdict.movedFrom, to: h.config.id }, 'container moved: series continues on the new host');
      }
      published.push(s);
    }
    store('containers', emitContainers(h.config.id, published[0]?.at ?? new Date().toISOString(), published));
  };

  const connect = async (): Promise<void> => {
    if (closed) return;
    try {
      const c = await connectBroker({
        url: config.broker.url,
        clientId,
        ...brokerCredentials(config.broker),
      });
      if (closed) {
        await closeBroker(c);
        return;
      }
      client = c;
      // A broker closes the older of two connections with one client id: two monitors with the
      // same id (say, a second one on this host without its own clientId) throw each other off
      // in turn. Said once, as it otherwise shows only as endless reconnects.
      let reconnects: number[] = [];
      let saidSameId = false;
      c.on('connect', () => {
        const now = Date.now();
        reconnects = reconnects.filter((t) => now - t < 60_000);
        reconnects.push(now);
        if (reconnects.length >= 5 && !saidSameId) {
          saidSameId = true;
          log.warn({ clientId, reconnects: reconnects.length }, 'the broker keeps closing this connection: another client may use the same client id (give each monitor its own clientId)');
        }
      });
      c.on('offline', () => log.warn('broker unreachable: buffering samples'));
      c.on('error', (err) => log.debug({ err: err.message }, 'mqtt error'));
      publisher.attach(c);
      log.info({ url: config.broker.url }, 'connected to the broker');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'broker unreachable at start: buffering samples, retrying');
      connectTimer = setTimeout(() => void connect(), 2000);
    }
  };

  return {
    async start() {
      startedAt = new Date().toISOString();
      if (config.metrics.enabled) metricsServer = await serveMetrics(registry, config.metrics, log);
      // Sampling does not wait for the broker: samples are buffered until it is there.
      void connect();
      for (const h of hosts) {
        runLoop(h.hostLoop, 'host', h.config.id, config.hostIntervalSeconds, () => hostRound(h));
        runLoop(h.containerLoop, 'containers', h.config.id, config.containerIntervalSeconds, () => containerRound(h));
      }
      log.info({ hosts: hosts.map((h) => h.config.id), hostIntervalSeconds: config.hostIntervalSeconds, containerIntervalSeconds: config.containerIntervalSeconds }, 'monitor started');
    },
    async close() {
      closed = true;
      if (connectTimer !== undefined) clearTimeout(connectTimer);
      for (const h of hosts) {
        for (const loop of [h.hostLoop, h.containerLoop]) if (loop.timer !== undefined) clearTimeout(loop.timer);
      }
      await Promise.allSettled(hosts.flatMap((h) => [h.hostLoop.running, h.containerLoop.running]));
      await Promise.allSettled(hosts.map((h) => h.logFollower?.close()));
      for (const h of hosts) {
        h.lister.close?.();
        h.containerSampler.close();
      }
      logStore?.close();
      const c = publisher.detach() ?? client;
      if (c !== undefined) await closeBroker(c);
      dataset?.close();
      await metricsServer?.close();
    },
    metricsUrl: () => metricsServer?.url,
    status() {
      return {
        connected: client?.connected === true,
        ...(startedAt === undefined ? {} : { startedAt }),
        publisher: publisher.stats(),
        hosts: hosts.map((h) => ({ id: h.config.id, host: { ...h.hostLoop.status }, containers: { ...h.containerLoop.status, count: h.containerLoop.count, ...(h.pcpProblem === undefined ? {} : { pcp: h.pcpProblem }) }, ...(h.logFollower === undefined ? {} : { logs: h.logFollower.stats() }) })),
      };
    },
  };
}
