/**
 * How a source ends a migration, used both by the migration itself and by the reconciler
 * after a crash. The one rule: once the restore request may have reached the target, the
 * source resumes its own copy only after the target has confirmed (or been fenced so)
 * that its copy does not run and never will. Until then the migration is in doubt and the
 * container stays frozen: down for a while, never twice.
 */
import { HerdError, toHerdError } from '../../protocol/errors.ts';
import type { AbortResult, MigrationEvent, MigrationPhase, MigrationResult } from '../../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import { isNoReply } from '../../protocol/rpc.ts';
import type { MigrationContext } from './context.ts';
import { corruptImages } from './faults.ts';
import type { SourceRecord } from './migration-store.ts';
import { killRuncJobs, sweepTempDirsSoon, waitForRuncJobs } from './runc-jobs.ts';

const ABORT_TIMEOUT_MS = 20_000;
const COMMIT_TIMEOUT_MS = 10_000;

export function migrationEvent(ctx: MigrationContext, record: SourceRecord, phase: MigrationPhase, status: MigrationEvent['status'], extra: Partial<MigrationEvent> = {}): void {
  const event: MigrationEvent = {
    v: PROTOCOL_VERSION,
    migrationId: record.migrationId,
    herdId: record.herdId,
    container: record.container,
    sourceHost: record.sourceHost,
    targetHost: record.targetHost,
    phase,
    status,
    at: new Date().toISOString(),
    ...extra,
  };
  ctx.log.info({ migrationId: record.migrationId, phase, status, durationMs: event.durationMs, detail: event.detail }, `migration ${phase} ${status}`);
  // Not awaited: events must not stretch the downtime; the MQTT client keeps their order.
  ctx.publishEvent(event).catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'cannot publish migration event'));
}

/** Tells the target to abort (it refuses when its copy runs). Undefined when it did not answer. */
export async function askTargetToAbort(ctx: MigrationContext, record: SourceRecord, reason: string): Promise<AbortResult | undefined> {
  if (ctx.view.host(record.targetHost)?.state === 'offline') return undefined;
  try {
    return await ctx.rpc.request<AbortResult>(record.targetHost, 'migration.abort', { migrationId: record.migrationId, reason }, { timeoutMs: ABORT_TIMEOUT_MS });
  } catch (err) {
    ctx.log.warn({ migrationId: record.migrationId, err: (err as Error).message }, 'the target did not answer the abort');
    return undefined;
  }
}

export type Settled = 'rolled-back' | 'restarted' | 'rolled-forward' | 'in-doubt' | 'lost';

/**
 * Puts the container back to running here, from its checkpoint when there is one (its
 * state continues), otherwise by a plain start (state lost: "restarted"). Only for a
 * migration whose target copy is known not to run.
 */
