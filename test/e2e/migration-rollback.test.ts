/**
 * Rollback end to end, each case produced by a real fault (see compute/migration/faults.ts):
 * after every failed migration the container runs exactly once, on the source, and no
 * stray target container, checkpoint file or migration record is left.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LabLayout } from '../../control/lab/layout.ts';
import { COUNTER, count, execIn, leftovers, placements } from '../support/containers.ts';
import { herd, herdOk, HERD_BIN } from '../support/herd-cli.ts';
import { dockerOf, readyLab, setFaults } from '../support/lab.ts';


/** The containers the tests started (removed after the suite: they keep counting). */
const started: string[] = [];

/** Starts a counter and waits until it counted to `atLeast` (it counts 10 a second). */
async function startCounter(layout: LabLayout, name: string, cmd: readonly string[] = COUNTER, atLeast = 20): Promise<number> {
  started.push(name);
  await herdOk(['run', '--host', 'h1', '--name', name, 'herd/busybox', ...cmd]);
  for (let i = 0; i < atLeast * 5; i++) {
    const n = await count(layout, 'h1', name).catch(() => 0);
    if (n >= atLeast) return n;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} does not count`);
}

async function expectOnceOnSource(layout: LabLayout, name: string): Promise<void> {
  const where = await placements(layout, name);
  expect(where.map((p) => [p.hostId, p.running])).toEqual([['h1', true]]);
}

describe('rollback (lab, real faults)', () => {
  let layout: LabLayout;
  beforeAll(async () => {
    layout = await readyLab(2);
  });
  afterEach(async () => {
    await setFaults(layout, 'h1', []);
    await setFaults(layout, 'h2', []);
  });
  afterAll(async () => {
    for (const name of started) await herd(['rm', name, '--force']);
  });

  it('checkpoint fails: the target is removed and the source keeps running', async () => {
    await startCounter(layout, 'rb-checkpoint');
    await setFaults(layout, 'h1', ['fail-checkpoint']);
    const before = await count(layout, 'h1', 'rb-checkpoint');
    const r = await herd(['migrate', 'rb-checkpoint', '--to', 'h2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ROLLED_BACK');
    expect(r.stderr).toContain('CHECKPOINT_FAILED');
    await expectOnceOnSource(layout, 'rb-checkpoint');
    await new Promise((res) => setTimeout(res, 300));
    expect(await count(layout, 'h1', 'rb-checkpoint')).toBeGreaterThan(before);
    expect(await leftovers(layout)).toEqual([]);
  });

  // The filesystem's: more than preCopyFilesystemMinBytes (4 MiB) in the upper dir. The memory's: 40 MB held in
  // memory (over preCopyMemoryMinBytes, 4 MiB) and a small upper dir, so the memory alone goes before the freeze.
  const precopies = [
    { what: 'filesystem', name: 'rb-precopy', cmd: COUNTER, setup: ['sh', '-c', 'head -c 6000000 /dev/urandom > /big'], message: /TRANSFER_FAILED/ },
    { what: 'memory', name: 'rb-memory', cmd: ['sh', '-c', `x=$(head -c 30000000 /dev/urandom | base64); ${COUNTER[2]}`], setup: undefined, message: /memory pre-copy/ },
  ];
  it.each(precopies)('the $what pre-copy fails (the target refuses it): nothing was frozen, the target copy goes, the source runs on', async ({ name, cmd, setup, message }) => {
    await startCounter(layout, name, cmd);
    if (setup !== undefined) await execIn(dockerOf(layout, 'h1'), name, setup);
    await setFaults(layout, 'h1', ['fail-precopy']);
    const before = await count(layout, 'h1', name);
    const r = await herd(['migrate', name, '--to', 'h2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ROLLED_BACK');
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/not under this host's data roots/);
    expect(r.stdout).toMatch(/precopy +failed/);
    expect(r.stdout).not.toMatch(/checkpoint +started/);
    await expectOnceOnSource(layout, name);
    await new Promise((res) => setTimeout(res, 300));
    expect(await count(layout, 'h1', name)).toBeGreaterThan(before);
    expect(await leftovers(layout)).toEqual([]);
  });

  it('images corrupted in transit (remote restore fails): the source resumes from its checkpoint', async () => {
    await startCounter(layout, 'rb-remote');
    await setFaults(layout, 'h2', ['corrupt-images-in-transit']);
    const before = await count(layout, 'h1', 'rb-remote');
    const r = await herd(['migrate', 'rb-remote', '--to', 'h2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ROLLED_BACK');
    expect(r.stderr).toContain('RESTORE_FAILED');
    expect(r.stdout).toMatch(/rollback +finished/);
    await expectOnceOnSource(layout, 'rb-remote');
    await new Promise((res) => setTimeout(res, 300));
    // Resumed, not restarted: the count goes on from where it was frozen.
    expect(await count(layout, 'h1', 'rb-remote')).toBeGreaterThanOrEqual(before);
    expect(await leftovers(layout)).toEqual([]);
  });

  it('remote and local restore both fail: the source is restarted and the migration reported failed', async () => {
    // Counted well past what a restarted counter reaches by the time it is read (a slow machine's migration included).
    await startCounter(layout, 'rb-local', COUNTER, 100);
    await setFaults(layout, 'h2', ['corrupt-images-in-transit']);
    await setFaults(layout, 'h1', ['fail-local-restore']);
    const before = await count(layout, 'h1', 'rb-local');
    const r = await herd(['migrate', 'rb-local', '--to', 'h2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[RESTORE_FAILED]');
    expect(r.stderr).toContain('memory state lost');
    await expectOnceOnSource(layout, 'rb-local');
    // Restarted from scratch: the count started over.
    await new Promise((res) => setTimeout(res, 300));
    expect(await count(layout, 'h1', 'rb-local')).toBeLessThan(before);
    expect(await leftovers(layout)).toEqual([]);
  });

  it('target compute daemon killed with -9 mid-transfer: the source resumes; the target cleans up when it comes back', async () => {
    await startCounter(layout, 'rb-kill');
    await execIn(dockerOf(layout, 'h1'), 'rb-kill', ['sh', '-c', 'head -c 6000000 /dev/urandom > /data/big']);
    await setFaults(layout, 'h1', ['slow-transfer']);
    const before = await count(layout, 'h1', 'rb-kill');
    const migrate = spawn(HERD_BIN, ['migrate', 'rb-kill', '--to', 'h2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    migrate.stdout.on('data', (d: Buffer) => (out += d.toString()));
    migrate.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number>((res) => migrate.on('close', (code) => res(code ?? -1)));
    for (let i = 0; i < 300 && !/transfer +started/.test(out); i++) await new Promise((res) => setTimeout(res, 100));
    expect(out).toMatch(/transfer +started/);
    const h2 = layout.hosts[1]!;
    process.kill(Number(readFileSync(h2.computePidFile, 'utf8')), 'SIGKILL');
    const code = await exited;
    expect(code, out).toBe(1);
    expect(err).toContain('ROLLED_BACK');
    expect(err).toContain('HOST_OFFLINE');
    // Running exactly once, on the source; the target's half-made container (never started) waits for its daemon.
    const running = (await placements(layout, 'rb-kill')).filter((p) => p.running);
    expect(running.map((p) => p.hostId)).toEqual(['h1']);
    expect(await count(layout, 'h1', 'rb-kill')).toBeGreaterThanOrEqual(before);
    // The target's daemon comes back (lab up restarts it) and removes its half-made target:
    // in its first reconciler pass, which starts as it comes online (lab up does not wait for it).
    await herdOk(['lab', 'up']);
    await expect.poll(async () => (await placements(layout, 'rb-kill')).map((p) => [p.hostId, p.running]), { timeout: 30_000 }).toEqual([['h1', true]]);
    await expect.poll(() => leftovers(layout), { timeout: 30_000 }).toEqual([]);
  });
});
