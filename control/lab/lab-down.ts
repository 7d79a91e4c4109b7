/**
 * `herd lab down`: removes everything `up` made — daemons, containers, mounts,
 * namespaces, the bridge, cgroups and files — from the lab's records and from what is
 * found on the machine, so it also cleans up after a crash. Only processes the lab
 * started are ended: its pid files, and processes inside its own namespaces and cgroups.
 */
import { existsSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { runCommand, stopPid, livePid, isAlive } from './shell.ts';
import { labLayout, LAB_MAX_HOSTS, type LabLayout } from './layout.ts';
import { readLabState } from './state.ts';
import { requireRoot } from './lab-up.ts';

function pidsInCgroupTree(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const pids: number[] = [];
  const walk = (d: string) => {
    try {
      for (const line of readFileSync(`${d}/cgroup.procs`, 'utf8').split('\n')) if (line.trim() !== '') pids.push(Number(line));
    } catch {
      // vanished
    }
    for (const entry of readdirSync(d, { withFileTypes: true })) if (entry.isDirectory()) walk(`${d}/${entry.name}`);
  };
  walk(dir);
  return pids;
}

function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroupTree(`${dir}/${entry.name}`);
  try {
    rmdirSync(dir);
  } catch {
    // busy: reported by the leftovers check
  }
}

async function netnsPids(netns: string): Promise<number[]> {
  const r = await runCommand('ip', ['netns', 'pids', netns]);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').map(Number);
}

