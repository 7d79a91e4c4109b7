/**
 * Fault injection for the rollback tests. A test writes fault names, one per line, to
 * `<stateDir>/faults` of a compute host; the daemon reads the file at each migration
 * step. Every fault makes the REAL operation fail (Docker/CRIU are really called with
 * bad input or really given damaged images); nothing is simulated. No file, no faults.
 */
import { closeSync, openSync, readFileSync, readdirSync, writeSync } from 'node:fs';

export const FAULTS = [
  /** Source: the checkpoint is requested into a directory that cannot exist (under /dev/null), so the real checkpoint fails. */
  'fail-checkpoint',
  /** Target: the received images are damaged before the restore, so CRIU's restore really fails. */
  'corrupt-images-in-transit',
  /** Source: its own images are damaged before rolling back, so the local restore really fails. */
  'fail-local-restore',
  /** Source: the transfer is throttled (1 MiB/s), leaving time to kill a daemon mid-transfer. */
  'slow-transfer',
  /** Target: the restore really happens, its reply is never sent (the source must find out by asking). */
  'drop-restore-reply',
  /** Target: the restore really happens, its reply is sent 30 s late. */
  'delay-restore-reply',
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
