/**
 * What the monitor benchmark measures with: CPU time and memory of processes from /proc
 * (utime + stime of /proc/<pid>/stat, VmRSS/VmHWM of /proc/<pid>/status), the monitor
 * in a child process, and the cost of reading container metrics straight from the cgroup
 * filesystem in this process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileReader, readCgroupUsage, type CgroupUsagePaths } from '../../monitor/cgroup-fs.ts';
import { createCgroupUsageReader, loadNativeReader, USAGE_FIELDS } from '../../monitor/cgroup-reader.ts';
import { REPO_ROOT } from '../support/herd-cli.ts';

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of one process in seconds, or undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** A process and all its descendants (pmcd and its PMDAs). */
export function processTree(rootPid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  return tree;
}

export function pidOf(name: string): number | undefined {
  try {
    const out = execFileSync('pgrep', ['-x', name], { encoding: 'utf8' }).trim().split('\n')[0];
    return out === undefined || out === '' ? undefined : Number(out);
  } catch {
    return undefined;
  }
}

export function treeCpuSeconds(pids: number[]): number {
  return pids.reduce((sum, p) => sum + (cpuSeconds(p) ?? 0), 0);
}

export function memoryOf(pid: number): { rssBytes: number; peakRssBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rssBytes: kib('VmRSS'), peakRssBytes: kib('VmHWM') };
}

export interface MonitorChild {
  pid: number;
  stop(): Promise<void>;
}

