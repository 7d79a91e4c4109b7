/**
 * Each lab host has a disk of its own: an ext4 file system on a loop device (a sparse file
 * in the host's directory), mounted as the host's Docker data root. Everything the host's
 * containers write (their upper dirs, volumes, checkpoints) goes to that disk, so a
 * disk-heavy container slows its own host's disk — its journal and its device queue — and
 * the monitor reads each host's disk figures from its own device (monitor/disk-stats.ts),
 * as on a real cluster. Without it every host would share the machine's one disk and report
 * the same figures, and a disk policy would have nothing to tell apart.
 *
 * Mounted with `barrier=0`: a flush stays in the machine's page cache instead of reaching
 * the shared physical disk, which would otherwise couple every host's fsync latency to every
 * other host's writes (measured: 400 O_DSYNC writes next to a random-write neighbour took
 * 20× longer on the neighbour's disk and 9× on another host's with barriers, 6–8× and
 * 1.6–3× without). The lab's disks hold nothing that must survive a power cut: `lab down`
 * deletes them. `discard` gives space back to the machine when containers are removed.
 */
import { existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { HerdError } from '../../protocol/errors.ts';
import type { LabHost } from './layout.ts';
import { livePid, mustRun } from './shell.ts';

/** Size of each host's disk (a sparse file: only what is written takes space). */
export const LAB_DISK_BYTES = 32 * 2 ** 30;
/** Inodes per disk: enough for every lab image and many containers, and quick to create. */
const LAB_DISK_INODES = 1_000_000;

/** The device mounted at `path` (e.g. "/dev/loop3"), from /proc/self/mountinfo; undefined when nothing is. */
export function mountSource(path: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string | undefined {
  let source: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields[4] !== path) continue;
    const dash = fields.indexOf('-');
    // The last mount at a path is the one seen there.
    if (dash > 0) source = fields[dash + 2];
  }
  return source;
}

/**
 * Creates (once), mounts and returns the name in /sys/block of `host`'s disk, e.g. "loop3".
 * A data root already mounted from the disk is kept as it is.
 */
export async function ensureHostDisk(host: LabHost): Promise<string> {
  const mounted = mountSource(host.dockerDataRoot);
  if (mounted !== undefined) {
    if (!mounted.startsWith('/dev/loop')) throw new HerdError('LAB_FAILED', `${host.dockerDataRoot} is mounted from ${mounted}, not from ${host.id}'s disk ${host.diskImage}: unmount it, or run "herd lab down"`);
    return basename(mounted);
  }
  if (livePid(host.dockerPidFile, 'dockerd') !== undefined) {
    throw new HerdError('CONFLICT', `the Docker daemon of ${host.id} runs on a data root that is not the host's own disk (a lab made by an older Herd): run "herd lab down", then "herd lab up"`);
  }
  mkdirSync(host.dockerDataRoot, { recursive: true });
  if (!existsSync(host.diskImage)) {
    writeFileSync(host.diskImage, '');
    truncateSync(host.diskImage, LAB_DISK_BYTES);
    await mustRun(`making ${host.id}'s disk (${host.diskImage})`, 'mkfs.ext4', ['-q', '-F', '-m', '0', '-N', String(LAB_DISK_INODES), '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', '-L', `herd-${host.id}`, host.diskImage], { timeoutMs: 120_000 });
  }
  await mustRun(`mounting ${host.id}'s disk on ${host.dockerDataRoot}`, 'mount', ['-o', 'loop,barrier=0,discard', host.diskImage, host.dockerDataRoot]);
  const device = mountSource(host.dockerDataRoot);
  if (device === undefined || !device.startsWith('/dev/loop')) throw new HerdError('LAB_FAILED', `mounted ${host.diskImage} on ${host.dockerDataRoot}, but /proc/self/mountinfo shows ${device ?? 'nothing'} there`);
  return basename(device);
}
