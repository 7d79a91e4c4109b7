import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { containerMemory } from './container-memory.ts';

const root = mkdtempSync(join(tmpdir(), 'herd-memory-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A /proc with one process in `cgroupLine`'s cgroup, and that cgroup's files. */
function fixture(name: string, cgroupLine: string, dir: string, files: Record<string, string>): { proc: string; cgroup: string } {
  const proc = join(root, name, 'proc');
  const cgroup = join(root, name, 'cgroup');
  mkdirSync(join(proc, '42'), { recursive: true });
  writeFileSync(join(proc, '42', 'cgroup'), `12:pids:/x\n${cgroupLine}\n`);
  mkdirSync(join(cgroup, dir), { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(cgroup, dir, file), text);
  return { proc, cgroup };
}

describe('containerMemory', () => {
  it('cgroup v1: usage with page cache, resident without it (rss + shmem)', () => {
    const { proc, cgroup } = fixture('v1', '9:memory:/docker/abc', 'memory/docker/abc', { 'memory.usage_in_bytes': '125829120\n', 'memory.stat': 'cache 104857600\nrss 1\ntotal_cache 104857600\ntotal_rss 16777216\ntotal_shmem 4096\n' });
    expect(containerMemory(42, proc, cgroup)).toEqual({ usageBytes: 125829120, residentBytes: 16777216 + 4096 });
  });

  it('cgroup v2: memory.current, and anon + shmem', () => {
    const { proc, cgroup } = fixture('v2', '0::/system.slice/docker-abc.scope', 'system.slice/docker-abc.scope', { 'memory.current': '9000\n', 'memory.stat': 'anon 5000\nfile 3000\nshmem 100\n' });
    expect(containerMemory(42, proc, cgroup)).toEqual({ usageBytes: 9000, residentBytes: 5100 });
  });

  it('zeros when the process or its cgroup is gone, or no pid is known', () => {
    const { proc, cgroup } = fixture('gone', '9:memory:/docker/missing', 'memory/other', {});
    expect(containerMemory(42, proc, cgroup)).toEqual({ usageBytes: 0, residentBytes: 0 });
    expect(containerMemory(7, proc, cgroup)).toEqual({ usageBytes: 0, residentBytes: 0 });
    expect(containerMemory(undefined, proc, cgroup)).toEqual({ usageBytes: 0, residentBytes: 0 });
  });
});
