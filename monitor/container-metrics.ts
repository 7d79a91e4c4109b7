/**
 * Container metrics per host: CPU time from PCP's cgroup PMDA (one fetch covers every
 * container; its unit checked once against the cgroup file), block I/O, memory, limits,
 * process/thread counts and network bytes from the cgroup filesystem and the container's
 * /proc/<pid>/net/dev. See README.md for why.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { toHerdError } from '../protocol/errors.ts';
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
  /** Where the sampler warns (once per container) about cgroup files it cannot read. */
  log?: Pick<Logger, 'warn'>;
}

/**
 * After this many PCP failures in a row the sampler stops asking PCP every round: it asks
 * again after 2^(failures-1) - 1 rounds without (at most PCP_MAX_SKIPPED_ROUNDS), so that a
 * pmproxy that answers only by timing out does not add its timeout to every round.
 */
export const PCP_MAX_SKIPPED_ROUNDS = 31;

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
  /** Whether the warning that its cgroup files cannot be read was given (once per container). */
  warnedUnreadable?: boolean;
}

/**
 * Samples every given container of one host: one PCP fetch and one call of the cgroup
 * reader per round. A pmproxy that fails (down, slow, odd answers) does not fail the round:
 * PCP is left out of it, CPU comes from the cgroup files as for a container PCP has no value
 * for, and {@link pcpProblem} says why until PCP answers again.
 */
export class ContainerSampler {
  private readonly states = new Map<string, ContainerState>();
  /** Why the last PCP attempt failed (`CODE: message`); undefined while PCP answers. */
  pcpProblem: string | undefined;
  private pcpFailures = 0;
  private pcpSkipRounds = 0;
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
    const pcp = running === 0 ? undefined : await this.fetchPcp();
    if (this.slots.length < running) this.grow(running);
    // CPU time per container from PCP (user + system), once its unit is known (calibrate).
    const user = pcp?.metrics.get('cgroup.cpuacct.stat.user');
    const system = pcp?.metrics.get('cgroup.cpuacct.stat.system');
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
      if (c.state === 'running') {
        const state = this.states.get(c.dockerId)!;
        this.fill(out, state, k, pcp?.atSeconds ?? fsAt, fsAt);
        if (state.warnedUnreadable !== true) this.checkReadable(c, state, k, cpuFromFiles);
        k++;
      }
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

  /**
   * This round's PCP values and the cgroup instance names they need, or undefined: PCP failed
   * (the round goes on without it) or is skipped after failures in a row (PCP_MAX_SKIPPED_ROUNDS).
   */
  private async fetchPcp(): Promise<{ atSeconds: number; metrics: Map<string, Map<number | null, number>> } | undefined> {
    if (this.pcpSkipRounds > 0) {
      this.pcpSkipRounds--;
      return undefined;
    }
    try {
      const pcp = await this.client.fetch(CONTAINER_PCP_METRICS);
      const user = pcp.metrics.get('cgroup.cpuacct.stat.user');
      if (user !== undefined) await this.refreshInstances(user.keys());
      this.pcpFailures = 0;
      this.pcpProblem = undefined;
      return pcp;
    } catch (err) {
      const e = toHerdError(err);
      this.pcpFailures++;
      this.pcpSkipRounds = Math.min(PCP_MAX_SKIPPED_ROUNDS, 2 ** Math.min(this.pcpFailures - 1, 20) - 1);
      this.pcpProblem = `${e.code}: ${e.message}`;
      return undefined;
    }
  }

  /**
   * Warns, once per container, when the cgroup files of a running container cannot be read
   * (a wrong cgroupRoot or cgroupParent, another cgroup version, permissions): its samples
   * would otherwise just lack memory, disk and process figures, with nothing saying why.
   */
  private checkReadable(c: TrackedContainer, state: ContainerState, k: number, cpuFromFiles: boolean): void {
    const u = this.usage;
    const base = k * USAGE_FIELDS;
    const paths = cgroupUsagePaths(this.options.cgroup, c.dockerId);
    const unreadable: string[] = [];
    if (!(u[base + USAGE.memoryBytes]! >= 0)) unreadable.push(paths.memoryUsage);
    if (!(u[base + USAGE.processCount]! >= 0)) unreadable.push(paths.procs);
    if (!(u[base + USAGE.diskReads]! >= 0)) unreadable.push(paths.ioServiced);
    if (cpuFromFiles && this.pcpCpu[k] !== this.pcpCpu[k] && !(u[base + USAGE.cpuUsageNs]! >= 0)) unreadable.push(paths.cpuUsage);
    if (unreadable.length === 0) return;
    state.warnedUnreadable = true;
    this.options.log?.warn({ hostId: this.options.hostId, herdId: c.herdId, name: c.name, dockerId: c.dockerId, unreadable }, 'cannot read cgroup files of a running container: its samples lack those figures (check cgroupRoot and cgroupParent)');
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
    // One CPU source's baseline at a time: the other's would be as old as the last round that used
    // it (hours, say, after PCP came back), and a rate against it the average since then.
    if (pcpCpu === pcpCpu) {
      rates.forget('cpu.fs');
      cpuCores = rateOf(rates.rate('cpu.pcp', pcpCpu, pcpAt), this.pcpCpuSeconds ?? 0);
    } else if (cpuNs === cpuNs) {
      rates.forget('cpu.pcp');
      cpuCores = rateOf(rates.rate('cpu.fs', cpuNs, fsAt), 1e-9);
    }
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
