import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HistoryStore, type MigrationRecord } from './history-store.ts';

const rec = (id: string): MigrationRecord => ({ migrationId: id, herdId: `h-${id}`, name: `c-${id}`, from: 'h1', to: 'h2', manual: false, reason: 'test', startedAt: `2026-11-26T12:00:0${id}.000Z` });

describe('migration history', () => {
  it('keeps started and ended records across a reopen; the first outcome wins', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'herd-history-')), 'history.jsonl');
    const h = new HistoryStore(file);
    h.started(rec('1'));
    h.started(rec('1'));
    h.started(rec('2'));
    h.ended('1', 'done', { learnedBy: 'reply', at: '2026-11-26T12:00:05.000Z' });
    h.ended('1', 'failed', { learnedBy: 'events' });
    const again = new HistoryStore(file);
    expect(again.all().map((r) => [r.migrationId, r.outcome])).toEqual([['1', 'done'], ['2', undefined]]);
    expect(again.open().map((r) => r.migrationId)).toEqual(['2']);
  });

  it('survives a torn last line and lines of another shape: the next record is readable after another reopen', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'herd-history-')), 'history.jsonl');
    new HistoryStore(file).started(rec('1'));
    appendFileSync(file, 'null\n{"type":"started"}\n{"type":"ended","migrationId":"1","endedAt":"x","outcome":"exploded"}\n{"type":"started","record":{"migr');
    const h = new HistoryStore(file);
    expect(h.skippedLines).toBe(4);
    h.started(rec('2'));
    expect(readFileSync(file, 'utf8').endsWith('\n')).toBe(true);
    expect(new HistoryStore(file).all().map((r) => r.migrationId)).toEqual(['1', '2']);
  });

  it('starts empty without a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-history-'));
    writeFileSync(join(dir, 'other'), '');
    expect(new HistoryStore(join(dir, 'sub', 'history.jsonl')).all()).toEqual([]);
  });
});
