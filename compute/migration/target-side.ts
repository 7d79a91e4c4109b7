/**
 * The target side of a migration: check that this host can take the container, create
 * the target container (not started) while the source checkpoints, restore it from the
 * received checkpoint, and abort (remove everything prepare made) on request.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { announceAddress } from '../runtime/announce-address.ts';
import { HerdError } from '../../protocol/errors.ts';
import type { CommandArgs, PrepareResult, TargetRestoreResult } from '../../protocol/messages.ts';
import { HERD_MIGRATION_LABEL } from '../runtime/container-runtime.ts';
import type { TargetRecord } from './migration-store.ts';
import { corruptImages } from './faults.ts';
import type { MigrationContext } from './context.ts';

/** Headroom kept free on the target beyond the estimated size. */
const DISK_HEADROOM_BYTES = 256 * 1024 * 1024;

export async function checkTarget(ctx: MigrationContext, args: CommandArgs<'migration.check'>): Promise<{ freeBytes: number }> {
  const { runtime, hostId } = ctx;
  if (!(await runtime.hasImage(args.spec.image))) {
    throw new HerdError('IMAGE_MISSING', `image "${args.spec.image}" is missing on target host ${hostId}: load it there first (docker save | docker load)`);
  }
  const existing = await runtime.inspect(args.spec.name, hostId).catch((err: unknown) => {
    if (err instanceof HerdError && err.code === 'UNKNOWN_CONTAINER') return undefined;
    if (err instanceof HerdError && err.code === 'NOT_MANAGED') return { name: args.spec.name, herdId: '(unmanaged)' };
    throw err;
  });
  if (existing !== undefined) {
    throw new HerdError('CONFLICT', `target host ${hostId} already has a container named "${args.spec.name}" (herd id ${existing.herdId})`);
  }
  const freeBytes = await runtime.freeBytes();
  if (freeBytes < args.requiredBytes + DISK_HEADROOM_BYTES) {
    throw new HerdError(
      'INSUFFICIENT_DISK',
      `target host ${hostId} has ${(freeBytes / 2 ** 20).toFixed(0)} MiB free; the migration needs about ${(args.requiredBytes / 2 ** 20).toFixed(0)} MiB plus ${(DISK_HEADROOM_BYTES / 2 ** 20).toFixed(0)} MiB headroom`,
    );
  }
  return { freeBytes };
}

export async function prepareTarget(ctx: MigrationContext, args: CommandArgs<'migration.prepare'>): Promise<PrepareResult> {
  const { runtime, store, hostId, log } = ctx;
  const now = new Date().toISOString();
  const record: TargetRecord = {
    role: 'target',
    phase: 'preparing',
    migrationId: args.migrationId,
    herdId: args.spec.herdId,
    container: args.spec.name,
    sourceHost: args.sourceHost,
    targetHost: hostId,
    fsMode: args.fsMode,
    checkpointId: args.checkpointId,
    startedAt: now,
    updatedAt: now,
  };
  await store.save(record);
  try {
    const targetDockerId = await runtime.create(args.spec, { [HERD_MIGRATION_LABEL]: args.migrationId });
    record.targetDockerId = targetDockerId;
    const details = await runtime.inspect(targetDockerId, hostId);
    if (details.upperDir === undefined) throw new HerdError('DOCKER_FAILED', 'the target container has no overlay upper dir (storage driver must be overlay2)');
    const checkpointDir = runtime.checkpointPath(targetDockerId, args.checkpointId);
    mkdirSync(checkpointDir, { recursive: true });
    record.checkpointDir = checkpointDir;
    record.phase = 'prepared';
    await store.save(record);
    log.info({ migrationId: args.migrationId, targetDockerId }, 'target prepared');
    return { targetDockerId, checkpointDir, upperDir: details.upperDir };
  } catch (err) {
    await abortTarget(ctx, { migrationId: args.migrationId, reason: 'prepare failed' });
    throw err;
  }
}

export async function restoreTarget(ctx: MigrationContext, args: CommandArgs<'migration.restore'>): Promise<TargetRestoreResult> {
  const { runtime, store, log } = ctx;
  const record = store.get('target', args.migrationId);
  if (record?.targetDockerId === undefined || record.phase === 'preparing') {
    throw new HerdError('CONFLICT', `migration ${args.migrationId} was not prepared on host ${ctx.hostId}`);
  }
  record.phase = 'restoring';
  await store.save(record);
  const targetDockerId = record.targetDockerId;
  if (ctx.faults().has('corrupt-images-in-transit') && record.checkpointDir !== undefined) corruptImages(record.checkpointDir);
  const started = performance.now();
  await ctx.criu.run(() => runtime.startFromCheckpoint(targetDockerId, record.checkpointId));
  const restoreMs = performance.now() - started;
  const runningAt = new Date().toISOString();
  void announceAddress(ctx.runtime, targetDockerId, ctx.hostId, ctx.log); // not part of the restore: do not wait
  // The images are no longer needed: leave no checkpoint files behind.
  await runtime.deleteCheckpoint(targetDockerId, record.checkpointId).catch(() => undefined);
  if (record.checkpointDir !== undefined) rmSync(record.checkpointDir, { recursive: true, force: true });
  store.remove('target', args.migrationId);
  void ctx.publishContainers();
  log.info({ migrationId: args.migrationId, restoreMs: Math.round(restoreMs) }, 'target restored');
  void ctx.publishContainers();
  return { restoreMs, runningAt };
}

/** Removes what prepare made. Idempotent; safe after a crash (reads the record from disk). */
export async function abortTarget(ctx: MigrationContext, args: CommandArgs<'migration.abort'>): Promise<{ removed: boolean }> {
  const { runtime, store, log } = ctx;
  const record = store.get('target', args.migrationId);
  // By label, not only by record: a restore that succeeded after the source gave up
  // (its reply lost) left no record but must not leave a second copy running.
  const dockerIds = new Set(await runtime.findByMigration(args.migrationId));
  if (record?.targetDockerId !== undefined) dockerIds.add(record.targetDockerId);
  for (const id of dockerIds) await runtime.remove(id, true);
  if (record?.checkpointDir !== undefined) rmSync(record.checkpointDir, { recursive: true, force: true });
  store.remove('target', args.migrationId);
  void ctx.publishContainers();
  if (record !== undefined || dockerIds.size > 0) {
    log.info({ migrationId: args.migrationId, reason: args.reason, removed: dockerIds.size }, 'target aborted');
    void ctx.publishContainers();
  }
  return { removed: dockerIds.size > 0 };
}
