import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cgroupUsagePaths, FileReader, parseNetDev, readCgroupUsage } from './cgroup-fs.ts';

describe('FileReader', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-files-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps files open, reads them again from the start, and closes what was not read since the last sweep', () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    writeFileSync(a, '1\n');
    writeFileSync(b, 'x'.repeat(100_000)); // longer than the first buffer
    const reader = new FileReader(10);
    expect(reader.read(a)).toBe('1\n');
    writeFileSync(a, '22\n');
    expect(reader.read(a)).toBe('22\n');
    expect(reader.read(b)).toHaveLength(100_000);
    expect(reader.openFiles).toBe(2);
    reader.sweep();
    expect(reader.read(a)).toBe('22\n');
    reader.sweep(); // b was not read since the previous sweep
    expect(reader.openFiles).toBe(1);
    expect(reader.read(join(dir, 'missing'))).toBeUndefined();
    reader.close();
    expect(reader.openFiles).toBe(0);
  });

  it('opens for each read beyond its limit, and never keeps what it is told not to', () => {
    const reader = new FileReader(1);
    for (const f of ['a', 'b', 'c']) writeFileSync(join(dir, f), f);
    expect([reader.read(join(dir, 'a')), reader.read(join(dir, 'b')), reader.read(join(dir, 'c'), false)]).toEqual(['a', 'b', 'c']);
    expect(reader.openFiles).toBe(1);
    reader.close();
  });
});

describe('readCgroupUsage', () => {
  it('counts threads from pids.current, else from tasks', () => {
    const root = mkdtempSync(join(tmpdir(), 'herd-cg-'));
    try {
      const loc = { root: join(root, 'cg'), parent: 'docker', procRoot: join(root, 'proc') };
      const pids = join(loc.root, 'pids', 'docker', 'c1');
      mkdirSync(pids, { recursive: true });
      writeFileSync(join(pids, 'cgroup.procs'), '10\n11\n');
      writeFileSync(join(pids, 'tasks'), '10\n11\n12\n');
      const reader = new FileReader();
      expect(readCgroupUsage(cgroupUsagePaths(loc, 'c1'), reader)).toMatchObject({ processCount: 2, threadCount: 3 });
      writeFileSync(join(pids, 'pids.current'), '7\n');
      expect(readCgroupUsage(cgroupUsagePaths(loc, 'c1'), reader)).toMatchObject({ processCount: 2, threadCount: 7 });
      reader.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('parseNetDev', () => {
  const header = 'Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';
  it.each([
    ['lo left out, two interfaces summed', `${header}    lo:  100 1 0 0 0 0 0 0  100 1 0 0 0 0 0 0\n  eth0: 4000 10 0 0 0 0 0 0 2000 5 0 0 0 0 0 0\n  eth1:\t5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n`, 4005, 2007],
    ['no trailing newline', `${header}  eth0:123456789012 1 0 0 0 0 0 0 98765 5 0 0 0 0 0 0`, 123456789012, 98765],
    ['only lo', `${header}    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n`, 0, 0],
    ['empty', '', 0, 0],
  ])('%s', (_name, text, inBytes, outBytes) => {
    expect(parseNetDev(text)).toEqual({ inBytes, outBytes });
  });
});
