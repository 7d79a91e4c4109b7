import { appendFileSync, closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeContainerCgroup } from '../test/support/cgroup-tree.ts';
import { cgroupUsagePaths, type CgroupLocation } from './cgroup-fs.ts';
import { createCgroupUsageReader, JsCgroupUsageReader, loadNativeReader, nativeFileSizes, USAGE, USAGE_FIELDS, type CgroupUsageReader } from './cgroup-reader.ts';

const PARENT = 'docker';
const ID = (n: number) => `${n.toString(16).padStart(4, '0')}${'a'.repeat(60)}`;

/** The native reader, or a failure that says how to build it (never a silent skip). */
function nativeReader(): CgroupUsageReader {
  const loaded = loadNativeReader();
  if ('error' in loaded) throw new Error(`the native cgroup reader is not built: ${loaded.error}`);
  return createCgroupUsageReader('native').reader;
}

describe('cgroup usage readers (native and JavaScript give the same values)', () => {
  let root: string;
  let loc: CgroupLocation;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'herd-reader-'));
    loc = { root: join(root, 'cgroup'), parent: PARENT, procRoot: join(root, 'proc') };
    // 0: everything; 1: no pids.current (threads from tasks), 2 processes, a long tasks file;
    // 2: only memory; 3: odd contents (not numbers, blkio without Read/Write lines).
    writeContainerCgroup(root, PARENT, ID(0), 4242, {
      'memory/memory.usage_in_bytes': '1048576\n',
      'cpuacct/cpuacct.usage': '123456789012\n',
      'blkio/blkio.throttle.io_serviced': '8:0 Read 3\n8:0 Write 4\n8:0 Sync 4\n8:0 Async 0\n8:0 Total 7\n8:16 Read 1\n8:16 Write 2\nTotal 10\n',
      'pids/cgroup.procs': '4242\n',
      'pids/pids.current': '5\n',
      'pids/tasks': '4242\n',
    });
    const tasks = Array.from({ length: 5000 }, (_, i) => String(10_000 + i)).join('\n');
    writeContainerCgroup(root, PARENT, ID(1), 4343, {
      'memory/memory.usage_in_bytes': '2097152\n',
      'blkio/blkio.throttle.io_serviced': 'Total 0\n',
      'pids/cgroup.procs': ' 4343\n4344\n',
      'pids/tasks': `${tasks}\n`,
    });
    writeContainerCgroup(root, PARENT, ID(2), 4444, { 'memory/memory.usage_in_bytes': '7' });
    writeContainerCgroup(root, PARENT, ID(3), 4545, {
      'memory/memory.usage_in_bytes': 'max\n',
      'cpuacct/cpuacct.usage': '\n',
      'blkio/blkio.throttle.io_serviced': '8:0 Discard 9\n',
      'pids/cgroup.procs': '',
      'pids/pids.current': '12 13\n',
    });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const readAll = (reader: CgroupUsageReader, ids: string[], cpu: boolean): number[][] => {
    const slots = Int32Array.from(ids.map((id) => reader.track(cgroupUsagePaths(loc, id))));
    const out = new Float64Array(ids.length * USAGE_FIELDS);
    reader.read(slots, ids.length, cpu, out);
    return ids.map((_, k) => Array.from(out.subarray(k * USAGE_FIELDS, (k + 1) * USAGE_FIELDS)));
  };

  it('reads every value of a container, and NaN where a file is missing or not a number', () => {
    const ids = [0, 1, 2, 3, 99].map(ID); // 99: no cgroup at all
    const js = readAll(new JsCgroupUsageReader(), ids, true);
    const native = readAll(nativeReader(), ids, true);
    const nan = Number.NaN;
    const expected = [
      [1048576, 123456789012, 4, 6, 1, 5, 4000, 2000],
      [2097152, nan, 0, 0, 2, 5000, 4000, 2000],
      [7, nan, nan, nan, nan, nan, nan, nan],
      [nan, nan, 0, 0, 0, nan, nan, nan],
      [nan, nan, nan, nan, nan, nan, nan, nan],
    ];
    expect(js).toEqual(expected);
    expect(native).toEqual(expected);
  });

  it('reads CPU time only when asked', () => {
    for (const reader of [new JsCgroupUsageReader(), nativeReader()]) {
      expect(readAll(reader, [ID(0)], false)[0]![USAGE.cpuUsageNs]).toBeNaN();
      reader.close();
    }
  });

  it('keeps files open, sees new contents, survives a file that goes and comes back, and closes on untrack', () => {
    for (const reader of [new JsCgroupUsageReader(), nativeReader()]) {
      const memory = join(loc.root, 'memory', PARENT, ID(0), 'memory.usage_in_bytes');
      writeFileSync(memory, '1048576\n');
      const before = reader.openFiles();
      const slot = reader.track(cgroupUsagePaths(loc, ID(0)));
      const out = new Float64Array(USAGE_FIELDS);
      const read = () => {
        reader.read(Int32Array.of(slot), 1, false, out);
        return out[USAGE.memoryBytes];
      };
      expect(read()).toBe(1048576);
      // memory, blkio, procs, pids.current stay open; net/dev never does.
      expect(reader.openFiles() - before).toBe(4);
      writeFileSync(memory, '4096\n');
      expect(read()).toBe(4096);
      unlinkSync(memory);
      writeFileSync(memory, '8192\n'); // a new file: the kept one still shows the old contents until it fails
      read();
      reader.untrack(slot);
      reader.read(Int32Array.of(slot), 1, false, out);
      expect(out[USAGE.memoryBytes]).toBeNaN(); // an untracked slot reads nothing
      expect(reader.openFiles()).toBe(before);
      const again = reader.track(cgroupUsagePaths(loc, ID(0)));
      reader.read(Int32Array.of(again), 1, false, out);
      expect(out[USAGE.memoryBytes]).toBe(8192);
      reader.close();
      expect(reader.openFiles()).toBe(before);
    }
  });

  it('gives the sizes of open files in one call (-1 for a descriptor that is not open)', () => {
    nativeReader();
    const sizes = nativeFileSizes()!;
    const path = join(root, 'log');
    writeFileSync(path, 'x'.repeat(123));
    const fd = openSync(path, 'r');
    try {
      const out = new Float64Array(2);
      sizes(Int32Array.of(fd, -1), 2, out);
      expect([...out]).toEqual([123, -1]);
      appendFileSync(path, 'yz');
      sizes(Int32Array.of(fd), 1, out);
      expect(out[0]).toBe(125);
    } finally {
      closeSync(fd);
    }
  });

  it('auto picks the native reader once it is built', () => {
    nativeReader();
    const { reader, fallback } = createCgroupUsageReader('auto');
    expect(reader.kind).toBe('native');
    expect(fallback).toBeUndefined();
    expect(createCgroupUsageReader('js').reader.kind).toBe('js');
  });
});
