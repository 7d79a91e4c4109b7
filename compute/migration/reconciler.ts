/**
 * The reconciler of a compute daemon: at start and then periodically, every migration
 * this host recorded and nobody is working on is driven to its end, and what failed
 * migrations leave behind is collected:
 * - source records: before the restore request → abort the target, resume here; restore
 *   in doubt → ask the target or fence it (source-settle.ts); restored → remove the source;
 * - target records: see reconcileTarget in target-side.ts;
 * - garbage: migration copies that were never started and have no record, `herd-*`
 *   checkpoints of no in-flight migration, containerd's and runc's leaked temp dirs,
 *   old tombstones. Records that fail validation are quarantined and reported.
 * A Docker error other than "no such container" decides nothing: the record stays and
 * the next pass tries again.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { HerdError } from '../../protocol/errors.ts';
import type { MigrationStatus } from '../../protocol/messages.ts';
import type { MigrationContext } from './context.ts';
import type { MigrationRecord, SourceRecord } from './migration-store.ts';
import { removeReceivedDir } from './faults.ts';
import { removeLeakedTempDirs } from './runc-jobs.ts';
import { announceEnd, askTargetToAbort, resolveInDoubt, rollBackSource, rollForward, type Settled } from './source-settle.ts';
import { reconcileTarget } from './target-side.ts';

const STATUS_TIMEOUT_MS = 10_000;

export interface ReconcileOutcome {
  migrationId: string;
  role: MigrationRecord['role'];
  outcome: string;
}

async function reconcileSource(ctx: MigrationContext, record: SourceRecord): Promise<string> {
  const settled = await settleSource(ctx, record);
  if (!(settled === 'rolled-forward' && record.doneAnnounced === true)) announceEnd(ctx, record, settled, `${ctx.hostId}'s reconciler`);
  return settled;
}

async function settleSource(ctx: MigrationContext, record: SourceRecord): Promise<Settled> {
  if (record.phase === 'restored') return rollForward(ctx, record, undefined, 'finished by the reconciler');
  if (record.phase === 'restoring') return resolveInDoubt(ctx, record);
  // The restore was never requested (or the target already confirmed it does not run): its copy cannot run.
  if (record.phase !== 'rolling-back') await askTargetToAbort(ctx, record, 'the source rolls back an interrupted migration');
  return rollBackSource(ctx, record, new HerdError('HOST_OFFLINE', `the compute daemon of ${ctx.hostId} stopped during the migration (phase ${record.phase})`), 'rolled back by the reconciler');
}

function askSource(ctx: MigrationContext, record: MigrationRecord): () => Promise<MigrationStatus | undefined> {
  return async () => {
    if (ctx.view.host(record.sourceHost)?.state !== 'online') return undefined;
    return ctx.rpc.request<MigrationStatus>(record.sourceHost, 'migration.status', { migrationId: record.migrationId }, { timeoutMs: STATUS_TIMEOUT_MS }).catch(() => undefined);
  };
}

/** One pass over every record nobody holds. Records held by a running migration or handler are skipped. */
export async function reconcileOnce(ctx: MigrationContext): Promise<ReconcileOutcome[]> {
  const outcomes: ReconcileOutcome[] = [];
  for (const listed of ctx.store.list()) {
    const { migrationId, role } = listed;
    const job = ctx.locks.tryRun(migrationId, async () => {
      const record = ctx.store.get(role, migrationId); // re-read under the lock: it may have ended meanwhile
      if (record === undefined) return undefined;
      return record.role === 'source' ? reconcileSource(ctx, record) : reconcileTarget(ctx, record, askSource(ctx, record));
    });
    if (job === undefined) continue;
    try {
      const outcome = await job;
      if (outcome !== undefined) {
        outcomes.push({ migrationId, role, outcome });
        ctx.log.warn({ migrationId, role, phase: listed.phase, outcome }, 'reconciled an interrupted migration');
      }
    } catch (err) {
      ctx.log.error({ migrationId, role, phase: listed.phase, err: (err as Error).message }, 'reconciling a migration failed; the next pass retries');
    }
  }
  for (const bad of ctx.store.takeQuarantined()) ctx.log.error(bad, 'a migration record failed validation: moved to migrations-quarantine/ for an operator to look at');
  await collectGarbage(ctx).catch((err: unknown) => ctx.log.warn({ err: (err as Error).message }, 'garbage collection failed; the next pass retries'));
  void ctx.publishContainers();
  return outcomes;
}

