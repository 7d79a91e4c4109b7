import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HistoryStore, type MigrationRecord } from './history-store.ts';

const rec = (id: string): MigrationRecord => ({ migrationId: id, herdId: `h-${id}`, name: `c-${id}`, from: 'h1', to: 'h2', manual: false, reason: 'test', startedAt: `2026-11-26T12:00:0${id}.000Z` });

describe('migration history', () => {
  it('keeps started and ended records across a reopen; the first outcome wins', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'herd-history-')), 'history.jsonl');
    const h = new HistoryStore(file);
    await h.started(rec('1'));
    // Not awaited one by one: the lines still land in the order they were recorded.
    void h.started(rec('1'));
    void h.started(rec('2'));
    h.ended('1', 'done', { learnedBy: 'reply', at: '2026-11-26T12:00:05.000Z' });
    h.ended('1', 'failed', { learnedBy: 'events' });
    expect(h.get('1')?.outcome).toBe('done');
    await h.flush();
    const again = new HistoryStore(file);
    expect(again.all().map((r) => [r.migrationId, r.outcome])).toEqual([['1', 'done'], ['2', undefined]]);
    expect(again.open().map((r) => r.migrationId)).toEqual(['2']);
  });

  it('survives a torn last line and lines of another shape: the next record is readable after another reopen', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'herd-history-')), 'history.jsonl');
    await new HistoryStore(file).started(rec('1'));
    appendFileSync(file, 'null\n{"type":"started"}\n{"type":"ended","migrationId":"1","endedAt":"x","outcome":"exploded"}\n{"type":"started","record":{"migr');
    const h = new HistoryStore(file);
    expect(h.skippedLines).toBe(4);
    await h.started(rec('2'));
    expect(readFileSync(file, 'utf8').endsWith('\n')).toBe(true);
    expect(new HistoryStore(file).all().map((r) => r.migrationId)).toEqual(['1', '2']);
  });

  it('a started line that cannot be written rejects, is reported, and leaves no record behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-history-'));
    const errors: Error[] = [];
    const h = new HistoryStore(join(dir, 'history.jsonl'), (err) => errors.push(err));
    // The file's place taken by a directory: every append fails (EISDIR).
    mkdirSync(join(dir, 'history.jsonl'));
    await expect(h.started(rec('1'))).rejects.toThrow(/EISDIR/);
    expect(h.get('1')).toBeUndefined();
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EISDIR']);
    rmSync(join(dir, 'history.jsonl'), { recursive: true });
    // The queue goes on after a failed write.
    await h.started(rec('2'));
    expect(new HistoryStore(join(dir, 'history.jsonl')).all().map((r) => r.migrationId)).toEqual(['2']);
  });

  it('starts empty without a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-history-'));
    writeFileSync(join(dir, 'other'), '');
    expect(new HistoryStore(join(dir, 'sub', 'history.jsonl')).all()).toEqual([]);
  });
});
