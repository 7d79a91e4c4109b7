/**
 * Container metrics per host: CPU time from PCP's cgroup PMDA (one fetch covers every
 * container; its unit checked once against the cgroup file), block I/O, memory, limits,
 * process/thread counts and network bytes from the cgroup filesystem and the container's
 * /proc/<pid>/net/dev. See README.md for why.
 */
import { join } from 'node:path';
import type { ContainerMetrics } from '../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { cgroupUsagePaths, FileReader, readCgroupLimits, readCgroupUsage, type CgroupLimits, type CgroupLocation, type CgroupUsagePaths } from './cgroup-fs.ts';
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

/** Samples every given container of one host. Throws (PCP_UNAVAILABLE, BAD_MESSAGE) when the host's pmproxy fails. */
/** The kernel's unit of cpuacct.stat (USER_HZ, fixed at 100 for what it shows to user space). */
const USER_HZ = 100;

/** Limits change only through `docker update`: read again after this long, not every round. */
export const LIMITS_REFRESH_SECONDS = 30;

/** What the sampler keeps per running container between rounds (dropped when it stops or goes). */
interface ContainerState {
  paths: CgroupUsagePaths;
  /** Counter baselines under short constant keys (cheap to hash), one tracker per container. */
  rates: RateTracker;
  limits: CgroupLimits;
  limitsReadAtMs: number;
}

export class ContainerSampler {
  private readonly states = new Map<string, ContainerState>();
  private readonly files = new FileReader();

  constructor(private readonly client: PcpClient, private readonly options: ContainerSamplerOptions) {}

  async sample(containers: readonly TrackedContainer[]): Promise<ContainerMetrics[]> {
    const running = containers.filter((c) => c.state === 'running');
    const pcp = running.length === 0 ? undefined : await this.client.fetch(CONTAINER_PCP_METRICS);
    this.calibrationTried = false;
    // Instance name (cgroup path) → value, per metric.
    const byPath = new Map<string, Map<string, number>>();
    if (pcp !== undefined) {
      for (const name of CONTAINER_PCP_METRICS) {
        const values = pcp.metrics.get(name);
        if (values === undefined) continue;
        const names = await this.client.instanceNames(name, values.keys());
        const map = new Map<string, number>();
        for (const [id, v] of values) if (id !== null && names.has(id)) map.set(names.get(id) as string, v);
        byPath.set(name, map);
      }
    }
    const parent = this.options.cgroup.parent.replace(/^\/+|\/+$/g, '');
    const at = pcp === undefined ? new Date().toISOString() : new Date(pcp.atSeconds * 1000).toISOString();
    // One plain loop, no per-container closures or object spreads: this runs for every container every round.
    const samples: ContainerMetrics[] = [];
    for (const c of containers) samples.push(this.sampleOne(c, at, pcp === undefined ? undefined : { atSeconds: pcp.atSeconds, byPath, path: `/${parent}/${c.dockerId}` }));
    // Forget the state of containers that stopped or are gone, so a restarted or reused id starts fresh.
    if (this.states.size > running.length) {
      const live = new Set(running.map((c) => c.dockerId));
      for (const id of this.states.keys()) if (!live.has(id)) this.states.delete(id);
    }
    this.files.sweep();
    return samples;
  }

  /** Closes the cgroup files kept open. */
  close(): void {
    this.files.close();
  }

