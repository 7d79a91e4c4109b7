import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { activateBlkioAccounting, diskDevices, NO_OP_IOPS, parseIoServiced } from './blkio-accounting.ts';

describe('block I/O accounting', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-blkio-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lists disks, not loop, ram or zram devices', () => {
    for (const [name, dev] of [['vda', '254:0'], ['sdb', '8:16'], ['loop0', '7:0'], ['zram0', '252:0'], ['ram1', '1:1']] as const) {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'dev'), `${dev}\n`);
    }
    mkdirSync(join(dir, 'odd'));
    expect(diskDevices(dir)).toEqual(['254:0', '8:16']);
    expect(diskDevices(join(dir, 'none'))).toEqual([]);
  });

  it('adds a never-throttling rule on the cgroup parent, keeps existing rules, and says when it cannot yet', () => {
    expect(activateBlkioAccounting(join(dir, 'cg'), 'herd-h1', ['254:0'])).toMatchObject({ done: false, reason: expect.stringContaining('does not exist') });
    const parent = join(dir, 'cg', 'blkio', 'herd-h1');
    mkdirSync(parent, { recursive: true });
    writeFileSync(join(parent, 'blkio.throttle.write_iops_device'), '');
    expect(activateBlkioAccounting(join(dir, 'cg'), '/herd-h1/', ['254:0'])).toEqual({ done: true, added: ['254:0'] });
    expect(readFileSync(join(parent, 'blkio.throttle.write_iops_device'), 'utf8')).toBe(`254:0 ${NO_OP_IOPS}\n`);
    // The kernel lists the rule now: nothing more to add.
    expect(activateBlkioAccounting(join(dir, 'cg'), 'herd-h1', ['254:0'])).toEqual({ done: true, added: [] });
  });

  it('sums reads and writes over devices from blkio.throttle.io_serviced', () => {
    expect(parseIoServiced('254:0 Read 3\n254:0 Write 256\n254:0 Sync 259\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 259\n8:0 Read 1\n8:0 Write 4\nTotal 264\n')).toEqual({ reads: 4, writes: 260 });
    expect(parseIoServiced('Total 0\n')).toEqual({ reads: 0, writes: 0 });
  });
});