/** Runs `herd monitor --config <file>` as bin/herd does (node with tsx's loader); the pid is the monitor's. */
export function startMonitor(configPath: string, logPath: string, options: { cpuProfileDir?: string } = {}): MonitorChild {
  const log = openSync(logPath, 'a');
  // What bin/herd runs, spelled out so that node flags such as --cpu-prof can be added.
  const profile = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`];
  const args = [...profile, '--disable-warning=ExperimentalWarning', '--import', `${REPO_ROOT}/node_modules/tsx/dist/loader.mjs`, `${REPO_ROOT}/control/cli/main.ts`, 'monitor', '--config', configPath];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', log, log] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid ?? -1,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where a container's cgroup files are: one directory per controller. */
export type CgroupDirs = (controller: string) => string;

/** The files the monitor would read per container if it took everything from the cgroup filesystem. */
const PCP_SOURCED = [['cpuacct', 'cpuacct.stat']] as const;
const FS_SOURCED = [
  ['blkio', 'blkio.throttle.io_serviced'],
  ['memory', 'memory.usage_in_bytes'],
  ['pids', 'cgroup.procs'],
  ['pids', 'pids.current'],
] as const;

export interface DirectReadCost {
  /** CPU seconds per container per round for what the monitor takes from PCP (CPU time). */
  pcpMetricsSync: number;
  pcpMetricsAsync: number;
  /** The same, for every container metric (adds block I/O, memory, process/thread counts, net/dev). */
  allMetricsSync: number;
  allMetricsAsync: number;
  /** As the monitor reads: cgroup files kept open and re-read with pread, net/dev opened per read. */
  pcpMetricsKept: number;
  allMetricsKept: number;
  /** The native reader (monitor/native), one call per round for all containers; undefined when it is not built. */
  allMetricsNative?: number;
  containersRead: number;
}

/**
 * CPU per container per round of reading metrics straight from cgroup files (with
 * readFileSync and with fs/promises, as the monitor does), over `dirs` repeated until
 * `reads` containers were read. Parsing is included (numbers, blkio lines).
 */
export async function directReadCost(dirs: CgroupDirs[], procRoot: string, reads: number): Promise<DirectReadCost> {
  const parseBlkio = (text: string) => {
    let r = 0;
    let w = 0;
    for (const line of text.split('\n')) {
      const parts = line.split(' ');
      if (parts[1] === 'Read') r += Number(parts[2]);
      else if (parts[1] === 'Write') w += Number(parts[2]);
    }
    return r + w;
  };
  const net = (pid: string) => join(procRoot, pid, 'net', 'dev');
  const syncRound = (d: CgroupDirs, all: boolean) => {
    let x = 0;
    for (const [c, f] of PCP_SOURCED) x += Number(tryRead(join(d(c), f)).split(/\s+/)[1] ?? 0);
    if (!all) return x;
    for (const [c, f] of FS_SOURCED) {
      const text = tryRead(join(d(c), f));
      x += f.startsWith('blkio') ? parseBlkio(text) : text.length;
    }
    const pid = tryRead(join(d('pids'), 'cgroup.procs')).split('\n')[0];
    if (pid !== undefined && pid !== '') x += tryRead(net(pid)).length;
    return x;
  };
  const kept = new FileReader();
  // The monitor's own read path (cgroup-fs.ts readCgroupUsage), with its paths computed once per container as it does.
  const pathsOf = new Map<CgroupDirs, CgroupUsagePaths>(dirs.map((d) => [d, {
    memoryUsage: join(d('memory'), 'memory.usage_in_bytes'),
    cpuUsage: join(d('cpuacct'), 'cpuacct.usage'),
    procs: join(d('pids'), 'cgroup.procs'),
    pidsCurrent: join(d('pids'), 'pids.current'),
    ioServiced: join(d('blkio'), 'blkio.throttle.io_serviced'),
    tasks: join(d('pids'), 'tasks'),
    procRoot,
  }]));
  const keptRound = (d: CgroupDirs, all: boolean) => {
    const paths = pathsOf.get(d)!;
    if (!all) return kept.read(paths.cpuUsage);
    return readCgroupUsage(paths, kept);
  };
  const asyncRound = async (d: CgroupDirs, all: boolean) => {
    const files = [...PCP_SOURCED, ...(all ? FS_SOURCED : [])].map(([c, f]) => join(d(c), f));
    const texts = await Promise.all(files.map((f) => readFile(f, 'utf8').catch(() => '')));
    let x = Number((texts[0] ?? '').split(/\s+/)[1] ?? 0);
    if (all) {
      x += parseBlkio(texts[1] ?? '');
      const pid = (texts[3] ?? '').split('\n')[0];
      if (pid !== undefined && pid !== '') x += (await readFile(net(pid), 'utf8').catch(() => '')).length;
    }
    return x;
  };
  const measure = async (fn: (d: CgroupDirs) => unknown): Promise<number> => {
    // Warm up, then time `reads` containers (cycling through the real ones).
    for (const d of dirs) await fn(d);
    const before = process.cpuUsage();
    for (let i = 0; i < reads; i++) await fn(dirs[i % dirs.length]!);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1e6 / reads;
  };
  /** The same for synchronous reads, without an await per container (the monitor's loop has none). */
  const measureSync = async (fn: (d: CgroupDirs) => unknown): Promise<number> => {
    for (const d of dirs) fn(d);
    const before = process.cpuUsage();
    for (let i = 0; i < reads; i++) fn(dirs[i % dirs.length]!);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1e6 / reads;
  };
  const result: DirectReadCost = {
    pcpMetricsSync: await measureSync((d) => syncRound(d, false)),
    pcpMetricsAsync: await measure((d) => asyncRound(d, false)),
    allMetricsSync: await measureSync((d) => syncRound(d, true)),
    allMetricsAsync: await measure((d) => asyncRound(d, true)),
    pcpMetricsKept: await measureSync((d) => keptRound(d, false)),
    allMetricsKept: await measureSync((d) => keptRound(d, true)),
    containersRead: reads,
  };
  kept.close();
  if ('module' in loadNativeReader()) {
    const native = createCgroupUsageReader('native').reader;
    const slots = Int32Array.from(dirs.map((d) => native.track(pathsOf.get(d)!)));
    const out = new Float64Array(dirs.length * USAGE_FIELDS);
    native.read(slots, dirs.length, false, out); // opens the files it keeps
    const rounds = Math.max(1, Math.ceil(reads / dirs.length));
    const before = process.cpuUsage();
    for (let r = 0; r < rounds; r++) native.read(slots, dirs.length, false, out);
    const used = process.cpuUsage(before);
    result.allMetricsNative = (used.user + used.system) / 1e6 / (rounds * dirs.length);
    native.close();
  }
  return result;
}

function tryRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
