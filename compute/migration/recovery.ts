/**
 * Restart safety: when a compute daemon starts, every migration it recorded as in
 * flight is finished or rolled back, so the container runs exactly once.
 * - target records: the source has given up on us (we went offline), so remove what
 *   prepare made;
 * - source records: if the target had confirmed the restore, remove the source;
 *   otherwise ask the target to abort and resume the source from its checkpoint (or
 *   restart it).
 */
import type { MigrationContext } from './context.ts';
import type { SourceRecord } from './migration-store.ts';
import { abortTarget } from './target-side.ts';

export async function recoverSource(ctx: MigrationContext, record: SourceRecord): Promise<string> {
  const { runtime, rpc, store, hostId } = ctx;
  const log = ctx.log.child({ migrationId: record.migrationId });
  if (record.phase === 'restored') {
    await runtime.remove(record.sourceDockerId, true);
    store.remove('source', record.migrationId);
    return 'finished: the target had restored; removed the source';
  }
  try {
    await rpc.request(record.targetHost, 'migration.abort', { migrationId: record.migrationId, reason: 'source restarted mid-migration' }, { timeoutMs: 10_000 });
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'target did not confirm the abort; it cleans up when it restarts');
  }
  let outcome: string;
  const container = await runtime.inspect(record.sourceDockerId, hostId).catch(() => undefined);
  if (container === undefined) {
    outcome = 'source container is gone; nothing to resume';
  } else if (container.running) {
    outcome = 'source was still running';
  } else {
    try {
      await ctx.criu.run(() => runtime.startFromCheckpoint(record.sourceDockerId, record.checkpointId));
      outcome = 'rolled back: source resumed from its checkpoint';
    } catch (err) {
      log.error({ err: (err as Error).message }, 'resume from checkpoint failed; restarting');
      await runtime.start(record.sourceDockerId);
      outcome = 'rolled back: source restarted (memory state lost)';
    }
  }
  await runtime.deleteCheckpoint(record.sourceDockerId, record.checkpointId).catch(() => undefined);
  store.remove('source', record.migrationId);
  return outcome;
}

export async function recoverMigrations(ctx: MigrationContext): Promise<void> {
  for (const record of ctx.store.list()) {
    const log = ctx.log.child({ migrationId: record.migrationId });
    try {
      if (record.role === 'target') {
        await abortTarget(ctx, { migrationId: record.migrationId, reason: 'target restarted mid-migration' });
        log.warn({ phase: record.phase }, 'recovered: removed the unfinished target container');
      } else {
        const outcome = await recoverSource(ctx, record);
        log.warn({ phase: record.phase }, `recovered: ${outcome}`);
      }
    } catch (err) {
      log.error({ err: (err as Error).message }, 'recovery of an interrupted migration failed; it is retried at the next start');
    }
  }
  void ctx.publishContainers();
}
