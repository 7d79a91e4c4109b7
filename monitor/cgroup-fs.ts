/**
 * Reading a container's cgroup (v1) files and its network namespace counters directly,
 * for the values PCP's cgroup PMDA answers "No value(s) available" for on this kernel
 * (memory, and CPU usage as a fallback) and for what PCP has no metric for (process and
 * thread counts, the limit, per-container network bytes).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupLocation {
  /** Where the cgroup v1 controllers are mounted (default /sys/fs/cgroup). */
  root: string;
  /** Docker's cgroup parent on the host: "docker" normally, "herd-hN" in the lab. */
  parent: string;
  /** Where /proc is (default /proc); tests point it at a fixture tree. */
  procRoot: string;
}

/** Limits above this are "no limit" (the kernel reports PAGE_COUNTER_MAX rounded to pages). */
const UNLIMITED_BYTES = 2 ** 60;

// Synchronous reads on purpose: a cgroup or /proc file is generated in memory, and
// readFileSync costs a few µs where fs/promises' readFile (open, stat, read, close on the
// thread pool) costs tens: for 1000 containers every 2 s that decides the monitor's CPU.
function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

function readNumber(path: string): number | undefined {
  const text = readText(path);
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
}

/** Counts CPUs in a cpuset list such as "0-3,6". */
export function cpusetSize(list: string): number {
  let n = 0;
  for (const part of list.trim().split(',')) {
    if (part === '') continue;
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || !Number.isInteger(a)) continue;
    n += b === undefined ? 1 : Number.isInteger(b) && b >= a ? b - a + 1 : 0;
  }
  return n;
}

/** Sums receive and transmit bytes of /proc/<pid>/net/dev, leaving out `lo`. */
export function parseNetDev(text: string): { inBytes: number; outBytes: number } {
  let inBytes = 0;
  let outBytes = 0;
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (m === null || m[1] === 'lo') continue;
    const fields = (m[2] ?? '').trim().split(/\s+/).map(Number);
    inBytes += fields[0] ?? 0;
    outBytes += fields[8] ?? 0;
  }
  return { inBytes, outBytes };
}

/** Non-empty lines of a file such as cgroup.procs, without building an array. */
function countLines(text: string): number {
  let n = 0;
  let start = 0;
  for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
    if (nl > start) n++;
    start = nl + 1;
  }
  return start < text.length ? n + 1 : n;
}

export interface CgroupLimits {
  memoryLimitBytes?: number;
  cpuLimitCores?: number;
}

export interface CgroupUsage {
  memoryBytes?: number;
  /** cpuacct.usage: CPU time in nanoseconds (all CPUs); read only when asked. */
  cpuUsageNs?: number;
  processCount?: number;
  threadCount?: number;
  netInBytes?: number;
  netOutBytes?: number;
}

const dirOf = (loc: CgroupLocation, controller: string, dockerId: string) => join(loc.root, controller, loc.parent, dockerId);

/** The container's limits (they change only through `docker update`: callers read them now and then). */
export function readCgroupLimits(loc: CgroupLocation, dockerId: string): CgroupLimits {
  const out: CgroupLimits = {};
  const limit = readNumber(join(dirOf(loc, 'memory', dockerId), 'memory.limit_in_bytes'));
  if (limit !== undefined && limit < UNLIMITED_BYTES) out.memoryLimitBytes = limit;
  const quota = readNumber(join(dirOf(loc, 'cpu', dockerId), 'cpu.cfs_quota_us'));
  const period = quota !== undefined && quota > 0 ? readNumber(join(dirOf(loc, 'cpu', dockerId), 'cpu.cfs_period_us')) : undefined;
  if (quota !== undefined && quota > 0 && period !== undefined && period > 0) out.cpuLimitCores = quota / period;
  else {
    const cpuset = readText(join(dirOf(loc, 'cpuset', dockerId), 'cpuset.cpus'));
    if (cpuset !== undefined && cpusetSize(cpuset) > 0) out.cpuLimitCores = cpusetSize(cpuset);
  }
  return out;
}

/** What changes every round: memory, process and thread counts, network bytes (and CPU time when PCP has none). */
export function readCgroupUsage(loc: CgroupLocation, dockerId: string, options: { cpuUsage?: boolean } = {}): CgroupUsage {
  const out: CgroupUsage = {};
  const usage = readNumber(join(dirOf(loc, 'memory', dockerId), 'memory.usage_in_bytes'));
  if (usage !== undefined) out.memoryBytes = usage;
  if (options.cpuUsage === true) {
    const cpu = readNumber(join(dirOf(loc, 'cpuacct', dockerId), 'cpuacct.usage'));
    if (cpu !== undefined) out.cpuUsageNs = cpu;
  }
  const pids = dirOf(loc, 'pids', dockerId);
  const procs = readText(join(pids, 'cgroup.procs'));
  if (procs !== undefined) out.processCount = countLines(procs);
  const tasks = readText(join(pids, 'tasks'));
  if (tasks !== undefined) out.threadCount = countLines(tasks);
  // Any process of the container shares its network namespace: the first listed will do.
  const nl = procs?.indexOf('\n') ?? -1;
  const pid = (nl < 0 ? procs : procs?.slice(0, nl))?.trim();
  if (pid !== undefined && pid !== '') {
    const netDev = readText(join(loc.procRoot, pid, 'net', 'dev'));
    if (netDev !== undefined) {
      const net = parseNetDev(netDev);
      out.netInBytes = net.inBytes;
      out.netOutBytes = net.outBytes;
    }
  }
  return out;
}