/**
 * Runs `remove` for what an ended migration left, only while no handler holds the migration
 * (its lock is held while deciding) and no record names it, read now: a prepare or a source run
 * may have begun since the pass listed the records.
 */
async function ifEnded(ctx: MigrationContext, migrationId: string, checkpointId: string | undefined, remove: () => Promise<void>): Promise<void> {
  await ctx.locks.tryRun(migrationId, async () => {
    if (ctx.store.list().some((r) => r.migrationId === migrationId || r.checkpointId === checkpointId)) return;
    await remove();
  });
}

async function collectGarbage(ctx: MigrationContext): Promise<void> {
  const { runtime, store, locks, log } = ctx;
  const records = store.list();
  const active = new Set(records.map((r) => r.migrationId));
  // Target copies never started whose migration this host no longer tracks.
  for (const copy of await runtime.migrationCopies()) {
    if (copy.state !== 'created' || active.has(copy.migrationId) || locks.held(copy.migrationId)) continue;
    await ifEnded(ctx, copy.migrationId, undefined, async () => {
      if ((await runtime.removeUnlessStarted(copy.dockerId)) === 'removed') log.warn({ migrationId: copy.migrationId, dockerId: copy.dockerId.slice(0, 12) }, 'removed a migration copy that was never started');
    });
  }
  // Checkpoints of migrations no longer in flight.
  const checkpointsInUse = new Set(records.map((r) => r.checkpointId));
  const inUse = (checkpointId: string) => checkpointsInUse.has(checkpointId) || locks.held(migrationOf(checkpointId));
  for (const c of await runtime.list(ctx.hostId)) {
    for (const name of runtime.checkpointNames(c.dockerId)) {
      if (!name.startsWith('herd-') || inUse(name)) continue;
      await ifEnded(ctx, migrationOf(name), name, async () => {
        await runtime.deleteCheckpoint(c.dockerId, name);
        log.warn({ container: c.name, checkpoint: name }, 'removed a checkpoint left by an ended migration');
      });
    }
    // Images received for a direct restore (outside Docker's checkpoint dir).
    const staged = dirname(runtime.stagedImagesPath(c.dockerId, 'x'));
    for (const name of existsSync(staged) ? readdirSync(staged) : []) {
      if (inUse(name)) continue;
      await ifEnded(ctx, migrationOf(name), name, async () => {
        removeReceivedDir(`${staged}/${name}`);
        log.warn({ container: c.name, images: name }, 'removed checkpoint images left by an ended migration');
      });
    }
  }
  if (ctx.criu.length === 0) {
    for (const dir of removeLeakedTempDirs(5000)) log.info({ dir }, 'removed a leaked restore/dump temp dir');
  }
  store.collectGarbage();
}

/** The migration a checkpoint name `herd-<migration id>` belongs to. */
function migrationOf(checkpointId: string): string {
  return checkpointId.slice('herd-'.length);
}

export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly ctx: MigrationContext, private readonly intervalMs: number) {}

  /** Runs a pass now (not awaited) and then every interval; passes never overlap. */
  start(): void {
    const pass = () => {
      this.running = this.running.then(() => reconcileOnce(this.ctx)).catch((err: unknown) => this.ctx.log.error({ err: String(err) }, 'reconciler pass failed'));
    };
    pass();
    this.timer = setInterval(pass, this.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.running;
  }
}