  private sampleOne(c: TrackedContainer, at: string, pcp: { atSeconds: number; byPath: Map<string, Map<string, number>>; path: string } | undefined): ContainerMetrics {
    const out: ContainerMetrics = { v: PROTOCOL_VERSION, herdId: c.herdId, hostId: this.options.hostId, name: c.name, dockerId: c.dockerId, at, state: c.state };
    if (c.health !== undefined) out.health = c.health;
    if (c.restartCount !== undefined) out.restartCount = c.restartCount;
    if (c.state !== 'running' || pcp === undefined) return out;
    const { byPath, path } = pcp;
    const id = c.dockerId;
    // CPU: PCP's cpuacct.stat user+system once its unit is known (see calibrate); the cgroup file's cpuacct.usage (ns) otherwise.
    let user = byPath.get('cgroup.cpuacct.stat.user')?.get(path);
    let system = byPath.get('cgroup.cpuacct.stat.system')?.get(path);
    if (user !== undefined && this.pcpCpuSeconds === undefined && !this.calibrationTried) this.calibrate(id, user);
    if (this.pcpCpuSeconds === undefined) user = system = undefined;
    const state = this.stateOf(id);
    const rates = state.rates;
    const fs = readCgroupUsage(state.paths, this.files, user === undefined || system === undefined);
    const limits = state.limits;
    const fsAt = Date.now() / 1000;
    let cpuCores: number | undefined;
    if (user !== undefined && system !== undefined) cpuCores = rateOf(rates.rate('cpu.pcp', user + system, pcp.atSeconds), this.pcpCpuSeconds ?? 0);
    else if (fs.cpuUsageNs !== undefined) cpuCores = rateOf(rates.rate('cpu.fs', fs.cpuUsageNs, fsAt), 1e-9);
    const limit = limits.cpuLimitCores ?? this.options.hostCpuCount;
    if (cpuCores !== undefined) out.cpuCores = round(cpuCores, 4);
    if (limit !== undefined) out.cpuLimitCores = round(limit, 4);
    if (cpuCores !== undefined && limit !== undefined && limit > 0) out.cpuUtil = round(cpuCores / limit, 4);
    if (fs.memoryBytes !== undefined) out.memoryBytes = fs.memoryBytes;
    if (limits.memoryLimitBytes !== undefined) out.memoryLimitBytes = limits.memoryLimitBytes;
    // Block I/O from the cgroup file: PCP's cgroup.blkio.all.io_serviced reads CFQ's file, gone since Linux 5.0 (blkio-accounting.ts).
    const readRate = fs.diskReads === undefined ? undefined : rates.rate('blk.read', fs.diskReads, fsAt);
    const writeRate = fs.diskWrites === undefined ? undefined : rates.rate('blk.write', fs.diskWrites, fsAt);
    if (readRate !== undefined) out.diskReadOpsPerSec = round(readRate, 2);
    if (writeRate !== undefined) out.diskWriteOpsPerSec = round(writeRate, 2);
    if (fs.netInBytes !== undefined && fs.netOutBytes !== undefined) {
      out.netInBytes = fs.netInBytes;
      out.netOutBytes = fs.netOutBytes;
      const rin = rates.rate('net.in', fs.netInBytes, fsAt);
      const rout = rates.rate('net.out', fs.netOutBytes, fsAt);
      if (rin !== undefined) out.netInBytesPerSec = round(rin, 1);
      if (rout !== undefined) out.netOutBytesPerSec = round(rout, 1);
    }
    if (fs.processCount !== undefined) out.processCount = fs.processCount;
    if (fs.threadCount !== undefined) out.threadCount = fs.threadCount;
    return out;
  }

  /**
   * Seconds per unit of PCP's cgroup.cpuacct.stat.* once known. PCP 6.0.3 declares them in
   * milliseconds but passes the kernel's cpuacct.stat through unchanged, in USER_HZ ticks
   * (1/100 s): the same number as the file, and cores read 10 times too low. So the unit is
   * found once by comparing PCP's user time of a container with its cpuacct.stat file
   * (ratio ~1: ticks, ~10: milliseconds); until then the file's cpuacct.usage is used.
   */
  private pcpCpuSeconds: number | undefined;

  /** One calibration attempt per round is enough. */
  private calibrationTried = false;

  private calibrate(dockerId: string, pcpUser: number): void {
    this.calibrationTried = true;
    const text = this.files.read(join(this.options.cgroup.root, 'cpuacct', this.options.cgroup.parent, dockerId, 'cpuacct.stat'), false);
    const ticks = Number(/^user (\d+)/m.exec(text ?? '')?.[1]);
    // Too little CPU yet for a clear ratio: the next round tries again.
    if (!(ticks >= 200)) return;
    const ratio = pcpUser / ticks;
    if (ratio > 0.8 && ratio < 1.25) this.pcpCpuSeconds = 1 / USER_HZ;
    else if (ratio > 8 && ratio < 12.5) this.pcpCpuSeconds = 1 / 1000;
  }

  /** The container's state; its limits read when first seen and every LIMITS_REFRESH_SECONDS. */
  private stateOf(dockerId: string): ContainerState {
    const now = Date.now();
    let state = this.states.get(dockerId);
    if (state === undefined) {
      state = { paths: cgroupUsagePaths(this.options.cgroup, dockerId), rates: new RateTracker(), limits: readCgroupLimits(this.options.cgroup, dockerId), limitsReadAtMs: now };
      this.states.set(dockerId, state);
    } else if (now - state.limitsReadAtMs >= LIMITS_REFRESH_SECONDS * 1000) {
      state.limits = readCgroupLimits(this.options.cgroup, dockerId);
      state.limitsReadAtMs = now;
    }
    return state;
  }
}

function rateOf(perSecond: number | undefined, scale: number): number | undefined {
  return perSecond === undefined ? undefined : perSecond * scale;
}
