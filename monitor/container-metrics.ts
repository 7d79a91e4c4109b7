/**
 * Container metrics per host: CPU time from PCP's cgroup PMDA (one fetch covers every
 * container; its unit checked once against the cgroup file), block I/O, memory, limits,
 * process/thread counts and network bytes from the cgroup filesystem and the container's
 * /proc/<pid>/net/dev. See README.md for why.
 */
import { join } from 'node:path';
import type { ContainerMetrics } from '../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { cgroupUsagePaths, readCgroupLimits, readText, type CgroupLimits, type CgroupLocation } from './cgroup-fs.ts';
import { USAGE, USAGE_FIELDS, type CgroupUsageReader } from './cgroup-reader.ts';
import { round } from './host-metrics.ts';
import type { PcpClient } from './pcp-client.ts';
import { RateTracker } from './rates.ts';

/** Label of every Herd-managed container (same as compute/runtime; monitor does not import compute). */
export const HERD_ID_LABEL = 'io.herd.id';
/** Label a migration target carries with its migration id. */
export const HERD_MIGRATION_LABEL = 'io.herd.migration';

export interface TrackedContainer {
  herdId: string;
  name: string;
  dockerId: string;
  state: string;
  health?: string;
  migrationId?: string;
  /** Docker's RestartCount (restarts by its restart policy since the container was created). */
  restartCount?: number;
  /** Where Docker keeps its log (from inspect): json-file logs are read from the file (json-log-tail.ts). */
  log?: ContainerLogFile;
  /** When Docker last reported a change of this container (an event or first sight); limits are read again after it. */
  changedAtMs?: number;
}

export interface ContainerLogFile {
  /** Docker's log driver ("json-file", "local", "journald"…). */
  driver: string;
  /** Its LogPath (empty for drivers without a file). */
  path: string;
  /** Its max-size option in bytes, when the log rotates. */
  maxBytes?: number;
}

/** Lists the Herd-managed containers of one host. */
export interface ContainerLister {
  list(): Promise<TrackedContainer[]>;
  /** Releases long-lived connections (Docker's events stream). */
  close?(): void;
}

export const CONTAINER_PCP_METRICS = [
  'cgroup.cpuacct.stat.user',
  'cgroup.cpuacct.stat.system',
] as const;

export interface ContainerSamplerOptions {
  hostId: string;
  cgroup: CgroupLocation;
  /** CPUs of the host, the limit of a container with neither quota nor cpuset. */
  hostCpuCount?: number;
}

/** The kernel's unit of cpuacct.stat (USER_HZ, fixed at 100 for what it shows to user space). */
const USER_HZ = 100;

/**
 * Limits change only through `docker update`, whose event makes the lister report the
 * container as changed (changedAtMs): limits are read again then, and after this long
 * in any case (a lister without events, a missed event).
 */
export const LIMITS_REFRESH_SECONDS = 300;

/** What the sampler keeps per running container between rounds (dropped when it stops or goes). */
interface ContainerState {
  /** Its slot in the cgroup reader. */
  slot: number;
  /** Its cgroup path, PCP's instance name for it ("/docker/<id>"). */
  pcpPath: string;
  /** Counter baselines under short constant keys (cheap to hash), one tracker per container. */
  rates: RateTracker;
  limits: CgroupLimits;
  limitsReadAtMs: number;
}

/**
 * Samples every given container of one host: one PCP fetch and one call of the cgroup
 * reader per round. Throws (PCP_UNAVAILABLE, BAD_MESSAGE) when the host's pmproxy fails.
 */
export class ContainerSampler {
  private readonly states = new Map<string, ContainerState>();
  /** This round's running containers: their reader slots, PCP CPU values and usage (grown as needed). */
  private slots = new Int32Array(64);
  private pcpCpu = new Float64Array(64);
  private usage = new Float64Array(64 * USAGE_FIELDS);

  constructor(
    private readonly client: PcpClient,
    private readonly options: ContainerSamplerOptions,
    private readonly reader: CgroupUsageReader,
  ) {}

