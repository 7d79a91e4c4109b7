/**
 * The control loop on the real lab: CPU-bound sysbench containers piled on one host are
 * spread by real live migrations (CRIU, Docker, SSH), each recorded with its reason; a
 * control daemon killed (kill -9) after the first migration and started again loses no
 * history and sends no migration twice; afterwards several evaluations move nothing
 * (no ping-pong).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabLayout } from '../../control/lab/layout.ts';
import type { MigrationRecord } from '../../control/loop/history-store.ts';
import type { ControlEvent } from '../../protocol/messages.ts';
import { placements } from '../support/containers.ts';
import { herdOk } from '../support/herd-cli.ts';
import { readyLab } from '../support/lab.ts';

const NAMES = ['loop-1', 'loop-2', 'loop-3', 'loop-4'];

async function history(): Promise<MigrationRecord[]> {
  return JSON.parse(await herdOk(['history', '--json', '--limit', '1000'])) as MigrationRecord[];
}

async function events(): Promise<ControlEvent[]> {
  return (await herdOk(['events', '--json', '--limit', '1000'])).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ControlEvent);
}

/** Polls (a hang guard, not a performance assertion). */
async function until<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`gave up after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 3000));
  }
}

describe('control loop (lab)', () => {
  let layout: LabLayout;
  beforeAll(async () => {
    layout = await readyLab(2);
    for (const name of NAMES) await herdOk(['run', '--host', 'h1', '--name', name, '--cpus', '0.5', 'herd/sysbench', 'sysbench', 'cpu', '--time=0', `--threads=${name === 'loop-4' ? 2 : 1}`, 'run']);
  });

  afterAll(async () => {
    await herdOk(['control', 'pause', '--reason', 'control-loop suite done']).catch(() => undefined);
    for (const name of NAMES) await herdOk(['rm', name, '--force']).catch(() => undefined);
  });

  it('rebalances by real migrations, survives a restart of the control daemon, then stays put', { timeout: 900_000 }, async () => {
    const since = new Date().toISOString();
    // The lab's history outlives a suite: look at what this run did.
    const ours = async () => (await history()).filter((r) => NAMES.includes(r.name) && r.startedAt >= since);
    await herdOk(['control', 'resume']);
    const first = await until('a first migration by the loop', 240, async () => (await ours()).find((r) => !r.manual && r.outcome !== undefined));
    expect(first, JSON.stringify(first)).toMatchObject({ from: 'h1', to: 'h2', outcome: 'done', reasonCode: 'CPU_OVERLOAD' });
    expect(first.reason).toMatch(/h1 demands [\d.]+ of 1 core/);

    // kill -9 the control daemon (and with it the lab's broker), then start it again.
    const pid = Number(readFileSync(layout.controlPidFile, 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 1000));
    await herdOk(['lab', 'up', '--hosts', '2'], { timeoutMs: 300_000 });
    const after = await until('the restarted control daemon to answer', 60, async () => history());
    expect(after.filter((r) => r.migrationId === first.migrationId)).toHaveLength(1);

    // Stable: after the last migration ended, three evaluations in a row proposed nothing.
    const settled = await until('three evaluations without a move after the last migration', 300, async () => {
      const ev = await events();
      const lastMigration = ev.map((e) => e.kind).lastIndexOf('migration');
      const later = ev.slice(lastMigration + 1).filter((e) => e.kind === 'evaluation');
      return later.length >= 3 && later.slice(-3).every((e) => e.proposed === 0) ? ev : undefined;
    });
    const records = await ours();
    expect(records.length).toBeGreaterThanOrEqual(1);
    expect(new Set(records.map((r) => r.migrationId)).size).toBe(records.length);
    for (const r of records) expect(r.outcome, JSON.stringify(r)).toBe('done');
    // No ping-pong: no container moved more than once.
    const moves = new Map<string, number>();
    for (const r of records) moves.set(r.herdId, (moves.get(r.herdId) ?? 0) + 1);
    expect([...moves.values()].every((n) => n === 1), JSON.stringify(records)).toBe(true);
    // Exactly once: every workload runs on one host, and some now run on h2.
    const where = await Promise.all(NAMES.map(async (n) => (await placements(layout, n)).filter((p) => p.running)));
    for (const w of where) expect(w).toHaveLength(1);
    expect(where.filter((w) => w[0]?.hostId === 'h2').length).toBeGreaterThanOrEqual(1);
    // Every move carries its reason in the history; those sent since the restart were announced as events.
    for (const r of records) expect(r.reason ?? '', JSON.stringify(r)).toMatch(/demands [\d.]+ of 1 core/);
    for (const r of records.filter((x) => x.migrationId !== first.migrationId)) expect(settled.some((e) => e.kind === 'move' && e.container === r.name)).toBe(true);
  });
});
