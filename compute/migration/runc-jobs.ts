/**
 * runc jobs (checkpoint, restore) that Docker or Herd started for a container. They
 * outlive a killed compute daemon (Docker's or Herd's runc child keeps dumping), so
 * recovery waits for them instead of racing them, and a timed-out job is killed rather
 * than abandoned. Found by their command line, which names the container's id.
 */
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';

interface Proc {
  pid: number;
  args: string[];
}

function processes(): Proc[] {
  const found: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
      if (args.length > 0) found.push({ pid: Number(name), args });
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/** Pids of runc checkpoint/restore processes for that container. */
export function runcJobs(dockerId: string): number[] {
  return processes()
    .filter((p) => /(^|\/)runc$/.test(p.args[0] ?? '') && p.args.includes(dockerId) && p.args.some((a) => a === 'checkpoint' || a === 'restore'))
    .map((p) => p.pid);
}

/** Waits until no runc job runs for the container; false when one still runs after `timeoutMs`. */
export async function waitForRuncJobs(dockerId: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (runcJobs(dockerId).length > 0) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
  return true;
}

function children(pid: number, all: Proc[]): number[] {
  const kids: number[] = [];
  for (const p of all) {
    try {
      const stat = readFileSync(`/proc/${p.pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(p.pid, ...children(p.pid, all));
    } catch {
      // gone
    }
  }
  return kids;
}

/** Kills a container's runc jobs and their CRIU children; returns how many processes were signalled. */
export function killRuncJobs(dockerId: string): number {
  const all = processes();
  let killed = 0;
  for (const pid of runcJobs(dockerId)) {
    for (const p of [...children(pid, all), pid]) {
      try {
        process.kill(p, 'SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
  }
  return killed;
}

/**
 * Temp dirs of restores and dumps that nobody removes: containerd unpacks a checkpoint for
 * Docker's restore into `<tmp>/ctrd-checkpoint*` and never removes it; a compute daemon
 * killed mid-dump leaves its runc work dir `<tmp>/herd-criu-*`. A dir is removed once no
 * process names it on its command line (runc gets it as --image-path / --work-path) and it
 * is older than `minAgeMs` (containerd writes it just before runc starts).
 */
export function removeLeakedTempDirs(minAgeMs = 60_000, dir = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith('ctrd-checkpoint') || n.startsWith('herd-criu-'));
  } catch {
    return removed;
  }
  if (names.length === 0) return removed;
  const cmdlines = processes().map((p) => p.args.join(' '));
  for (const name of names) {
    const path = `${dir}/${name}`;
    try {
      if (Date.now() - statSync(path).mtimeMs < minAgeMs) continue;
      if (cmdlines.some((c) => c.includes(path))) continue;
      rmSync(path, { recursive: true, force: true });
      removed.push(path);
    } catch {
      // removed by someone else meanwhile
    }
  }
  return removed;
}

/** After a restore through Docker: its containerd temp dir is removed a few seconds later (once runc let go of it). */
export function sweepTempDirsSoon(onRemoved: (dir: string) => void): void {
  setTimeout(() => removeLeakedTempDirs(2000).forEach(onRemoved), 3000).unref();
}