export async function rollBackSource(ctx: MigrationContext, record: SourceRecord, cause?: HerdError, how?: string): Promise<Settled> {
  const { runtime } = ctx;
  if (record.phase !== 'rolling-back') {
    record.phase = 'rolling-back';
    await ctx.store.save(record);
  }
  migrationEvent(ctx, record, 'rollback', 'started');
  // A dump Docker or runc still runs for us (our daemon died mid-checkpoint) ends first.
  if (!(await waitForRuncJobs(record.sourceDockerId, 120_000))) killRuncJobs(record.sourceDockerId);
  const now = await runtime.inspect(record.sourceDockerId, ctx.hostId).catch((err: unknown) => {
    if (err instanceof HerdError && err.code === 'UNKNOWN_CONTAINER') return undefined;
    throw err; // Docker down: retried by the reconciler, nothing decided
  });
  let outcome: Settled;
  let detail: string;
  let localError: HerdError | undefined;
  if (now === undefined) {
    outcome = 'lost';
    detail = `the source container ${record.sourceDockerId.slice(0, 12)} is gone from ${ctx.hostId} (removed outside Herd)`;
  } else if (now.running) {
    outcome = 'rolled-back';
    detail = `still running on ${ctx.hostId} (it was never stopped)`;
    // Frozen for a dump that never began (the daemon died in between): it runs again.
    if (now.state !== 'paused' && (await runtime.thawAfterCheckpoint(record.sourceDockerId))) detail = `still running on ${ctx.hostId} (thawed: a checkpoint had frozen it)`;
  } else {
    const checkpointPath = runtime.checkpointPath(record.sourceDockerId, record.checkpointId);
    if (ctx.faults().has('fail-local-restore')) {
      try {
        corruptImages(checkpointPath);
      } catch {
        // no images to damage
      }
    }
    try {
      await ctx.criu.run(() => runtime.startFromCheckpoint(record.sourceDockerId, record.checkpointId), { onTimeout: () => killRuncJobs(record.sourceDockerId) });
      outcome = 'rolled-back';
      detail = `restored on ${ctx.hostId} from its checkpoint`;
      sweepTempDirsSoon((dir) => ctx.log.info({ dir }, "removed containerd's restore temp dir"));
    } catch (err) {
      localError = toHerdError(err, 'RESTORE_FAILED');
      await waitForRuncJobs(record.sourceDockerId, 60_000);
      const after = await runtime.inspect(record.sourceDockerId, ctx.hostId);
      if (after.running) {
        outcome = 'rolled-back';
        detail = `restored on ${ctx.hostId} from its checkpoint (the call failed, the container runs)`;
        localError = undefined;
      } else {
        ctx.log.error({ migrationId: record.migrationId, err: localError.message }, 'local restore failed: restarting the container from scratch');
        await runtime.start(record.sourceDockerId);
        outcome = 'restarted';
        detail = `restarted on ${ctx.hostId} (memory state lost: ${localError.message})`;
      }
    }
  }
  if (how !== undefined) detail = `${detail} (${how})`;
  if (record.restartPolicy !== undefined && outcome !== 'lost') {
    await runtime.setRestartPolicy(record.sourceDockerId, record.restartPolicy).catch((err: unknown) => ctx.log.error({ migrationId: record.migrationId, err: (err as Error).message }, 'could not put the restart policy back'));
  }
  await runtime.deleteCheckpoint(record.sourceDockerId, record.checkpointId).catch(() => undefined);
  const error = cause === undefined ? undefined : cause.toWire();
  await ctx.store.finish('source', record.migrationId, {
    outcome,
    container: record.container,
    herdId: record.herdId,
    sourceHost: record.sourceHost,
    targetHost: record.targetHost,
    detail,
    ...(error === undefined ? {} : { error }),
  });
  migrationEvent(ctx, record, 'rollback', outcome === 'rolled-back' ? 'finished' : 'failed', { detail, ...(localError === undefined ? {} : { error: localError.toWire() }) });
  void ctx.publishContainers();
  return outcome;
}

/**
 * The final event a live migration publishes (`done` or `failed`), for one settled outside it
 * (`by`: the reconciler after a restart, an operator's rollback): whoever follows its events
 * (the control loop, a CLI, the dashboard) learns its end from them. Its tombstone says how.
 */
export function announceEnd(ctx: MigrationContext, record: SourceRecord, settled: Settled, by: string): void {
  if (settled === 'in-doubt') return;
  const tombstone = ctx.store.tombstone('source', record.migrationId);
  const detail = tombstone?.detail ?? settled;
  if (settled === 'rolled-forward') return migrationEvent(ctx, record, 'done', 'finished', { detail });
  const code = settled === 'rolled-back' ? 'ROLLED_BACK' : settled === 'restarted' ? 'RESTORE_FAILED' : 'CONFLICT';
  const cause = tombstone?.error === undefined ? '' : ` [${tombstone.error.code}: ${tombstone.error.message}]`;
  const error = new HerdError(code, `migration ${record.migrationId} was settled by ${by}: ${detail}${cause}`);
  migrationEvent(ctx, record, 'failed', 'failed', { error: error.toWire(), detail });
}

