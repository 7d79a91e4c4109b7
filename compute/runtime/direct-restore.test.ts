import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DIRECT_RESTORE_RUNTIME, pointCheckpointAt, resolveRestorePath } from './direct-restore.ts';

const WRAPPER = resolve(import.meta.dirname, '../../bin/herd-runc');

describe('resolveRestorePath', () => {
  it('auto is direct exactly when Docker has the runtime; docker is docker', () => {
    expect(resolveRestorePath('auto', { runtimes: ['runc', DIRECT_RESTORE_RUNTIME] })).toBe('direct');
    expect(resolveRestorePath('auto', { runtimes: ['runc'] })).toBe('docker');
    expect(resolveRestorePath('docker', { runtimes: ['runc', DIRECT_RESTORE_RUNTIME] })).toBe('docker');
    expect(resolveRestorePath('direct', { runtimes: [DIRECT_RESTORE_RUNTIME] })).toBe('direct');
  });

  it('direct without the runtime is refused, naming the runtime, daemon.json and the fallback', () => {
    expect(() => resolveRestorePath('direct', { runtimes: ['runc'] })).toThrow(expect.objectContaining({ code: 'MISSING_DEPENDENCY', message: expect.stringMatching(/no runtime "herd-runc" \(registered: runc\).*daemon\.json.*restoreWith/) }));
  });
});

describe('bin/herd-runc (runc for everything but a restore from staged images)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'herd-runc-test-'));
  // A stand-in runc that prints the arguments it was given.
  const fakeRunc = join(dir, 'runc');
  writeFileSync(fakeRunc, '#!/bin/sh\nprintf "%s\\n" "$@"\n', { mode: 0o755 });
  const run = (...args: string[]) => spawnSync(WRAPPER, args, { env: { ...process.env, HERD_RUNC: fakeRunc }, encoding: 'utf8' });

  const images = join(dir, 'staged');
  mkdirSync(images);
  writeFileSync(join(images, 'inventory.img'), 'x');
  const ctrdCopy = join(dir, 'ctrd-checkpoint1');
  pointCheckpointAt(ctrdCopy, images);

  it('hands runc the staged images on a restore whose image dir names them', () => {
    const r = run('--root', '/run/x', 'restore', '--image-path', ctrdCopy, '--work-path', '/w', 'cid');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['--root', '/run/x', 'restore', '--image-path', images, '--work-path', '/w', 'cid']);
    expect(readFileSync(join(ctrdCopy, 'herd-images'), 'utf8')).toBe(images);
  });

  it('passes every other command, and a restore without the marker, through unchanged (spaces kept)', () => {
    const plain = join(dir, 'plain images');
    mkdirSync(plain);
    expect(run('restore', '--image-path', plain, 'cid').stdout.trim().split('\n')).toEqual(['restore', '--image-path', plain, 'cid']);
    expect(run('checkpoint', '--image-path', ctrdCopy, 'cid').stdout.trim().split('\n')).toEqual(['checkpoint', '--image-path', ctrdCopy, 'cid']);
    expect(run('--version').stdout.trim()).toBe('--version');
  });

  it('refuses a marker that names no checkpoint images, saying which', () => {
    const bad = join(dir, 'bad-ctrd');
    pointCheckpointAt(bad, join(dir, 'nothing-here'));
    const r = run('restore', '--image-path', bad, 'cid');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`names "${join(dir, 'nothing-here')}", which is not a directory of checkpoint images`);
  });
});
