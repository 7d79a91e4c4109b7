import { mkdtempSync, rmSync, writeFileSync, copyFileSync, chmodSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { directRestoreCheck, dockerInitCheck } from './doctor.ts';

const WRAPPER = resolve(import.meta.dirname, '../bin/herd-runc');

describe('doctor: the herd-runc runtime in daemon.json', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-doctor-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const daemonJson = (path?: string) => {
    const file = join(dir, 'daemon.json');
    writeFileSync(file, JSON.stringify(path === undefined ? { experimental: true } : { runtimes: { 'herd-runc': { path } } }));
    return file;
  };

  it('passes, saying the slower path is used, when the runtime is not registered', () => {
    const check = directRestoreCheck(daemonJson(), WRAPPER);
    expect(check.ok).toBe(true);
    expect(check.detail).toMatch(/not registered/);
  });

  it('passes for an installed copy of this checkout\'s wrapper', () => {
    const copy = join(dir, 'herd-runc');
    copyFileSync(WRAPPER, copy);
    chmodSync(copy, 0o755);
    const check = directRestoreCheck(daemonJson(copy), WRAPPER);
    expect(check).toMatchObject({ ok: true });
    expect(check.detail).toContain(copy);
  });

  it('fails, naming the path, when the registered file is gone (a removed checkout)', () => {
    const check = directRestoreCheck(daemonJson('/nonexistent/bin/herd-runc'), WRAPPER);
    expect(check.ok).toBe(false);
    expect(check.detail).toContain('/nonexistent/bin/herd-runc');
    expect(check.fix).toMatch(/scripts\/setup/);
  });

  it('fails when the registered wrapper is another version', () => {
    const old = join(dir, 'herd-runc');
    writeFileSync(old, '#!/bin/bash\nexec runc "$@"\n', { mode: 0o755 });
    const check = directRestoreCheck(daemonJson(old), WRAPPER);
    expect(check.ok).toBe(false);
    expect(check.detail).toMatch(/differs from this Herd/);
  });
});

describe("doctor: Docker's init from a real file", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-doctor-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('fails for a symlinked docker-init without init-path, and passes once init-path names the real file', () => {
    const tini = join(dir, 'tini-static');
    writeFileSync(tini, '', { mode: 0o755 });
    const init = join(dir, 'docker-init');
    symlinkSync('tini-static', init);
    const file = join(dir, 'daemon.json');
    writeFileSync(file, JSON.stringify({ experimental: true }));
    const failed = dockerInitCheck(file, init);
    expect(failed.ok).toBe(false);
    expect(failed.detail).toContain(`${init} is a symlink (to ${tini})`);
    expect(failed.fix).toContain(`"init-path": "${tini}"`);
    writeFileSync(file, JSON.stringify({ 'init-path': tini }));
    expect(dockerInitCheck(file, init)).toMatchObject({ ok: true, detail: expect.stringContaining(`sets init-path ${tini}`) });
    expect(dockerInitCheck(file, tini).ok).toBe(true);
    expect(dockerInitCheck(file, join(dir, 'absent')).ok).toBe(true);
  });
});
