/**
 * Fault injection for the rollback tests. A test writes fault names, one per line, to
 * `<stateDir>/faults` of a compute host; the daemon reads the file at each migration
 * step. Every fault makes the REAL operation fail (Docker/CRIU are really called with
 * bad input or really given damaged images); nothing is simulated. No file, no faults.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';

export const FAULTS = [
  /** Source: the checkpoint is requested into a directory that cannot exist (under /dev/null), so the real checkpoint fails. */
  'fail-checkpoint',
  /** Target: the received images are damaged before the restore, so CRIU's restore really fails. */
  'corrupt-images-in-transit',
  /** Source: its own images are damaged before rolling back, so the local restore really fails. */
  'fail-local-restore',
  /** Source: the filesystem pre-copy is sent to a directory outside the target's data roots, so the target's receiver really refuses it. */
  'fail-precopy',
  /** Source: the transfer is throttled (1 MiB/s), leaving time to kill a daemon mid-transfer. */
  'slow-transfer',
  /** Target: the restore really happens, its reply is never sent (the source must find out by asking). */
  'drop-restore-reply',
  /** Target: the restore really happens, its reply is sent 30 s late. */
  'delay-restore-reply',
  /** Target: the checkpoint dir it prepares is a 16 KiB tmpfs, so the transfer really fails with ENOSPC (a full disk). */
  'disk-full',
] as const;
export type Fault = (typeof FAULTS)[number];

export function readFaults(stateDir: string): ReadonlySet<Fault> {
  let text: string;
  try {
    text = readFileSync(`${stateDir}/faults`, 'utf8');
  } catch {
    return new Set();
  }
  const names = text.split('\n').map((l) => l.trim()).filter((l): l is Fault => (FAULTS as readonly string[]).includes(l));
  return new Set(names);
}

/**
 * Damages the CRIU images in a checkpoint directory by zeroing each image's magic
 * header, as a transfer gone wrong would: CRIU then refuses them at once. (Truncating
 * the page images instead was seen to leave a restore hanging now and then.)
 */
export function corruptImages(checkpointDir: string): number {
  let damaged = 0;
  for (const name of readdirSync(checkpointDir)) {
    if (!name.endsWith('.img')) continue;
    const fd = openSync(`${checkpointDir}/${name}`, 'r+');
    try {
      writeSync(fd, Buffer.alloc(8), 0, 8, 0);
    } finally {
      closeSync(fd);
    }
    damaged++;
  }
  return damaged;
}

/** The 'disk-full' fault: a tiny tmpfs mounted on the directory the transfer extracts into. */
export function mountFullDisk(dir: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'herd-fault-disk-full', dir]);
}

/** Removes a directory the transfer extracted into, unmounting it first if a fault mounted something there. */
export function removeReceivedDir(dir: string): void {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
  if (mounted) execFileSync('umount', ['-l', dir]);
  rmSync(dir, { recursive: true, force: true });
}