/** The target runs the container: remove the source's copy, tell the target to commit. */
export async function rollForward(ctx: MigrationContext, record: SourceRecord, result?: MigrationResult, how?: string): Promise<Settled> {
  if (record.phase !== 'restored') {
    record.phase = 'restored';
    await ctx.store.save(record);
  }
  migrationEvent(ctx, record, 'cleanup', 'started');
  await waitForRuncJobs(record.sourceDockerId, 60_000);
  await ctx.runtime.remove(record.sourceDockerId, true); // throws when Docker is down: retried by the reconciler
  for (const name of record.volumes ?? []) {
    // The contents live on the target now; a copy left here would only go stale (and clash with a move back).
    await ctx.runtime.removeVolume(name).catch((err: unknown) => ctx.log.warn({ migrationId: record.migrationId, volume: name, err: (err as Error).message }, 'could not remove the migrated volume from the source'));
  }
  await ctx.store.finish('source', record.migrationId, {
    outcome: 'done',
    container: record.container,
    herdId: record.herdId,
    sourceHost: record.sourceHost,
    targetHost: record.targetHost,
    detail: `runs on ${record.targetHost}${how === undefined ? '' : ` (${how})`}`,
    ...(result === undefined ? {} : { result }),
  });
  void ctx.publishContainers();
  // The target commits by itself when it later learns the source is done; this only speeds it up.
  await ctx.rpc.request(record.targetHost, 'migration.commit', { migrationId: record.migrationId }, { timeoutMs: COMMIT_TIMEOUT_MS }).catch((err: unknown) => {
    ctx.log.warn({ migrationId: record.migrationId, err: (err as Error).message }, 'the target did not confirm the commit; it commits when it asks this host');
  });
  migrationEvent(ctx, record, 'cleanup', 'finished');
  return 'rolled-forward';
}

/**
 * Settles a migration whose restore request may have reached the target: asks the target
 * (abort unless it runs), and when its daemon cannot answer, fences it over SSH. Rolls
 * forward or back on a definite answer; otherwise leaves the record in doubt.
 */
export async function resolveInDoubt(ctx: MigrationContext, record: SourceRecord, cause?: HerdError, why = 'the restore outcome is unknown'): Promise<Settled> {
  migrationEvent(ctx, record, 'resolve', 'started', { detail: `${why}: asking the target` });
  let answer: AbortResult | undefined = await askTargetToAbort(ctx, record, 'the source resolves a restore in doubt');
  let how = 'the target answered';
  if (answer === undefined) {
    try {
      const fenced = await ctx.fence(record.targetHost, record.migrationId);
      answer = { state: fenced === 'running' ? 'running' : 'aborted' };
      how = 'fenced over SSH';
    } catch (err) {
      ctx.log.warn({ migrationId: record.migrationId, err: (err as Error).message }, 'cannot fence the target');
    }
  }
  if (answer === undefined) {
    migrationEvent(ctx, record, 'resolve', 'failed', { detail: `no answer from ${record.targetHost} and no fence: the container stays frozen until the target can be asked` });
    return 'in-doubt';
  }
  migrationEvent(ctx, record, 'resolve', 'finished', { detail: `${how}: target ${answer.state}` });
  return answer.state === 'aborted' ? rollBackSource(ctx, record, cause, `resolved: ${how}`) : rollForward(ctx, record, undefined, `resolved: ${how}`);
}

/** True when an error from the restore request leaves its outcome unknown. */
export function restoreOutcomeUnknown(err: unknown): boolean {
  return isNoReply(err) || (err instanceof HerdError && (err.code === 'HOST_OFFLINE' || err.code === 'IN_DOUBT' || err.code === 'TIMEOUT' || err.code === 'BROKER_UNAVAILABLE'));
}
