/**
 * The compute daemon's Prometheus families. Migrations are counted where they end (the
 * migration store's tombstone: both roles, every outcome, crashes settled by the reconciler
 * included); phase durations and bytes come from a done migration's timings.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { MigrationResult } from '../protocol/messages.ts';
import type { MigrationRecord, MigrationStore, Tombstone } from './migration/migration-store.ts';
import type { SerialQueue } from './migration/serial-queue.ts';

/**
 * Downtime-scale buckets, in seconds: fine from 0.1 to 2 s, where Herd's downtimes and most
 * phases fall (a 0.8 s and a 1.8 s downtime must not share a bucket), coarse up to a minute
 * (longer lands in +Inf). The control daemon's downtime histogram uses the same buckets.
 */
export const PHASE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60];

export function registerComputeMetrics(registry: Registry, deps: { store: MigrationStore; criu: SerialQueue }): void {
  const migrations = new Counter({
    name: 'herd_migrations_total',
    help: 'Migrations this host ended, by its role, the outcome (done, rolled-back, restarted, lost, refused, aborted, committed) and the filesystem mode',
    labelNames: ['role', 'outcome', 'fs_mode'] as const,
    registers: [registry],
  });
  const phases = new Histogram({
    name: 'herd_migration_phase_seconds',
    help: 'Durations of the phases of done migrations this host was the source of (precopy: the filesystem before the freeze, checkpoint, transfer, restore, downtime: frozen to running on the target, total)',
    labelNames: ['phase'] as const,
    buckets: PHASE_BUCKETS,
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'herd_migration_bytes_total',
    help: 'Bytes moved by done migrations this host was the source of: checkpoint images and filesystem (upper dir or whole filesystem)',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  const rollbacks = new Counter({
    name: 'herd_rollbacks_total',
    help: 'Migrations this host was the source of that ended with the container back here (rolled back or restarted), by the error code that caused it',
    labelNames: ['cause'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'herd_criu_queue_length',
    help: 'CRIU operations (checkpoint, restore) running or waiting on this host',
    registers: [registry],
    collect() {
      this.set(deps.criu.length);
    },
  });
  new Gauge({
    name: 'herd_migrations_in_flight',
    help: 'Migrations in flight on this host, by role',
    labelNames: ['role'] as const,
    registers: [registry],
    collect() {
      const records = deps.store.list();
      for (const role of ['source', 'target'] as const) this.set({ role }, records.filter((r) => r.role === role).length);
    },
  });

  deps.store.onFinish = (t: Tombstone, record: MigrationRecord | undefined) => {
    const result = t.role === 'source' && t.outcome === 'done' ? (t.result as MigrationResult | undefined) : undefined;
    migrations.inc({ role: t.role, outcome: t.outcome, fs_mode: result?.fsMode ?? record?.fsMode ?? 'unknown' });
    if (t.role === 'source' && (t.outcome === 'rolled-back' || t.outcome === 'restarted')) rollbacks.inc({ cause: t.error?.code ?? 'unknown' });
    const timings = result?.timings;
    if (timings === undefined) return;
    for (const [phase, ms] of [['checkpoint', timings.checkpointMs], ['transfer', timings.transferMs], ['restore', timings.restoreMs], ['downtime', timings.downtimeMs], ['total', timings.totalMs]] as const) phases.observe({ phase }, ms / 1000);
    if (timings.precopyMs !== undefined) phases.observe({ phase: 'precopy' }, timings.precopyMs / 1000);
    bytes.inc({ kind: 'checkpoint' }, timings.checkpointBytes);
    bytes.inc({ kind: 'filesystem' }, timings.filesystemBytes);
    if (timings.precopyBytes !== undefined) bytes.inc({ kind: 'precopy' }, timings.precopyBytes);
  };
}
