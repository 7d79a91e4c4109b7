/** The control loop's operator-facing state without a broker: pause reasons and the history reply's size. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../protocol/log.ts';
import type { ControlEvent } from '../../protocol/messages.ts';
import { loopConfigSchema } from '../config.ts';
import { ControlLoop, HISTORY_REPLY_BYTES } from './control-loop.ts';
import type { MigrationRecord } from './history-store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function loop(records: MigrationRecord[] = [], stateDir = mkdtempSync(join(tmpdir(), 'herd-loop-'))): { loop: ControlLoop; events: ControlEvent[]; stateDir: string } {
  dirs.push(stateDir);
  if (records.length > 0) writeFileSync(join(stateDir, 'history.jsonl'), records.map((record) => `${JSON.stringify({ type: 'started', record })}\n${JSON.stringify({ type: 'ended', migrationId: record.migrationId, endedAt: record.startedAt, outcome: 'done', learnedBy: 'reply' })}\n`).join(''));
  const events: ControlEvent[] = [];
  const session = { client: {}, rpc: {}, view: { hosts: () => [] } } as never;
  const l = new ControlLoop(loopConfigSchema.parse({ stateDir }), { session, log: silentLogger, publishEvent: (e) => events.push(e), onStateChange: () => undefined, nodeId: 'n1' });
  return { loop: l, events, stateDir };
}

const record = (i: number, reason = 'x'): MigrationRecord => ({ migrationId: `m-${i}`, herdId: `c0ffee${String(i).padStart(6, '0')}`, name: `c${i}`, from: 'h1', to: 'h2', manual: false, reason, startedAt: new Date(Date.UTC(2026, 10, 28, 0, 0, i)).toISOString() });

describe('ControlLoop', () => {
  it('a pause without a reason drops the reason of the pause before it; the last state is the one a restart reads', async () => {
    const { loop: l, stateDir } = loop();
    await l.pause('maintenance of h2');
    expect(l.status()).toMatchObject({ paused: true, pausedReason: 'maintenance of h2' });
    await l.pause(undefined);
    expect(l.status().paused).toBe(true);
    expect(l.status()).not.toHaveProperty('pausedReason');
    // Writes not awaited one by one still land in order.
    await Promise.all([l.pause('again'), l.resume(), l.pause('last')]);
    expect(l.status()).toMatchObject({ pausedReason: 'last' });
    expect(JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8'))).toEqual({ paused: true, pausedReason: 'last', draining: [] });
    expect(loop([], stateDir).loop.status()).toMatchObject({ paused: true, pausedReason: 'last' });
  });

  it('answers the history in full when it fits, else the newest records that fit, marked truncated', () => {
    const records = Array.from({ length: 50 }, (_, i) => record(i, 'r'.repeat(1000)));
    const { loop: l } = loop(records);
    const all = l.historyReply(40);
    expect(all.truncated).toBeUndefined();
    expect(all.records.map((r) => r.migrationId)).toEqual(records.slice(10).map((r) => r.migrationId));
    const size = Buffer.byteLength(JSON.stringify(all.records[0]));
    const cut = l.historyReply(40, undefined, 10 * (size + 1) + 2);
    expect(cut.truncated).toBe(true);
    expect(cut.records.map((r) => r.migrationId)).toEqual(records.slice(40).map((r) => r.migrationId));
    expect(Buffer.byteLength(JSON.stringify(cut.records))).toBeLessThanOrEqual(10 * (size + 1) + 2);
    expect(l.historyRecords(40, 'c45').map((r) => r.migrationId)).toEqual(['m-45']);
  });

  it('keeps a real reply under the broker message size', () => {
    // 8,000 records of ~1.3 kB: about 10 MB, over the 8 MiB a message may take.
    const records = Array.from({ length: 8000 }, (_, i) => record(i, 'r'.repeat(1100)));
    const { loop: l } = loop(records);
    const r = l.historyReply(100_000);
    expect(r.truncated).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThanOrEqual(HISTORY_REPLY_BYTES + 100);
    expect(r.records.at(-1)?.migrationId).toBe('m-7999');
  });
});