function labMounts(layout: LabLayout): string[] {
  const prefixes = [layout.stateDir, layout.runDir, ...layout.hosts.map((h) => `/var/run/netns/${h.netns}`), ...layout.hosts.map((h) => `/run/netns/${h.netns}`)];
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => prefixes.some((prefix) => p === prefix || p.startsWith(`${prefix}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Hosts to clean: the recorded count, or every herd-hN namespace or directory found. */
function hostCount(): number {
  const recorded = readLabState()?.hosts ?? 0;
  let found = 0;
  for (let i = 1; i <= LAB_MAX_HOSTS; i++) {
    if (existsSync(`/var/run/netns/herd-h${i}`) || existsSync(`/var/lib/herd-lab/h${i}`) || existsSync(`/sys/fs/cgroup/cpuset/herd-h${i}`)) found = i;
  }
  return Math.max(recorded, found, 1);
}

export async function labDown(say: (line: string) => void): Promise<void> {
  requireRoot('herd lab down');
  const state = readLabState();
  const layout = labLayout({ hosts: hostCount(), cpuCount: availableParallelism() });

  for (const host of layout.hosts) {
    const pid = livePid(host.computePidFile, 'compute');
    if (pid !== undefined) await stopPid(pid, 5000);
  }
  const monitor = livePid(layout.monitorPidFile, 'monitor');
  if (monitor !== undefined) await stopPid(monitor, 5000);
  const control = livePid(layout.controlPidFile, 'control');
  if (control !== undefined) await stopPid(control, 5000);

  for (const host of layout.hosts) {
    // Containers first (they live in the host's cgroup subtree), then the daemons in the namespace.
    const dockerd = livePid(host.dockerPidFile, 'dockerd');
    if (dockerd !== undefined) {
      await runCommand('sh', ['-c', `ids=$(docker -H unix://${host.dockerSocket} ps -aq); [ -z "$ids" ] || docker -H unix://${host.dockerSocket} rm -f $ids`], { timeoutMs: 60_000 });
      await stopPid(dockerd, 20_000);
    }
    for (const controller of ['cpuset', 'cpu', 'cpuacct', 'memory', 'pids', 'blkio', 'devices', 'freezer']) {
      for (const pid of pidsInCgroupTree(`/sys/fs/cgroup/${controller}/${host.cgroupName}`)) if (isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (existsSync(`/var/run/netns/${host.netns}`)) {
      for (const pid of await netnsPids(host.netns)) await stopPid(pid, 3000);
    }
  }

  for (const mount of labMounts(layout)) {
    const r = await runCommand('umount', [mount]);
    if (r.code !== 0) await runCommand('umount', ['-l', mount]);
  }
  // The disks' loop devices go with their mounts (autoclear); one left busy by a lazy unmount is detached when free.
  for (const device of await labLoopDevices()) await runCommand('losetup', ['-d', device]);
  // A disk server (lab up --disk-iops) ends when its file system is unmounted; one that did not is stopped.
  for (const host of layout.hosts) {
    const pid = livePid(host.diskServerPidFile, 'herd-disk');
    if (pid !== undefined) await stopPid(pid, 5000);
  }
  for (const host of layout.hosts) {
    if (existsSync(`/var/run/netns/${host.netns}`)) await runCommand('ip', ['netns', 'del', host.netns]);
    if ((await runCommand('ip', ['link', 'show', host.vethRoot])).code === 0) await runCommand('ip', ['link', 'del', host.vethRoot]);
    for (const controller of readdirSync('/sys/fs/cgroup')) {
      const dir = `/sys/fs/cgroup/${controller}/${host.cgroupName}`;
      try {
        if (statSync(dir).isDirectory()) removeCgroupTree(dir);
      } catch {
        // not there
      }
    }
  }
  if ((await runCommand('ip', ['link', 'show', layout.bridge])).code === 0) await runCommand('ip', ['link', 'del', layout.bridge]);

  const watchdog = livePid(layout.pcpWatchdogPidFile, 'herd-pcp-watchdog');
  if (watchdog !== undefined) await stopPid(watchdog, 5000);
  if (state?.startedPcp === true) {
    for (const service of ['pmproxy', 'pmcd']) await runCommand(`/etc/init.d/${service}`, ['stop'], { timeoutMs: 60_000 });
    say('stopped PCP (the lab had started it)');
  }
  rmSync(layout.runDir, { recursive: true, force: true });
  rmSync(layout.stateDir, { recursive: true, force: true });
  if (state !== undefined && !state.rootWasShared) await runCommand('mount', ['--make-rprivate', '/']);

  const left = await labLeftovers();
  if (left.length > 0) say(`warning: left behind: ${left.join('; ')}`);
  else say('lab is down; nothing left behind');
}

/** Loop devices backed by a lab host's disk (control/lab/host-disk.ts), e.g. "/dev/loop3". */
async function labLoopDevices(): Promise<string[]> {
  return (await runCommand('losetup', ['-a'])).stdout
    .split('\n')
    .filter((l) => l.includes('/var/lib/herd-lab/'))
    .map((l) => l.split(':')[0] as string);
}

/** What of a lab is still on the machine (empty after a clean `down`). */
export async function labLeftovers(): Promise<string[]> {
  const left: string[] = [];
  const netns = (await runCommand('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith('herd-h'));
  if (netns.length > 0) left.push(`namespaces ${netns.map((l) => l.split(' ')[0]).join(', ')}`);
  const links = (await runCommand('ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((l) => / herd-(br0|v\d)/.test(l));
  if (links.length > 0) left.push(`links ${links.map((l) => l.split(':')[1]?.trim()).join(', ')}`);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => /\/(herd-lab|netns\/herd-h)/.test(l));
  if (mounts.length > 0) left.push(`${mounts.length} mount(s) under the lab's paths`);
  for (const dir of ['/var/lib/herd-lab', '/run/herd-lab']) if (existsSync(dir)) left.push(`directory ${dir}`);
  const loops = await labLoopDevices();
  if (loops.length > 0) left.push(`loop devices ${loops.join(', ')}`);
  const cgroups = readdirSync('/sys/fs/cgroup').flatMap((c) => {
    try {
      return readdirSync(`/sys/fs/cgroup/${c}`).filter((d) => /^herd-h\d+$/.test(d)).map((d) => `${c}/${d}`);
    } catch {
      return [];
    }
  });
  if (cgroups.length > 0) left.push(`cgroups ${cgroups.join(', ')}`);
  const procs = (await runCommand('pgrep', ['-af', 'herd-lab'])).stdout.split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
  if (procs.length > 0) left.push(`processes ${procs.map((l) => l.split(' ')[0]).join(', ')}`);
  return left;
}