  async sample(containers: readonly TrackedContainer[]): Promise<ContainerMetrics[]> {
    let running = 0;
    for (const c of containers) if (c.state === 'running') running++;
    const pcp = running === 0 ? undefined : await this.client.fetch(CONTAINER_PCP_METRICS);
    if (this.slots.length < running) this.grow(running);
    // CPU time per container from PCP (user + system), once its unit is known (calibrate).
    const user = pcp?.metrics.get('cgroup.cpuacct.stat.user');
    const system = pcp?.metrics.get('cgroup.cpuacct.stat.system');
    if (user !== undefined) await this.refreshInstances(user.keys());
    let calibrationTried = false;
    let cpuFromFiles = false;
    let k = 0;
    for (const c of containers) {
      if (c.state !== 'running') continue;
      const state = this.stateOf(c);
      this.slots[k] = state.slot;
      const instance = this.instanceByPath.get(state.pcpPath);
      const u = instance === undefined ? undefined : user?.get(instance);
      const sys = instance === undefined ? undefined : system?.get(instance);
      if (u !== undefined && this.pcpCpuSeconds === undefined && !calibrationTried) {
        calibrationTried = true;
        this.calibrate(c.dockerId, u);
      }
      const known = u !== undefined && sys !== undefined && this.pcpCpuSeconds !== undefined;
      this.pcpCpu[k] = known ? u + sys : Number.NaN;
      if (!known) cpuFromFiles = true;
      k++;
    }
    // One call reads every running container's cgroup files (cpuacct.usage only when PCP lacks a CPU value).
    this.reader.read(this.slots, running, cpuFromFiles, this.usage);
    const fsAt = Date.now() / 1000;
    const at = pcp === undefined ? new Date().toISOString() : new Date(pcp.atSeconds * 1000).toISOString();
    const samples: ContainerMetrics[] = [];
    k = 0;
    for (const c of containers) {
      const out: ContainerMetrics = { v: PROTOCOL_VERSION, herdId: c.herdId, hostId: this.options.hostId, name: c.name, dockerId: c.dockerId, at, state: c.state };
      if (c.health !== undefined) out.health = c.health;
      if (c.restartCount !== undefined) out.restartCount = c.restartCount;
      if (c.state === 'running' && pcp !== undefined) this.fill(out, this.states.get(c.dockerId)!, k, pcp.atSeconds, fsAt);
      if (c.state === 'running') k++;
      samples.push(out);
    }
    // Forget the state of containers that stopped or are gone, so a restarted or reused id starts fresh.
    if (this.states.size > running) {
      const live = new Set<string>();
      for (const c of containers) if (c.state === 'running') live.add(c.dockerId);
      for (const [id, state] of this.states) {
        if (live.has(id)) continue;
        this.reader.untrack(state.slot);
        this.states.delete(id);
      }
    }
    return samples;
  }

  /** Stops tracking every container and closes the cgroup files kept open. */
  close(): void {
    this.reader.close();
    this.states.clear();
  }

  private grow(n: number): void {
    let size = this.slots.length;
    while (size < n) size *= 2;
    this.slots = new Int32Array(size);
    this.pcpCpu = new Float64Array(size);
    this.usage = new Float64Array(size * USAGE_FIELDS);
  }

  /** The instance domain of cgroup.cpuacct.stat.* (user and system share it) the sampler last saw, and its reverse. */
  private indom: Map<number, string> | undefined;
  private readonly instanceByPath = new Map<string, number>();

  /** Cgroup path → PCP instance id, rebuilt only when the PCP client's cached instance names change. */
  private async refreshInstances(ids: Iterable<number | null>): Promise<void> {
    const names = await this.client.instanceNames('cgroup.cpuacct.stat.user', ids);
    if (names === this.indom) return;
    this.indom = names;
    this.instanceByPath.clear();
    for (const [id, path] of names) this.instanceByPath.set(path, id);
  }

