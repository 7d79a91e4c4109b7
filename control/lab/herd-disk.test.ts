/**
 * control/lab/herd-disk.py (the lab's disk with an operations limit, `lab up --disk-iops`)
 * against real FUSE: it serves its backing file's bytes, writes land in it, and no more
 * than its limit of operations gets through per second (a lower bound on the time, which
 * no machine can beat). Needs root and Debian's python3-llfuse.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountSource } from './host-disk.ts';
import { runCommand } from './shell.ts';

const SCRIPT = join(import.meta.dirname, 'herd-disk.py');
const MiB = 2 ** 20;

describe('herd-disk (FUSE, real)', () => {
  let dir: string;
  let server: ChildProcess | undefined;

  beforeEach(async () => {
    const llfuse = await runCommand('/usr/bin/python3', ['-c', 'import llfuse']);
    if (llfuse.code !== 0) throw new Error('python3-llfuse is missing: apt-get install python3-llfuse (scripts/setup installs it)');
    if (process.getuid?.() !== 0) throw new Error('mounting FUSE needs root: run the tests as root');
    dir = mkdtempSync(join(tmpdir(), 'herd-disk-test-'));
  });

  afterEach(async () => {
    await runCommand('umount', [join(dir, 'mnt')]);
    server?.kill();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(iops: number): Promise<string> {
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    server = spawn('/usr/bin/python3', [SCRIPT, join(dir, 'backing'), mnt, '--iops', String(iops)], { stdio: 'ignore' });
    for (let i = 0; i < 100 && mountSource(mnt) !== 'herd-disk'; i++) await new Promise((r) => setTimeout(r, 100));
    expect(mountSource(mnt)).toBe('herd-disk');
    return join(mnt, 'disk.img');
  }

  it('serves the backing file: reads give its bytes, writes land in it', async () => {
    const bytes = Buffer.alloc(2 * MiB);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
    writeFileSync(join(dir, 'backing'), bytes);
    const file = await serve(100_000);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    const r = await runCommand('dd', ['if=/dev/zero', `of=${file}`, 'bs=4096', 'count=3', 'seek=10', 'conv=notrunc', 'oflag=direct']);
    expect(r.code, r.stderr).toBe(0);
    const after = readFileSync(join(dir, 'backing'));
    expect(after.length).toBe(bytes.length);
    expect(after.subarray(40960, 40960 + 12288).every((b) => b === 0)).toBe(true);
    expect(after.subarray(0, 40960).equals(bytes.subarray(0, 40960))).toBe(true);
    expect(after.subarray(40960 + 12288).equals(bytes.subarray(40960 + 12288))).toBe(true);
  });

  it('lets no more than --iops operations through per second', async () => {
    writeFileSync(join(dir, 'backing'), Buffer.alloc(MiB));
    const file = await serve(50);
    const t0 = performance.now();
    // 40 direct writes are 40 operations: at 50 per second they cannot end before 0.78 s.
    const r = await runCommand('dd', ['if=/dev/zero', `of=${file}`, 'bs=4096', 'count=40', 'conv=notrunc', 'oflag=direct']);
    const seconds = (performance.now() - t0) / 1000;
    expect(r.code, r.stderr).toBe(0);
    expect(seconds).toBeGreaterThanOrEqual(0.75);
  });

  it('refuses a bad limit or a missing backing file with a message naming it', async () => {
    const bad = await runCommand('/usr/bin/python3', [SCRIPT, join(dir, 'none'), dir, '--iops', '100']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain(`${join(dir, 'none')}: no such file`);
    writeFileSync(join(dir, 'backing'), 'x');
    const zero = await runCommand('/usr/bin/python3', [SCRIPT, join(dir, 'backing'), dir, '--iops', '0']);
    expect(zero.code).not.toBe(0);
    expect(zero.stderr).toContain('--iops must be at least 1');
  });
});
