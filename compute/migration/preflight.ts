/**
 * What the source can know will make CRIU fail, checked before anything is frozen: the
 * container's processes as CRIU would see them. Every finding names its cause and its fix.
 *
 * - Processes running as another user than root: CRIU reads every process's rlimits
 *   (prlimit), which the kernel allows across users only with CAP_SYS_RESOURCE. Without it
 *   (these lab machines: see `herd doctor`) the dump fails with "Can't get rlimit".
 */
import { readdirSync, readFileSync } from 'node:fs';
import { HerdError } from '../../protocol/errors.ts';
import { cgroupDirOf } from './container-cgroup.ts';
export { hasSysResource } from '../../protocol/capabilities.ts';

export interface ProcessIds {
  pid: number;
  command: string;
  /** Real, effective, saved and filesystem user ids. */
  uids: number[];
}

/**
 * The processes of the container whose init process is `pid`: its cgroup's (cgroup.procs), or
 * without a cgroup of its own or when it cannot be read, `pid` and its descendants.
 */
export function containerPids(pid: number, procRoot = '/proc', cgroupRoot = '/sys/fs/cgroup'): number[] {
  try {
    const cgroup = cgroupDirOf(pid, 'pids', procRoot, cgroupRoot);
    if (cgroup !== undefined) return readFileSync(`${cgroup.dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    // gone, or unreadable: the process tree then
  }
  return [pid, ...descendants(pid, procRoot)];
}

/** The container's processes (containerPids) with their user ids. */
export function containerProcesses(pid: number, procRoot = '/proc', cgroupRoot = '/sys/fs/cgroup'): ProcessIds[] {
  const pids = containerPids(pid, procRoot, cgroupRoot);
  const out: ProcessIds[] = [];
  for (const p of pids) {
    try {
      const status = readFileSync(`${procRoot}/${p}/status`, 'utf8');
      const uids = (/^Uid:\s*(.*)$/m.exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
      out.push({ pid: p, command: /^Name:\s*(.*)$/m.exec(status)?.[1] ?? '?', uids });
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

function descendants(pid: number, procRoot: string): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const ppid = Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`${procRoot}/${name}/status`, 'utf8'))?.[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) for (const c of children.get(stack.pop() as number) ?? []) out.push(c), stack.push(c);
  return out;
}

/** Throws NOT_MIGRATABLE naming the cause and the fix, or returns when CRIU can dump these processes here. */
export function assertCheckpointable(container: string, processes: ProcessIds[], sysResource: boolean): void {
  if (sysResource) return;
  const others = processes.filter((p) => p.uids.some((u) => u !== 0));
  if (others.length === 0) return;
  const list = others.slice(0, 5).map((p) => `${p.command} (pid ${p.pid}, uid ${[...new Set(p.uids.filter((u) => u !== 0))].join('/')})`).join(', ');
  throw new HerdError(
    'NOT_MIGRATABLE',
    `container "${container}" runs processes as a non-root user (${list}${others.length > 5 ? ', …' : ''}) and this host's root lacks CAP_SYS_RESOURCE, so CRIU cannot read their rlimits ("Can't get rlimit"): nothing was frozen. Fix: run the compute daemon with CAP_SYS_RESOURCE (a normal root has it; check with "herd doctor"), or run the container's processes as root.`,
  );
}

/**
 * State a migration would not carry, refused before freezing: bind mounts outside the
 * shared paths (the target has other files there), volumes of another driver than "local"
 * (Herd carries a local volume's directory; a plugin's storage it cannot see), and mounts
 * of other kinds. Local named volumes are carried; restart policies too (source-side.ts
 * sets the source's to "no" while it is checkpointed).
 */
/** Whether `path` is one of `sharedPaths` or under one (the host directories every compute host has alike). */
export function underSharedPath(path: string, sharedPaths: readonly string[]): boolean {
  return sharedPaths.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`));
}

/**
 * Capabilities that reach beyond a container (mounts, modules, raw devices, other processes'
 * memory, the host's clock or network set-up): a container that adds one is not migrated, and
 * a target refuses to create one for a peer (target-side.ts), so that a compromised host cannot
 * have its peers run a container that escapes to them.
 */
const HOST_REACHING_CAPABILITIES = new Set(['ALL', 'SYS_ADMIN', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_PTRACE', 'SYS_BOOT', 'SYS_TIME', 'DAC_READ_SEARCH', 'MAC_ADMIN', 'MAC_OVERRIDE', 'BPF', 'PERFMON', 'NET_ADMIN', 'SYSLOG']);

/** The capabilities of `capAdd` that HOST_REACHING_CAPABILITIES lists (Docker takes them with or without "CAP_", in any case). */
export function hostReachingCapabilities(capAdd: readonly string[] | undefined): string[] {
  return (capAdd ?? []).filter((c) => HOST_REACHING_CAPABILITIES.has(c.toUpperCase().replace(/^CAP_/, '')));
}

export function assertCarried(container: string, details: { mounts: { type: string; name?: string; driver?: string; source: string; destination: string }[]; notCarried?: string[]; spec?: { capAdd?: string[] } }, sharedPaths: readonly string[]): void {
  const notCarried = [...(details.notCarried ?? [])];
  const reaching = hostReachingCapabilities(details.spec?.capAdd);
  if (reaching.length > 0) notCarried.push(`added capabilities ${reaching.join(', ')} (they reach beyond the container)`);
  const problems: string[] = notCarried.length > 0 ? [`not carried to another host: ${notCarried.join('; ')}`] : [];
  for (const m of details.mounts) {
    if (m.type === 'volume') {
      if (m.driver !== undefined && m.driver !== 'local') problems.push(`volume "${m.name ?? m.source}" at ${m.destination} uses the "${m.driver}" driver: only local volumes are carried; use a local volume, or a shared path for storage every host sees`);
    } else if (m.type === 'bind') {
      if (!underSharedPath(m.source, sharedPaths)) problems.push(`bind mount ${m.source} at ${m.destination}: not under a path shared by all hosts; list its directory in the compute config's sharedPaths if every host has the same files there, or use a named volume (carried)`);
    } else problems.push(`${m.type} mount at ${m.destination}: not carried to the target`);
  }
  if (problems.length > 0) throw new HerdError('NOT_MIGRATABLE', `container "${container}" cannot be migrated as it is (nothing was frozen): ${problems.join('; ')}`);
}
