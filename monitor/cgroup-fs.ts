/**
 * Reading a container's cgroup (v1) files and its network namespace counters directly,
 * for the values PCP's cgroup PMDA answers "No value(s) available" for on this kernel
 * (memory, and CPU usage as a fallback) and for what PCP has no metric for (process and
 * thread counts, the limit, per-container network bytes).
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parseIoServiced } from './blkio-accounting.ts';

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

// Synchronous reads on purpose: a cgroup or /proc file is generated in memory, and a
// synchronous read costs a few µs where fs/promises' readFile (open, stat, read, close on
// the thread pool) costs a hundred: for 1000 containers every 2 s that decides the
// monitor's CPU. Files read every round go through FileReader (below), cheaper still.
export function readText(path: string): string | undefined {
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

/** Soft limit of open files of this process (Node raises it to the hard limit at start). */
export function openFilesLimit(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
    return m === null ? 1024 : Number(m[1]);
  } catch {
    return 1024;
  }
}

/**
 * Reads files that are read every round. Cgroup files stay open and are read again from
 * offset 0 (the kernel generates them anew on each read): one pread instead of open, fstat,
 * read, read, close, about a tenth of readFileSync's CPU. An open cgroup file does not keep
 * the cgroup from being removed (reads then fail with ENODEV and the file is dropped).
 * /proc/<pid>/net/dev is never kept open: it would keep the container's network namespace
 * (and its macvlan address) alive after the container is gone. At most half of the
 * process's file limit is kept open; files beyond that are opened for each read.
 */
export class FileReader {
  private readonly fds = new Map<string, number>();
  private touched = new Set<string>();
  private buf = Buffer.alloc(16 * 1024);
  private readonly maxOpen: number;

  constructor(maxOpen = Math.min(16_384, Math.floor(openFilesLimit() / 2))) {
    this.maxOpen = Math.max(0, maxOpen);
  }

  get openFiles(): number {
    return this.fds.size;
  }

  /** The file's text, or undefined when it cannot be read. `keep: false` never keeps it open. */
  read(path: string, keep = true): string | undefined {
    let fd = this.fds.get(path);
    const kept = fd !== undefined || (keep && this.fds.size < this.maxOpen);
    if (fd === undefined) {
      try {
        fd = openSync(path, 'r');
      } catch {
        return undefined;
      }
      if (kept) this.fds.set(path, fd);
    }
    if (kept) this.touched.add(path);
    try {
      return this.readFrom(fd);
    } catch {
      if (kept) this.fds.delete(path);
      closeSync(fd);
      fd = undefined;
      return undefined;
    } finally {
      if (!kept && fd !== undefined) closeSync(fd);
    }
  }

  /** Closes the files not read since the previous sweep (containers that are gone). */
  sweep(): void {
    for (const [path, fd] of this.fds) {
      if (this.touched.has(path)) continue;
      closeSync(fd);
      this.fds.delete(path);
    }
    this.touched = new Set();
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }

  private readFrom(fd: number): string {
    let n = readSync(fd, this.buf, 0, this.buf.length, 0);
    while (n === this.buf.length) {
      // A long file (tasks of a container with many threads): grow and read it whole again.
      this.buf = Buffer.alloc(this.buf.length * 4);
      n = readSync(fd, this.buf, 0, this.buf.length, 0);
    }
    return this.buf.toString('latin1', 0, n);
  }
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

/**
 * Sums receive and transmit bytes of /proc/<pid>/net/dev, leaving out `lo`. A hand-written
 * scan (no regular expressions, no arrays): it runs for every container every round.
 */
export function parseNetDev(text: string): { inBytes: number; outBytes: number } {
  let inBytes = 0;
  let outBytes = 0;
  let pos = 0;
  for (let lineNo = 0; pos < text.length; lineNo++) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const colon = lineNo < 2 ? -1 : text.indexOf(':', pos);
    if (colon >= 0 && colon < end && text.slice(pos, colon).trim() !== 'lo') {
      // Fields after the colon: receive bytes is the 1st, transmit bytes the 9th.
      let field = 0;
      let i = colon + 1;
      while (i < end && field <= 8) {
        while (i < end && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
        let n = 0;
        const start = i;
        while (i < end && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) n = n * 10 + (text.charCodeAt(i++) - 48);
        if (i === start) break;
        if (field === 0) inBytes += n;
        else if (field === 8) outBytes += n;
        field++;
      }
    }
    pos = end + 1;
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
  /** Block I/O operations since the cgroup was created (blkio.throttle.io_serviced, see blkio-accounting.ts). */
  diskReads?: number;
  diskWrites?: number;
}

const dirOf = (loc: CgroupLocation, controller: string, dockerId: string) => join(loc.root, controller, loc.parent, dockerId);

/** The files of a container read every round (computed once per container). */
export interface CgroupUsagePaths {
  memoryUsage: string;
  cpuUsage: string;
  procs: string;
  pidsCurrent: string;
  ioServiced: string;
  tasks: string;
  procRoot: string;
}

export function cgroupUsagePaths(loc: CgroupLocation, dockerId: string): CgroupUsagePaths {
  const pids = dirOf(loc, 'pids', dockerId);
  return {
    memoryUsage: join(dirOf(loc, 'memory', dockerId), 'memory.usage_in_bytes'),
    cpuUsage: join(dirOf(loc, 'cpuacct', dockerId), 'cpuacct.usage'),
    procs: join(pids, 'cgroup.procs'),
    pidsCurrent: join(pids, 'pids.current'),
    ioServiced: join(dirOf(loc, 'blkio', dockerId), 'blkio.throttle.io_serviced'),
    tasks: join(pids, 'tasks'),
    procRoot: loc.procRoot,
  };
}

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

const toNumber = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return text.trim() !== '' && Number.isFinite(n) ? n : undefined;
};

/**
 * What changes every round: memory, process and thread counts, network bytes (and CPU
 * time when PCP has none). Threads are `pids.current` (every task of the cgroup, a number)
 * rather than counting the lines of `tasks`.
 */
export function readCgroupUsage(where: CgroupUsagePaths, reader: FileReader, cpuUsage = false): CgroupUsage {
  const out: CgroupUsage = {};
  const usage = toNumber(reader.read(where.memoryUsage));
  if (usage !== undefined) out.memoryBytes = usage;
  if (cpuUsage) {
    const cpu = toNumber(reader.read(where.cpuUsage));
    if (cpu !== undefined) out.cpuUsageNs = cpu;
  }
  const io = reader.read(where.ioServiced);
  if (io !== undefined) {
    const ops = parseIoServiced(io);
    out.diskReads = ops.reads;
    out.diskWrites = ops.writes;
  }
  const procs = reader.read(where.procs);
  if (procs !== undefined) out.processCount = countLines(procs);
  const threads = toNumber(reader.read(where.pidsCurrent));
  if (threads !== undefined) out.threadCount = threads;
  else {
    const tasks = reader.read(where.tasks);
    if (tasks !== undefined) out.threadCount = countLines(tasks);
  }
  // Any process of the container shares its network namespace: the first listed will do.
  const nl = procs === undefined ? -1 : procs.indexOf('\n');
  const pid = procs === undefined ? '' : (nl < 0 ? procs : procs.slice(0, nl)).trim();
  if (pid !== '') {
    const netDev = reader.read(`${where.procRoot}/${pid}/net/dev`, false);
    if (netDev !== undefined) {
      const net = parseNetDev(netDev);
      out.netInBytes = net.inBytes;
      out.netOutBytes = net.outBytes;
    }
  }
  return out;
}
