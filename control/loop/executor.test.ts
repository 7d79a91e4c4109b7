/** The executor's bookkeeping around the history's durable write, without a broker. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../protocol/log.ts';
import type { Move } from '../../policies/model.ts';
import type { MigrationEvent } from '../../protocol/messages.ts';
import { Executor } from './executor.ts';
import { HistoryStore } from './history-store.ts';

const move: Move = { herdId: 'c0ffee000001', name: 'web', from: 'h1', to: 'h2', policy: 'cpu-greedy', reasonCode: 'CPU_OVERLOAD', reason: 'test' } as Move;
const session = { client: {}, rpc: {}, view: { findContainer: () => ({}), requireOnline: () => undefined } } as never;

describe('Executor', () => {
  it('counts a move in flight while its history line is written; a line that cannot be written: not sent, not in flight, not recorded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-executor-'));
    const file = join(dir, 'history.jsonl');
    const history = new HistoryStore(file);
    // The file's place taken by a directory: the started line fails (EISDIR), after a moment on the thread pool.
    mkdirSync(file);
    const ex = new Executor({ session, history, log: silentLogger, fsMode: 'diff', timeoutMs: 60_000, onEnded: () => undefined });
    const pending = ex.execute(move, 'e-1');
    // Before the write has ended: an evaluation now must see the container as moving.
    expect(ex.inFlight().map((m) => [m.herdId, m.sourceHost, m.targetHost])).toEqual([[move.herdId, 'h1', 'h2']]);
    const result = await pending;
    expect(result).toEqual({ notSent: expect.stringMatching(/history could not be written: .*EISDIR/) });
    expect(ex.inFlight()).toEqual([]);
    expect(history.all()).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a move stopped (paused, closed) while its history line was written is not sent: recorded as failed, saying why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-executor-'));
    const history = new HistoryStore(join(dir, 'history.jsonl'));
    const ended: string[] = [];
    const ex = new Executor({ session, history, log: silentLogger, fsMode: 'diff', timeoutMs: 60_000, onEnded: (r) => ended.push(`${r.name} ${r.outcome}`) });
    let paused = false;
    const pending = ex.execute(move, 'e-1', () => (paused ? 'the loop was paused' : undefined));
    paused = true; // while the line is written
    expect(await pending).toEqual({ notSent: 'the loop was paused' });
    expect(ex.inFlight()).toEqual([]);
    expect(ended).toEqual(['web failed']);
    await history.flush();
    expect(new HistoryStore(join(dir, 'history.jsonl')).all()).toEqual([expect.objectContaining({ name: 'web', outcome: 'failed', error: expect.objectContaining({ code: 'CONFLICT', message: 'not sent: the loop was paused' }) })]);
    rmSync(dir, { recursive: true, force: true });
  });
  it('a manual migration reported in doubt stays in flight until its source says how it ended', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-executor-'));
    const history = new HistoryStore(join(dir, 'history.jsonl'));
    const ended: string[] = [];
    const ex = new Executor({ session, history, log: silentLogger, fsMode: 'diff', timeoutMs: 60_000, onEnded: (r) => ended.push(`${r.name} ${r.outcome}`) });
    const event = (phase: MigrationEvent['phase'], status: MigrationEvent['status'], extra: Partial<MigrationEvent> = {}): MigrationEvent => ({ v: 1, migrationId: 'm-1', herdId: move.herdId, container: 'web', sourceHost: 'h1', targetHost: 'h2', phase, status, at: new Date().toISOString(), ...extra });
    ex.observe(event('accepted', 'started'));
    ex.observe(event('failed', 'failed', { error: { code: 'IN_DOUBT', message: 'the target cannot be asked', retryable: true } }));
    expect(ex.inFlight().map((m) => m.migrationId)).toEqual(['m-1']);
    expect(ended).toEqual([]);
    // The source's reconciler settles it later and says so.
    ex.observe(event('done', 'finished', { detail: 'resolved: fenced over SSH' }));
    expect(ex.inFlight()).toEqual([]);
    expect(ended).toEqual(['web done']);
    await history.flush();
    rmSync(dir, { recursive: true, force: true });
  });
});
