import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cgroupDirOf } from './container-cgroup.ts';

describe('cgroupDirOf', () => {
  const dirOf = (cgroupFile: string, controller: string) => {
    const proc = mkdtempSync(join(tmpdir(), 'herd-cgroup-'));
    try {
      mkdirSync(join(proc, '7'));
      writeFileSync(join(proc, '7', 'cgroup'), cgroupFile);
      return cgroupDirOf(7, controller, proc, '/cg');
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  };

  it("finds a v1 controller's directory (also in a combined hierarchy, with colons in the path), else the v2 one", () => {
    expect(dirOf('12:pids:/docker/abc\n4:cpu,memory:/docker/a:b\n0::/x\n', 'memory')).toEqual({ version: 1, dir: '/cg/memory/docker/a:b' });
    expect(dirOf('12:pids:/docker/abc\n0::/system.slice/docker-abc.scope\n', 'memory')).toEqual({ version: 2, dir: '/cg/system.slice/docker-abc.scope' });
  });

  it('gives none for the root cgroup (a cgroup namespace) or no cgroup at all, and throws for a process that is gone', () => {
    expect(dirOf('12:pids:/\n', 'pids')).toBeUndefined();
    expect(dirOf('0::/\n', 'pids')).toBeUndefined();
    expect(dirOf('', 'pids')).toBeUndefined();
    expect(() => cgroupDirOf(7, 'pids', '/nonexistent-proc')).toThrow();
  });
});
