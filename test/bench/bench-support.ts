/**
 * Plumbing for the migration benchmark: running commands with timing, the lab's Docker
 * daemons through their sockets, the workload container's command and readiness, and a
 * registry of everything the run creates so that it can all be removed, even on failure.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import type { LabHost, LabLayout } from '../../control/lab/layout.ts';

/** Debian's 20.10 client: its `checkpoint` subcommands work against the lab's 20.10 daemons. */
export const DOCKER_CLI = '/usr/bin/docker';
export const NAME_PREFIX = 'herdbench-';
export const MiB = 2 ** 20;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command (no shell) and measures its wall time; never throws. */
export function run(cmd: string, args: string[], timeoutMs = 600_000): Promise<Run> {
  const start = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * MiB }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err?.message ?? ''), ms: performance.now() - start });
    });
  });
}

/** Runs a command that must succeed; throws with its stderr otherwise. */
export async function must(what: string, cmd: string, args: string[], timeoutMs?: number): Promise<Run> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${what}: \`${cmd} ${args.join(' ').slice(0, 300)}\` exited ${r.code}: ${lastLines(r.stderr || r.stdout)}`);
  return r;
}

/** A shell pipeline that must succeed (pipefail), timed. */
export function mustSh(what: string, script: string, timeoutMs?: number): Promise<Run> {
  return must(what, 'bash', ['-o', 'pipefail', '-c', script], timeoutMs);
}

export function lastLines(s: string, n = 4): string {
  return s.trim().split('\n').slice(-n).join(' | ');
}

export function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function dockerArgs(host: LabHost, args: string[]): string[] {
  return ['-H', `unix://${host.dockerSocket}`, ...args];
}

export function docker(host: LabHost, args: string[], timeoutMs?: number): Promise<Run> {
  return run(DOCKER_CLI, dockerArgs(host, args), timeoutMs);
}

export function mustDocker(what: string, host: LabHost, args: string[], timeoutMs?: number): Promise<Run> {
  return must(what, DOCKER_CLI, dockerArgs(host, args), timeoutMs);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface Workload {
  label: string;
  memMiB: number;
  diffMiB: number;
  image: string;
}

/**
 * The workload: a busybox shell holding memMiB of memory in a variable, after writing
 * diffMiB of incompressible data into /data; /data/ready marks it ready to measure.
 */
export function workloadCommand(w: Workload): string[] {
  const script = [
    `x=$(dd if=/dev/zero bs=1M count=${w.memMiB} 2>/dev/null | tr '\\0' a)`,
    `dd if=/dev/urandom of=/data/diff.bin bs=1M count=${w.diffMiB} 2>/dev/null`,
    'sync',
    'touch /data/ready',
    'while :; do sleep 1; done',
  ].join('; ');
  return ['sh', '-c', script];
}

/** Polls `probe` (a command exiting 0 once /data/ready exists) until it succeeds. */
export async function waitReady(what: string, probe: () => Promise<Run>, timeoutMs = 120_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last: Run | undefined;
  while (performance.now() < deadline) {
    last = await probe();
    if (last.code === 0) return;
    await sleep(250);
  }
  throw new Error(`${what} did not become ready in ${timeoutMs / 1000} s: ${lastLines(last?.stderr ?? '')}`);
}

export interface MemoryReading {
  vmRssMiB: number;
  cgroupRssMiB: number;
}

/** The shell's VmRSS and its memory cgroup's rss (cgroup v1 memory.stat), from the host side. */
export function readMemory(pid: number): MemoryReading {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const vmRssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  let cgroupRss = NaN;
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => /^\d+:memory:/.test(l));
  const path = line?.split(':')[2];
  if (path !== undefined) {
    const stat = readFileSync(`/sys/fs/cgroup/memory${path}/memory.stat`, 'utf8');
    cgroupRss = Number(/^rss (\d+)$/m.exec(stat)?.[1] ?? NaN);
  }
  return { vmRssMiB: vmRssKb / 1024, cgroupRssMiB: cgroupRss / MiB };
}

export function hostOf(layout: LabLayout, id: string): LabHost {
  const h = layout.hosts.find((x) => x.id === id);
  if (h === undefined) throw new Error(`the lab has no host ${id}`);
  return h;
}

/** Everything the run creates, removed by cleanup() whatever happened. */
export class Registry {
  private readonly dockerNames = new Set<string>();
  private readonly podmanNames = new Set<string>();
  private readonly paths = new Set<string>();
  private readonly images: { host: LabHost; image: string }[] = [];
  private readonly podmanImages = new Set<string>();
  private readonly sshMasters = new Set<string>();
  private cleaned = false;

  constructor(private readonly layout: LabLayout) {}

  dockerName(name: string): string {
    this.dockerNames.add(name);
    return name;
  }
  podmanName(name: string): string {
    this.podmanNames.add(name);
    return name;
  }
  path(p: string): string {
    this.paths.add(p);
    return p;
  }
  image(host: LabHost, image: string): void {
    this.images.push({ host, image });
  }
  podmanImage(id: string): void {
    this.podmanImages.add(id);
  }
  sshMaster(controlPath: string): void {
    this.sshMasters.add(controlPath);
  }

  /** Removes one container by name from every lab host (it may have moved, or been left by a rollback). */
  async removeDocker(name: string): Promise<void> {
    for (const host of this.layout.hosts) await docker(host, ['rm', '-f', '-v', name], 60_000);
    this.dockerNames.delete(name);
  }

  async removePodman(name: string): Promise<void> {
    await run('podman', ['rm', '-f', '-t', '0', name], 60_000);
    this.podmanNames.delete(name);
  }

  async cleanup(): Promise<string[]> {
    if (this.cleaned) return [];
    this.cleaned = true;
    const problems: string[] = [];
    for (const cp of this.sshMasters) await run('ssh', ['-S', cp, '-O', 'exit', 'bench'], 10_000);
    for (const name of [...this.dockerNames]) await this.removeDocker(name);
    for (const name of [...this.podmanNames]) await this.removePodman(name);
    for (const { host, image } of this.images) {
      const r = await docker(host, ['rmi', image], 60_000);
      if (r.code !== 0 && !/No such image/i.test(r.stderr)) problems.push(`${host.id}: docker rmi ${image}: ${lastLines(r.stderr)}`);
    }
    for (const id of this.podmanImages) {
      const r = await run('podman', ['rmi', '-f', id], 60_000);
      if (r.code !== 0) problems.push(`podman rmi ${id}: ${lastLines(r.stderr)}`);
    }
    for (const p of this.paths) rmSync(p, { recursive: true, force: true });
    // Anything of ours still there (e.g. a rollback left a container under another id)?
    for (const host of this.layout.hosts) {
      const r = await docker(host, ['ps', '-aq', '--filter', `name=^${NAME_PREFIX}`]);
      for (const id of r.stdout.split('\n').filter((l) => l.trim() !== '')) {
        problems.push(`${host.id}: container ${id} was left behind (removed now)`);
        await docker(host, ['rm', '-f', '-v', id], 60_000);
      }
    }
    return problems;
  }
}
