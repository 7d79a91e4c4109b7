/**
 * Each lab host has a disk of its own: an ext4 file system on a loop device (a sparse file
 * in the host's directory), mounted as the host's Docker data root. Everything the host's
 * containers write (their upper dirs, volumes, checkpoints) goes to that disk, so a
 * disk-heavy container slows its own host's disk — its journal and its device queue — and
 * the monitor reads each host's disk figures from its own device (monitor/disk-stats.ts),
 * as on a real cluster. Without it every host would share the machine's one disk and report
 * the same figures, and a disk policy would have nothing to tell apart.
 *
 * All hosts' disks still live on this machine's one disk, page cache and cores, so without
 * a limit a disk-heavy container slows every host nearly alike. Two modes:
 *   - default: the loop device reads the sparse file directly; mounted with `barrier=0`, so
 *     that a flush stays in the machine's page cache instead of reaching the shared physical
 *     disk (measured: 400 O_DSYNC writes next to a random-write neighbour took 20× longer on
 *     the neighbour's disk and 9× on another host's with barriers, 6–8× and 1.6–3× without).
 *     `discard` gives space back to the machine when containers are removed.
 *   - `lab up --disk-iops N`: the loop device reads the file through control/lab/herd-disk.py
 *     (FUSE), which lets N operations per second through and queues the rest, as a real disk
 *     does; flushes count as operations (ext4's default barriers). Measured with N = 2000:
 *     200 O_DSYNC writes took 0.50 s on an idle disk, 1.58 s next to a random-write
 *     neighbour, and 0.51 s on another host's disk meanwhile.
 * The lab's disks hold nothing that must survive a power cut: `lab down` deletes them.
 */
import { existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { HerdError } from '../../protocol/errors.ts';
import type { LabHost } from './layout.ts';
import { livePid, mustRun, runCommand, spawnDetached, waitFor } from './shell.ts';
import { herdRoot } from './state.ts';

/** Debian's Python, which has python3-llfuse (not a pyenv or venv one earlier in PATH). */
const SYSTEM_PYTHON = '/usr/bin/python3';
/** The FUSE file system's name in /proc/self/mountinfo. */
const DISK_SERVER_FS = 'herd-disk';

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
 * Creates (once), mounts and returns the name in /sys/block of `host`'s disk, e.g. "loop3";
 * with `iops`, through the disk server. A data root already mounted from the disk is kept as it is.
 */
export async function ensureHostDisk(host: LabHost, iops: number | undefined): Promise<string> {
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
  const file = iops === undefined ? host.diskImage : await ensureDiskServer(host, iops);
  const options = iops === undefined ? 'loop,barrier=0,discard' : 'loop';
  await mustRun(`mounting ${host.id}'s disk on ${host.dockerDataRoot}`, 'mount', ['-o', options, file, host.dockerDataRoot]);
  const device = mountSource(host.dockerDataRoot);
  if (device === undefined || !device.startsWith('/dev/loop')) throw new HerdError('LAB_FAILED', `mounted ${host.diskImage} on ${host.dockerDataRoot}, but /proc/self/mountinfo shows ${device ?? 'nothing'} there`);
  return basename(device);
}

/** Starts (unless it serves already) the disk server of `host`; returns the file it serves. */
async function ensureDiskServer(host: LabHost, iops: number): Promise<string> {
  const served = `${host.diskServerDir}/disk.img`;
  if (mountSource(host.diskServerDir) === DISK_SERVER_FS) return served;
  if ((await runCommand(SYSTEM_PYTHON, ['-c', 'import llfuse'])).code !== 0) {
    throw new HerdError('MISSING_DEPENDENCY', `--disk-iops needs FUSE for Python: apt-get install python3-llfuse (scripts/setup installs it)`);
  }
  mkdirSync(host.diskServerDir, { recursive: true });
  const pid = spawnDetached(SYSTEM_PYTHON, [`${herdRoot()}/control/lab/herd-disk.py`, host.diskImage, host.diskServerDir, '--iops', String(iops)], host.diskServerLog);
  writeFileSync(host.diskServerPidFile, `${pid}\n`);
  await waitFor(`the disk server of ${host.id} (log: ${host.diskServerLog})`, 15_000, () => {
    if (livePid(host.diskServerPidFile, 'herd-disk') === undefined) throw new HerdError('LAB_FAILED', `the disk server of ${host.id} exited: ${readFileSync(host.diskServerLog, 'utf8').trim().split('\n').slice(-3).join(' | ')}`);
    return mountSource(host.diskServerDir) === DISK_SERVER_FS ? true : undefined;
  });
  return served;
}
