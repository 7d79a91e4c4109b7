import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HerdError } from '../protocol/errors.ts';
import { deviceNumbers, parseDiskStat, readDiskCounters } from './disk-stats.ts';
import { HostSampler } from './host-metrics.ts';
import type { PcpClient } from './pcp-client.ts';

// A 6.x kernel's line: 17 fields (reads … io_ticks time_in_queue, discards, flushes).
const LINE = '    1200        3    91234      880     5400       70   123456     9100        2     4321    10000        0        0        0        0       17       40\n';

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function sysBlock(devices: Record<string, { stat: string; dev: string }>): string {
  const root = mkdtempSync(join(tmpdir(), 'herd-sysblock-'));
  dirs.push(root);
  for (const [name, d] of Object.entries(devices)) {
    mkdirSync(join(root, name));
    writeFileSync(join(root, name, 'stat'), d.stat);
    writeFileSync(join(root, name, 'dev'), `${d.dev}\n`);
  }
  return root;
}

describe('disk stats', () => {
  it('reads reads, writes and busy milliseconds from a stat line', () => {
    expect(parseDiskStat(LINE, 'x')).toEqual({ reads: 1200, writes: 5400, activeMs: 4321 });
    // An older kernel's 11 fields parse the same.
    expect(parseDiskStat(LINE.trim().split(/\s+/).slice(0, 11).join(' '), 'x')).toEqual({ reads: 1200, writes: 5400, activeMs: 4321 });
  });

  it('refuses a line that is not a stat line, naming the file', () => {
    expect(() => parseDiskStat('hello world', '/sys/block/sdz/stat')).toThrow(/\/sys\/block\/sdz\/stat: not a block device/);
    expect(() => parseDiskStat('1 2 3 4 5 6 7 8 9 -1 11', 'f')).toThrow(HerdError);
  });

  it('sums several disks and names a missing one', () => {
    const root = sysBlock({ loop3: { stat: LINE, dev: '7:3' }, sdb: { stat: LINE, dev: '8:16' } });
    expect(readDiskCounters(['loop3', 'sdb'], root)).toEqual({ reads: 2400, writes: 10800, activeMs: 8642 });
    expect(deviceNumbers(['sdb', 'loop3'], root)).toEqual(['8:16', '7:3']);
    expect(() => readDiskCounters(['nvme9n1'], root)).toThrow(/disk nvme9n1 of this host: cannot read .*nvme9n1\/stat \(ENOENT\).*hosts\[\]\.disks/);
    expect(() => deviceNumbers(['nvme9n1'], root)).toThrow(/disk nvme9n1/);
  });

  it('gives a host sampler with own disks their rates, not the machine-wide PCP figures', async () => {
    const root = sysBlock({ loop3: { stat: LINE, dev: '7:3' } });
    let at = 1000;
    const pcp = {
      fetch: async () => ({ atSeconds: at, metrics: new Map([['disk.all.total', new Map([[null, (at - 1000) * 1e6]])]]) }),
      instanceNames: async () => new Map(),
    } as unknown as PcpClient;
    let now = 50;
    const sampler = new HostSampler(pcp, { hostId: 'h1', disks: ['loop3'], sysBlock: root, nowSeconds: () => now });
    const first = await sampler.sample();
    expect(first.diskOpsPerSec).toBeUndefined();
    // 200 reads, 1800 writes and 500 busy ms in 2 s, while PCP's machine-wide count grew by 2e6.
    writeFileSync(join(root, 'loop3', 'stat'), LINE.replace('    1200 ', '    1400 ').replace('    5400 ', '    7200 ').replace('    4321 ', '    4821 '));
    at += 2;
    now += 2;
    const second = await sampler.sample();
    expect(second).toMatchObject({ diskOpsPerSec: 1000, diskReadOpsPerSec: 100, diskWriteOpsPerSec: 900, diskActiveRatio: 0.25 });
  });
});
