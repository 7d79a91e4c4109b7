/**
 * Reading a container's cgroup (v1) files and its network namespace counters directly,
 * for the values PCP's cgroup PMDA answers "No value(s) available" for on this kernel
 * (memory, and CPU usage as a fallback) and for what PCP has no metric for (process and
 * thread counts, the limit, per-container network bytes).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface CgroupLocation {
  /** Where the cgroup v1 controllers are mounted (default /sys/fs/cgroup). */
  root: string;
  /** Docker's cgroup parent on the host: "docker" normally, "herd-hN" in the lab. */
  parent: string;
  /** Where /proc is (default /proc); tests point it at a fixture tree. */
  procRoot: string;
}

export interface CgroupFsValues {
  memoryBytes?: number;
  memoryLimitBytes?: number;
  /** cpuacct.usage: CPU time in nanoseconds (all CPUs). */
  cpuUsageNs?: number;
  cpuLimitCores?: number;
  processCount?: number;
  threadCount?: number;
  netInBytes?: number;
  netOutBytes?: number;
}

/** Limits above this are "no limit" (the kernel reports PAGE_COUNTER_MAX rounded to pages). */
const UNLIMITED_BYTES = 2 ** 60;

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function readNumber(path: string): Promise<number | undefined> {
  const text = await readText(path);
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

const lines = (text: string | undefined): string[] | undefined => text?.split('\n').filter((l) => l.trim() !== '');

export async function readCgroupFs(loc: CgroupLocation, dockerId: string): Promise<CgroupFsValues> {
  const dir = (controller: string) => join(loc.root, controller, loc.parent, dockerId);
  const [usage, limit, cpuUsage, quota, period, cpuset, procs, tasks] = await Promise.all([
    readNumber(join(dir('memory'), 'memory.usage_in_bytes')),
    readNumber(join(dir('memory'), 'memory.limit_in_bytes')),
    readNumber(join(dir('cpuacct'), 'cpuacct.usage')),
    readNumber(join(dir('cpu'), 'cpu.cfs_quota_us')),
    readNumber(join(dir('cpu'), 'cpu.cfs_period_us')),
    readText(join(dir('cpuset'), 'cpuset.cpus')),
    readText(join(dir('pids'), 'cgroup.procs')),
    readText(join(dir('pids'), 'tasks')),
  ]);
  const out: CgroupFsValues = {};
  if (usage !== undefined) out.memoryBytes = usage;
  if (limit !== undefined && limit < UNLIMITED_BYTES) out.memoryLimitBytes = limit;
  if (cpuUsage !== undefined) out.cpuUsageNs = cpuUsage;
  if (quota !== undefined && quota > 0 && period !== undefined && period > 0) out.cpuLimitCores = quota / period;
  else if (cpuset !== undefined && cpusetSize(cpuset) > 0) out.cpuLimitCores = cpusetSize(cpuset);
  const pids = lines(procs);
  if (pids !== undefined) out.processCount = pids.length;
  const threads = lines(tasks);
  if (threads !== undefined) out.threadCount = threads.length;
  // Any process of the container shares its network namespace: the first listed will do.
  const pid = pids?.[0]?.trim();
  if (pid !== undefined) {
    const netDev = await readText(join(loc.procRoot, pid, 'net', 'dev'));
    if (netDev !== undefined) {
      const net = parseNetDev(netDev);
      out.netInBytes = net.inBytes;
      out.netOutBytes = net.outBytes;
    }
  }
  return out;
}
