/**
 * A host's own disks, read from `/sys/block/<name>/stat`, for hosts whose disks are named
 * in the monitor's config (`hosts[].disks`). PCP's `disk.all.*` sums every disk of the
 * machine and PCP leaves loop devices out of `disk.dev.*` altogether, so on a machine whose
 * hosts have disks of their own (the lab: one loop device per host) neither says how busy
 * one host's disk is. The monitor runs on the machine whose cgroups it reads, so the
 * kernel's counters are at hand; the fields are those of the kernel's
 * Documentation/block/stat.rst.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HerdError } from '../protocol/errors.ts';

export interface DiskCounters {
  reads: number;
  writes: number;
  /** Milliseconds during which the device had I/O in flight (`io_ticks`). */
  activeMs: number;
}

/** Parses one `/sys/block/<name>/stat` line (at least 11 fields; newer kernels add discard and flush fields). */
export function parseDiskStat(text: string, where: string): DiskCounters {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length < 11 || f.some((v) => !Number.isFinite(v) || v < 0)) throw new HerdError('BAD_CONFIG', `${where}: not a block device's stat line (${JSON.stringify(text.slice(0, 120))})`);
  return { reads: f[0] as number, writes: f[4] as number, activeMs: f[9] as number };
}

/** Reads the counters of `devices` (names in `sysBlock`, e.g. "loop3") summed; throws naming the device it cannot read. */
export function readDiskCounters(devices: readonly string[], sysBlock = '/sys/block'): DiskCounters {
  const sum: DiskCounters = { reads: 0, writes: 0, activeMs: 0 };
  for (const name of devices) {
    const file = join(sysBlock, name, 'stat');
    let text: string;
    try {
      text = readFileSync(file, 'latin1');
    } catch (err) {
      throw new HerdError('BAD_CONFIG', `disk ${name} of this host: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check hosts[].disks in the monitor's config`, { cause: err });
    }
    const c = parseDiskStat(text, file);
    sum.reads += c.reads;
    sum.writes += c.writes;
    sum.activeMs += c.activeMs;
  }
  return sum;
}

/** major:minor of each named device (for the blkio accounting rule), from `/sys/block/<name>/dev`. */
export function deviceNumbers(devices: readonly string[], sysBlock = '/sys/block'): string[] {
  return devices.map((name) => {
    const file = join(sysBlock, name, 'dev');
    try {
      const dev = readFileSync(file, 'latin1').trim();
      if (/^\d+:\d+$/.test(dev)) return dev;
      throw new Error(`unexpected contents ${JSON.stringify(dev)}`);
    } catch (err) {
      throw new HerdError('BAD_CONFIG', `disk ${name} of this host: cannot read its device number from ${file} (${(err as Error).message})`, { cause: err });
    }
  });
}