  /** The metrics of the k-th running container of the round. */
  private fill(out: ContainerMetrics, state: ContainerState, k: number, pcpAt: number, fsAt: number): void {
    const { rates, limits } = state;
    const u = this.usage;
    const base = k * USAGE_FIELDS;
    const pcpCpu = this.pcpCpu[k]!;
    const cpuNs = u[base + USAGE.cpuUsageNs]!;
    let cpuCores: number | undefined;
    if (pcpCpu === pcpCpu) cpuCores = rateOf(rates.rate('cpu.pcp', pcpCpu, pcpAt), this.pcpCpuSeconds ?? 0);
    else if (cpuNs === cpuNs) cpuCores = rateOf(rates.rate('cpu.fs', cpuNs, fsAt), 1e-9);
    const limit = limits.cpuLimitCores ?? this.options.hostCpuCount;
    if (cpuCores !== undefined) out.cpuCores = round(cpuCores, 4);
    if (limit !== undefined) out.cpuLimitCores = round(limit, 4);
    if (cpuCores !== undefined && limit !== undefined && limit > 0) out.cpuUtil = round(cpuCores / limit, 4);
    const memory = u[base + USAGE.memoryBytes]!;
    if (memory === memory) out.memoryBytes = memory;
    if (limits.memoryLimitBytes !== undefined) out.memoryLimitBytes = limits.memoryLimitBytes;
    // Block I/O from the cgroup file: PCP's cgroup.blkio.all.io_serviced reads CFQ's file, gone since Linux 5.0 (blkio-accounting.ts).
    const reads = u[base + USAGE.diskReads]!;
    const writes = u[base + USAGE.diskWrites]!;
    const readRate = reads === reads ? rates.rate('blk.read', reads, fsAt) : undefined;
    const writeRate = writes === writes ? rates.rate('blk.write', writes, fsAt) : undefined;
    if (readRate !== undefined) out.diskReadOpsPerSec = round(readRate, 2);
    if (writeRate !== undefined) out.diskWriteOpsPerSec = round(writeRate, 2);
    const netIn = u[base + USAGE.netInBytes]!;
    const netOut = u[base + USAGE.netOutBytes]!;
    if (netIn === netIn && netOut === netOut) {
      out.netInBytes = netIn;
      out.netOutBytes = netOut;
      const rin = rates.rate('net.in', netIn, fsAt);
      const rout = rates.rate('net.out', netOut, fsAt);
      if (rin !== undefined) out.netInBytesPerSec = round(rin, 1);
      if (rout !== undefined) out.netOutBytesPerSec = round(rout, 1);
    }
    const processes = u[base + USAGE.processCount]!;
    const threads = u[base + USAGE.threadCount]!;
    if (processes === processes) out.processCount = processes;
    if (threads === threads) out.threadCount = threads;
  }

  /**
   * Seconds per unit of PCP's cgroup.cpuacct.stat.* once known. PCP 6.0.3 declares them in
   * milliseconds but passes the kernel's cpuacct.stat through unchanged, in USER_HZ ticks
   * (1/100 s): the same number as the file, and cores read 10 times too low. So the unit is
   * found once by comparing PCP's user time of a container with its cpuacct.stat file
   * (ratio ~1: ticks, ~10: milliseconds); until then the file's cpuacct.usage is used.
   */
  private pcpCpuSeconds: number | undefined;

  /** One attempt per round (the caller's rule): compares PCP's user time of a container with its file. */
  private calibrate(dockerId: string, pcpUser: number): void {
    const text = readText(join(this.options.cgroup.root, 'cpuacct', this.options.cgroup.parent, dockerId, 'cpuacct.stat'));
    const ticks = Number(/^user (\d+)/m.exec(text ?? '')?.[1]);
    // Too little CPU yet for a clear ratio: the next round tries again.
    if (!(ticks >= 200)) return;
    const ratio = pcpUser / ticks;
    if (ratio > 0.8 && ratio < 1.25) this.pcpCpuSeconds = 1 / USER_HZ;
    else if (ratio > 8 && ratio < 12.5) this.pcpCpuSeconds = 1 / 1000;
  }

  /** The container's state; its limits read when first seen, after Docker reported a change, and every LIMITS_REFRESH_SECONDS. */
  private stateOf(c: TrackedContainer): ContainerState {
    const now = Date.now();
    const dockerId = c.dockerId;
    let state = this.states.get(dockerId);
    if (state === undefined) {
      const pcpPath = `/${this.options.cgroup.parent.replace(/^\/+|\/+$/g, '')}/${dockerId}`;
      state = { slot: this.reader.track(cgroupUsagePaths(this.options.cgroup, dockerId)), pcpPath, rates: new RateTracker(), limits: readCgroupLimits(this.options.cgroup, dockerId), limitsReadAtMs: now };
      this.states.set(dockerId, state);
    } else if ((c.changedAtMs !== undefined && c.changedAtMs > state.limitsReadAtMs) || now - state.limitsReadAtMs >= LIMITS_REFRESH_SECONDS * 1000) {
      state.limits = readCgroupLimits(this.options.cgroup, dockerId);
      state.limitsReadAtMs = now;
    }
    return state;
  }
}

function rateOf(perSecond: number | undefined, scale: number): number | undefined {
  return perSecond === undefined ? undefined : perSecond * scale;
}
