import { existsSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MigrationStore, type SourceRecord } from './migration-store.ts';

const record = (migrationId: string): SourceRecord => ({
  role: 'source',
  phase: 'checkpointing',
  migrationId,
  herdId: 'c0ffee000001',
  container: 'counter',
  sourceHost: 'h1',
  targetHost: 'h2',
  fsMode: 'diff',
  checkpointId: `herd-${migrationId}`,
  sourceDockerId: 'abc',
  startedAt: '2026-11-26T12:00:00.000Z',
  updatedAt: '2026-11-26T12:00:00.000Z',
});

describe('MigrationStore', () => {
  it('keeps records until finished, then a tombstone with the outcome', async () => {
    const store = new MigrationStore(mkdtempSync(`${tmpdir()}/herd-store-`));
    await store.save(record('m1'));
    expect(store.list().map((r) => r.migrationId)).toEqual(['m1']);
    await store.finish('source', 'm1', { outcome: 'rolled-back', detail: 'resumed' });
    expect(store.list()).toEqual([]);
    expect(store.get('source', 'm1')).toBeUndefined();
    expect(store.tombstone('source', 'm1')).toMatchObject({ outcome: 'rolled-back', detail: 'resumed' });
    expect(readdirSync(store.dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('quarantines and reports a record that is not valid JSON or not a record, instead of skipping it silently', async () => {
    const state = mkdtempSync(`${tmpdir()}/herd-store-`);
    const store = new MigrationStore(state);
    await store.save(record('good'));
    writeFileSync(`${store.dir}/torn.source.json`, '{"role": "source", "phase": "check');
    writeFileSync(`${store.dir}/alien.target.json`, JSON.stringify({ role: 'target', phase: 'dancing', migrationId: 'x' }));
    expect(store.list().map((r) => r.migrationId)).toEqual(['good']);
    const bad = store.takeQuarantined();
    expect(bad.map((b) => b.file).sort()).toEqual(['alien.target.json', 'torn.source.json']);
    expect(bad.every((b) => b.reason.length > 0)).toBe(true);
    expect(readdirSync(`${state}/migrations-quarantine`)).toHaveLength(2);
    expect(store.takeQuarantined()).toEqual([]);
  });

  it('removes old tombstones and crash-torn temp files (however recent: not being written), keeps recent tombstones', async () => {
    const store = new MigrationStore(mkdtempSync(`${tmpdir()}/herd-store-`));
    await store.finish('target', 'old', { outcome: 'committed' });
    await store.finish('target', 'new', { outcome: 'aborted' });
    writeFileSync(`${store.dir}/x.source.json.tmp`, '{');
    const longAgo = new Date(Date.now() - 8 * 86_400_000);
    utimesSync(`${store.dir}/old.target.done.json`, longAgo, longAgo);
    expect(store.collectGarbage()).toBe(2);
    expect(existsSync(`${store.dir}/x.source.json.tmp`)).toBe(false);
    expect(existsSync(`${store.dir}/new.target.done.json`)).toBe(true);
    expect(store.tombstone('target', 'old')).toBeUndefined();
  });
});
