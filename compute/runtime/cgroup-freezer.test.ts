/**
 * The freezer's protocol against directories shaped like cgroup v1 and v2 freezers (the
 * kernel's own are exercised by every checkpoint of the lab's end-to-end suites, and a failed
 * dump's thaw by the rollback suite's fail-checkpoint fault).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freeze, freezerOf, thaw } from './cgroup-freezer.ts';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'herd-freezer-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('cgroup freezer', () => {
  it("finds the freezer in runc's state.json: v1's freezer path, v2's unified one, none without", async () => {
    const dir = tempDir();
    const state = (paths: object) => {
      writeFileSync(join(dir, 'state.json'), JSON.stringify({ id: 'x', cgroup_paths: paths }));
      return join(dir, 'state.json');
    };
    expect(await freezerOf(state({ freezer: '/sys/fs/cgroup/freezer/docker/x', memory: '/m' }))).toEqual({ version: 1, dir: '/sys/fs/cgroup/freezer/docker/x' });
    expect(await freezerOf(state({ '': '/sys/fs/cgroup/system.slice/docker-x.scope' }))).toEqual({ version: 2, dir: '/sys/fs/cgroup/system.slice/docker-x.scope' });
    expect(await freezerOf(state({ memory: '/m' }))).toBeUndefined();
    expect(await freezerOf(join(dir, 'missing.json'))).toBeUndefined();
    writeFileSync(join(dir, 'bad.json'), '{');
    expect(await freezerOf(join(dir, 'bad.json'))).toBeUndefined();
  });

  it('v1: writes FROZEN, waits for it, and thaws back', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'freezer.state'), 'THAWED\n');
    const f = { version: 1 as const, dir };
    expect(await freeze(f)).toBe(true);
    expect(readFileSync(join(dir, 'freezer.state'), 'utf8')).toBe('FROZEN');
    expect(await thaw(f)).toBe(true);
    expect(readFileSync(join(dir, 'freezer.state'), 'utf8')).toBe('THAWED');
    expect(await thaw(f)).toBe(false);
    // Frozen already (a paused container): not this call's freeze, so not its thaw either.
    writeFileSync(join(dir, 'freezer.state'), 'FROZEN\n');
    expect(await freeze(f)).toBe(false);
    expect(readFileSync(join(dir, 'freezer.state'), 'utf8')).toBe('FROZEN\n');
  });

  it('v2: frozen once cgroup.events says so; a freeze that does not complete in time is undone', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'cgroup.freeze'), '0\n');
    writeFileSync(join(dir, 'cgroup.events'), 'populated 1\nfrozen 0\n');
    const f = { version: 2 as const, dir };
    expect(await freeze(f, 30)).toBe(false);
    expect(readFileSync(join(dir, 'cgroup.freeze'), 'utf8')).toBe('0');
    // A v2 cgroup counts as frozen by its events, whatever cgroup.freeze says: not this call's to thaw.
    writeFileSync(join(dir, 'cgroup.events'), 'populated 1\nfrozen 1\n');
    expect(await freeze(f)).toBe(false);
    writeFileSync(join(dir, 'cgroup.events'), 'populated 1\nfrozen 0\n');

    const done = setTimeout(() => writeFileSync(join(dir, 'cgroup.events'), 'populated 1\nfrozen 1\n'), 10);
    try {
      expect(await freeze(f, 5000)).toBe(true);
    } finally {
      clearTimeout(done);
    }
    expect(readFileSync(join(dir, 'cgroup.freeze'), 'utf8')).toBe('1');
    expect(await thaw(f)).toBe(true);
    expect(readFileSync(join(dir, 'cgroup.freeze'), 'utf8')).toBe('0');
  });

  it('no freezer, or one that cannot be written: nothing frozen, nothing thrown', async () => {
    expect(await freeze(undefined)).toBe(false);
    expect(await thaw(undefined)).toBe(false);
    const gone = { version: 1 as const, dir: join(tempDir(), 'gone') };
    expect(await freeze(gone)).toBe(false);
    expect(await thaw(gone)).toBe(false);
  });
});
