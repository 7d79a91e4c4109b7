/**
 * Per-container block I/O counts need blk-throttle to be active on the disk.
 *
 * With cgroup v1 on kernels without CFQ (5.0 and later), `blkio.io_serviced` (what PCP's
 * `cgroup.blkio.all.io_serviced.*` reads) no longer exists, and the kernel counts
 * `blkio.throttle.io_serviced` only for a disk's queue on which some cgroup has a throttle
 * rule: without one every container shows 0 operations (seen on the lab's 6.18 kernel:
 * 256 direct writes, `Total 0`). One rule on the queue turns counting on for every cgroup.
 * So the monitor puts a rule that never throttles (10^9 write IOPS) on the hosts' cgroup
 * parent for each disk that has no write IOPS rule there yet. It never changes an existing
 * rule and never fails the daemon: without the rule, disk operations read 0.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Write IOPS that never throttle anything. */
export const NO_OP_IOPS = 1_000_000_000;

/** major:minor of the machine's disks (not loop, ram or zram devices). */
export function diskDevices(sysBlock = '/sys/block'): string[] {
  if (!existsSync(sysBlock)) return [];
  const out: string[] = [];
  for (const name of readdirSync(sysBlock)) {
    if (/^(loop|ram|zram)\d*$/.test(name)) continue;
    try {
      const dev = readFileSync(join(sysBlock, name, 'dev'), 'latin1').trim();
      if (/^\d+:\d+$/.test(dev)) out.push(dev);
    } catch {
      // not a device directory
    }
  }
  return out.sort();
}

export type ActivationResult = { done: true; added: string[] } | { done: false; reason: string };

/** Adds the no-op rule for every disk without a write IOPS rule on `<cgroupRoot>/blkio/<parent>`. */
export function activateBlkioAccounting(cgroupRoot: string, parent: string, devices: string[] = diskDevices()): ActivationResult {
  const file = join(cgroupRoot, 'blkio', parent.replace(/^\/+|\/+$/g, ''), 'blkio.throttle.write_iops_device');
  if (!existsSync(file)) return { done: false, reason: `${file} does not exist (yet)` };
  try {
    const ruled = new Set(
      readFileSync(file, 'latin1')
        .split('\n')
        .map((l) => l.trim().split(/\s+/)[0])
        .filter((d): d is string => d !== undefined && d !== ''),
    );
    const added: string[] = [];
    for (const dev of devices) {
      if (ruled.has(dev)) continue;
      writeFileSync(file, `${dev} ${NO_OP_IOPS}\n`);
      added.push(dev);
    }
    return { done: true, added };
  } catch (err) {
    return { done: false, reason: `cannot write ${file}: ${(err as Error).message}` };
  }
}

/** Read and write operations of a cgroup from its `blkio.throttle.io_serviced` (summed over devices). */
export function parseIoServiced(text: string): { reads: number; writes: number } {
  // Lines are "<major:minor> <Op> <n>" plus a last "Total <n>"; a hand scan, no arrays: this runs for every container every round.
  let reads = 0;
  let writes = 0;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const op = text.indexOf(' ', pos) + 1;
    const sp = op > 0 && op < end ? text.indexOf(' ', op) : -1;
    if (sp > 0 && sp < end) {
      const n = Number(text.slice(sp + 1, end));
      const isRead = sp - op === 4 && text.startsWith('Read', op);
      const isWrite = !isRead && sp - op === 5 && text.startsWith('Write', op);
      if (Number.isFinite(n) && (isRead || isWrite)) {
        if (isRead) reads += n;
        else writes += n;
      }
    }
    pos = end + 1;
  }
  return { reads, writes };
}
