import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { newRegistry, serveMetrics } from '../protocol/metrics-endpoint.ts';
import { silentLogger } from '../protocol/log.ts';
import type { MigrationResult } from '../protocol/messages.ts';
import { registerComputeMetrics } from './compute-metrics.ts';
import { MigrationStore, type SourceRecord } from './migration/migration-store.ts';
import { SerialQueue } from './migration/serial-queue.ts';

const record = (migrationId: string, fsMode: SourceRecord['fsMode']): SourceRecord => ({
  role: 'source',
  phase: 'checkpointing',
  migrationId,
  herdId: 'c0ffee000001',
  container: 'counter',
  sourceHost: 'h1',
  targetHost: 'h2',
  fsMode,
  checkpointId: `herd-${migrationId}`,
  sourceDockerId: 'abc',
  startedAt: '2026-11-26T12:00:00.000Z',
  updatedAt: '2026-11-26T12:00:00.000Z',
});

const result: MigrationResult = {
  migrationId: 'm1',
  herdId: 'c0ffee000001',
  container: 'counter',
  sourceHost: 'h1',
  targetHost: 'h2',
  fsMode: 'diff',
  timings: { checkpointMs: 300, transferMs: 20, restoreMs: 400, totalMs: 900, downtimeMs: 700, checkpointBytes: 200_000, filesystemBytes: 10_000 },
};

describe('compute metrics', () => {
  it('after migrations end: the families with their types and labels, served on GET /metrics', async () => {
    const store = new MigrationStore(mkdtempSync(`${tmpdir()}/herd-metrics-`));
    const registry = newRegistry();
    registerComputeMetrics(registry, { store, criu: new SerialQueue() });
    await store.save(record('m1', 'diff'));
    await store.finish('source', 'm1', { outcome: 'done', result });
    await store.save(record('m2', 'full'));
    await store.finish('source', 'm2', { outcome: 'rolled-back', error: { code: 'TRANSFER_FAILED', message: 'link down', retryable: true } });
    await store.finish('target', 'm3', { outcome: 'aborted' });
    await store.save(record('m4', 'none'));

    const json = await registry.getMetricsAsJSON();
    const family = (name: string) => json.find((m) => m.name === name) as { type: string; values: { labels: Record<string, string | number>; value: number; metricName?: string }[] } | undefined;
    expect(family('herd_migrations_total')?.type).toBe('counter');
    expect(family('herd_migrations_total')?.values.map((v) => [v.labels, v.value])).toEqual([
      [{ role: 'source', outcome: 'done', fs_mode: 'diff' }, 1],
      [{ role: 'source', outcome: 'rolled-back', fs_mode: 'full' }, 1],
      [{ role: 'target', outcome: 'aborted', fs_mode: 'unknown' }, 1],
    ]);
    expect(family('herd_rollbacks_total')?.values.map((v) => [v.labels, v.value])).toEqual([[{ cause: 'TRANSFER_FAILED' }, 1]]);
    expect(family('herd_migration_bytes_total')?.values.map((v) => [v.labels.kind, v.value])).toEqual([['checkpoint', 200_000], ['filesystem', 10_000]]);
    const phases = family('herd_migration_phase_seconds');
    expect(phases?.type).toBe('histogram');
    const sums = Object.fromEntries(phases?.values.filter((v) => v.metricName === 'herd_migration_phase_seconds_sum').map((v) => [v.labels.phase, v.value]) ?? []);
    expect(sums).toEqual({ checkpoint: 0.3, transfer: 0.02, restore: 0.4, downtime: 0.7, total: 0.9 });
    expect(family('herd_criu_queue_length')).toMatchObject({ type: 'gauge', values: [{ value: 0 }] });
    expect(family('herd_migrations_in_flight')?.values.map((v) => [v.labels.role, v.value])).toEqual([['source', 1], ['target', 0]]);
    expect(family('process_cpu_seconds_total')?.type).toBe('counter');

    const server = await serveMetrics(registry, { host: '127.0.0.1', port: 0 }, silentLogger);
    try {
      const res = await fetch(server.url);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(text).toContain('# TYPE herd_migrations_total counter');
      expect(text).toContain('herd_migrations_total{role="source",outcome="done",fs_mode="diff"} 1');
      expect(text).toContain('# TYPE herd_migration_phase_seconds histogram');
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('buckets phases finely where downtimes fall (0.1 to 2 s), up to a minute', async () => {
    const store = new MigrationStore(mkdtempSync(`${tmpdir()}/herd-metrics-`));
    const registry = newRegistry();
    registerComputeMetrics(registry, { store, criu: new SerialQueue() });
    await store.save(record('m1', 'diff'));
    await store.finish('source', 'm1', { outcome: 'done', result: { ...result, timings: { ...result.timings, downtimeMs: 810 } } });
    await store.save(record('m2', 'diff'));
    await store.finish('source', 'm2', { outcome: 'done', result: { ...result, migrationId: 'm2', timings: { ...result.timings, downtimeMs: 1860 } } });
    const text = await registry.metrics();
    const bounds = [...text.matchAll(/herd_migration_phase_seconds_bucket\{le="([^"]+)",phase="downtime"\}/g)].map((m) => m[1]);
    expect(bounds).toEqual(['0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.75', '0.9', '1', '1.25', '1.5', '2', '3', '5', '10', '30', '60', '+Inf']);
    // 0.81 s lands in (0.75, 0.9], 1.86 s in (1.5, 2].
    expect(text).toContain('herd_migration_phase_seconds_bucket{le="0.75",phase="downtime"} 0');
    expect(text).toContain('herd_migration_phase_seconds_bucket{le="0.9",phase="downtime"} 1');
    expect(text).toContain('herd_migration_phase_seconds_bucket{le="1.5",phase="downtime"} 1');
    expect(text).toContain('herd_migration_phase_seconds_bucket{le="2",phase="downtime"} 2');
  });
});
