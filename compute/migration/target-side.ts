/**
 * The target side of a migration. The target keeps a durable record from prepare until
 * the source commits, and a tombstone after, so that every command is idempotent per
 * migration and a late one does nothing:
 *
 *   preparing → prepared → restoring → running ──commit──▶ tombstone "committed"
 *        └──────────┴───────────┴─(abort, fence, failed restore)─▶ tombstone "aborted"
 *
 * - A restore replies with an error only once this host has made sure its copy does not
 *   run and never will (tombstone "aborted"); when it cannot tell (Docker down) it replies
 *   IN_DOUBT, and the source keeps asking.
 * - An abort never touches a copy that runs or is being restored (it waits for the
 *   restore): it answers "running" and the source rolls forward instead.
 * Every handler holds the migration's lock, so that they never interleave.
 */
import { mkdirSync } from 'node:fs';
import { HerdError, toHerdError } from '../../protocol/errors.ts';
import { announceAddress } from '../runtime/announce-address.ts';
import type { AbortResult, CommandArgs, ContainerSpec, MigrationResult, MigrationStatus, PrepareResult, TargetRestoreResult } from '../../protocol/messages.ts';
import { computeClientId, senderOf } from '../../protocol/access.ts';
import { HERD_MIGRATION_LABEL } from '../runtime/container-runtime.ts';
import type { TargetRecord } from './migration-store.ts';
import { corruptImages, mountFullDisk, removeReceivedDir } from './faults.ts';
import type { MigrationContext } from './context.ts';
import { hideDeletedLowerPaths } from './overlay-deletions.ts';
import { hostReachingCapabilities, underSharedPath } from './preflight.ts';
import { carriedSecurityOpt } from '../runtime/docker-settings.ts';
import { killRuncJobs, sweepTempDirsSoon, waitForRuncJobs } from './runc-jobs.ts';
import { DIRECT_RESTORE_RUNTIME, pointCheckpointAt } from '../runtime/direct-restore.ts';

/** Headroom kept free on the target beyond the estimated size. */
const DISK_HEADROOM_BYTES = 256 * 1024 * 1024;

/**
 * A compute host may drive only the target side of migrations it is the source of (control
 * daemons and operators any): `from` is the sender's client id, which the broker binds to its
 * identity; undefined for calls made here (the reconciler, tests).
 */
function assertFromSource(ctx: MigrationContext, from: string | undefined, sourceHost: string | undefined, migrationId: string): void {
  if (from === undefined || sourceHost === undefined || senderOf(from).role !== 'compute') return;
  if (from !== computeClientId(sourceHost)) throw new HerdError('NOT_AUTHORIZED', `migration ${migrationId} on ${ctx.hostId} has source ${sourceHost}: ${from} may not drive it`);
}

/**
 * What this host accepts of a migrated container's spec, whoever sends it: what a migration
 * carries (assertCarried on the source), so that a peer cannot have a container created here
 * with more than the source could have run: binds only under this host's shared paths, no
 * other container's network namespace, no capability that reaches beyond the container, no
 * security option but no-new-privileges.
 */
function assertSpecAcceptable(ctx: MigrationContext, spec: ContainerSpec): void {
  const problems: string[] = [];
  for (const b of spec.binds ?? []) if (!underSharedPath(b.source, ctx.sharedPaths) || b.source.split('/').includes('..')) problems.push(`bind mount ${b.source} at ${b.target} is not under a path host ${ctx.hostId} shares (sharedPaths)`);
  if (spec.network?.network.startsWith('container:') === true) problems.push(`network ${spec.network.network} joins another container's network namespace`);
  const reaching = hostReachingCapabilities(spec.capAdd);
  if (reaching.length > 0) problems.push(`it adds capabilities ${reaching.join(', ')}`);
  const securityOpt = (spec.securityOpt ?? []).filter((o) => !carriedSecurityOpt(o));
  if (securityOpt.length > 0) problems.push(`it sets security options ${securityOpt.join(', ')}`);
  if (problems.length > 0) throw new HerdError('NOT_MIGRATABLE', `target host ${ctx.hostId} refuses the container "${spec.name}": ${problems.join('; ')}`);
}

function refuseIfEnded(ctx: MigrationContext, migrationId: string, what: string): void {
  const tomb = ctx.store.tombstone('target', migrationId);
  if (tomb !== undefined) throw new HerdError('CONFLICT', `migration ${migrationId} already ended on host ${ctx.hostId} (${tomb.outcome} at ${tomb.finishedAt}): ${what} refused`);
  if (ctx.store.fenced(migrationId)) throw new HerdError('CONFLICT', `migration ${migrationId} was fenced on host ${ctx.hostId} by its source: ${what} refused`);
}

export async function checkTarget(ctx: MigrationContext, args: CommandArgs<'migration.check'>): Promise<{ freeBytes: number }> {
  const { runtime, hostId } = ctx;
  refuseIfEnded(ctx, args.migrationId, 'check');
  assertSpecAcceptable(ctx, args.spec);
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
  for (const v of args.spec.volumes ?? []) {
    if ((await runtime.volumeInfo(v.name)) !== undefined) throw new HerdError('CONFLICT', `target host ${hostId} already has a volume named "${v.name}": remove or rename it there first (its contents would mix with the migrated ones)`);
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

export function prepareTarget(ctx: MigrationContext, args: CommandArgs<'migration.prepare'>, from?: string): Promise<PrepareResult> {
  return ctx.locks.run(args.migrationId, async () => {
    const { runtime, store, hostId, log } = ctx;
    // The sender must be the source it names, and the one an earlier prepare of this migration named.
    assertFromSource(ctx, from, args.sourceHost, args.migrationId);
    assertFromSource(ctx, from, recordedSource(ctx, args.migrationId), args.migrationId);
    refuseIfEnded(ctx, args.migrationId, 'prepare');
    assertSpecAcceptable(ctx, args.spec);
    const existing = store.get('target', args.migrationId);
    if (existing?.phase === 'prepared' && existing.targetDockerId !== undefined && existing.checkpointDir !== undefined && existing.upperDir !== undefined) {
      // A repeated prepare.
      const prepared = { targetDockerId: existing.targetDockerId, checkpointDir: existing.checkpointDir, restoreWith: existing.restoreWith ?? 'docker', upperDir: existing.upperDir, volumeDirs: await volumeDirs(ctx, existing.volumes ?? []) } satisfies PrepareResult;
      store.grantTransfers(args.migrationId, args.sourceHost, grantedDirs(prepared));
      return prepared;
    }
    if (existing !== undefined && existing.phase !== 'preparing') throw new HerdError('CONFLICT', `migration ${args.migrationId} is already ${existing.phase} on host ${hostId}`);
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
    // Docker creates the named volumes with the container: recorded first, so that an abort after a crash in between removes them too.
    const volumes = (args.spec.volumes ?? []).map((v) => v.name);
    if (volumes.length > 0) record.volumes = volumes;
    await store.save(record);
    try {
      // A half-made container of an earlier attempt (a crash mid-prepare) goes first.
      for (const id of await runtime.findByMigration(args.migrationId)) await runtime.removeUnlessStarted(id);
      const restoreWith = args.restoreWith ?? ctx.restorePath;
      if (restoreWith === 'direct' && ctx.restorePath !== 'direct') throw new HerdError('MISSING_DEPENDENCY', `a direct restore was asked for, but host ${hostId} restores through Docker (its Docker has no "${DIRECT_RESTORE_RUNTIME}" runtime, or docker.restoreWith is "docker")`);
      const direct = restoreWith === 'direct';
      const targetDockerId = await runtime.create(args.spec, { [HERD_MIGRATION_LABEL]: args.migrationId }, direct ? { runtime: DIRECT_RESTORE_RUNTIME } : {});
      record.targetDockerId = targetDockerId;
      await store.save(record);
      const details = await runtime.inspect(targetDockerId, hostId);
      if (details.upperDir === undefined) throw new HerdError('DOCKER_FAILED', 'the target container has no overlay upper dir (storage driver must be overlay2)');
      const checkpointDir = direct ? runtime.stagedImagesPath(targetDockerId, args.checkpointId) : runtime.checkpointPath(targetDockerId, args.checkpointId);
      mkdirSync(checkpointDir, { recursive: true });
      if (ctx.faults().has('disk-full')) mountFullDisk(checkpointDir);
      const prepared = { targetDockerId, checkpointDir, restoreWith, upperDir: details.upperDir, volumeDirs: await volumeDirs(ctx, volumes) } satisfies PrepareResult;
      Object.assign(record, { checkpointDir, restoreWith, upperDir: details.upperDir, phase: 'prepared' });
      await store.save(record);
      // Once prepared (the reconciler removes the grant of a migration that is not).
      store.grantTransfers(args.migrationId, args.sourceHost, grantedDirs(prepared));
      log.info({ migrationId: args.migrationId, targetDockerId }, 'target prepared');
      return prepared;
    } catch (err) {
      await abortLocked(ctx, args.migrationId, 'prepare failed').catch((e: unknown) => log.error({ err: String(e) }, 'cleaning up a failed prepare failed; the reconciler retries'));
      throw err;
    }
  });
}

/** Where the source sends a prepared migration (transfer-grants.ts): its images, the container's upper dir, its volumes. */
const grantedDirs = (p: PrepareResult) => [p.checkpointDir, p.upperDir, ...Object.values(p.volumeDirs ?? {})];

async function volumeDirs(ctx: MigrationContext, names: string[]): Promise<Record<string, string>> {
  const dirs: Record<string, string> = {};
  for (const name of names) {
    const info = await ctx.runtime.volumeInfo(name);
    if (info === undefined) throw new HerdError('DOCKER_FAILED', `volume "${name}" was not created with the target container on ${ctx.hostId}`);
    dirs[name] = info.mountpoint;
  }
  return dirs;
}

export function restoreTarget(ctx: MigrationContext, args: CommandArgs<'migration.restore'>, from?: string): Promise<TargetRestoreResult> {
  return ctx.locks.run(args.migrationId, async () => {
    const { runtime, store, log } = ctx;
    const tomb = store.tombstone('target', args.migrationId);
    assertFromSource(ctx, from, recordedSource(ctx, args.migrationId), args.migrationId);
    if (tomb?.outcome === 'committed') return tomb.result as unknown as TargetRestoreResult;
    if (tomb !== undefined) throw new HerdError('RESTORE_FAILED', `migration ${args.migrationId} was ${tomb.outcome} on host ${ctx.hostId} (${tomb.detail ?? 'no detail'}): nothing restored`);
    const record = store.get('target', args.migrationId);
    if (record?.phase === 'running') return { restoreMs: record.restoreMs ?? 0, runningAt: record.runningAt ?? record.updatedAt };
    if (record?.targetDockerId === undefined || record.phase === 'preparing') {
      await abortLocked(ctx, args.migrationId, 'restore of a migration never prepared');
      throw new HerdError('RESTORE_FAILED', `migration ${args.migrationId} was not prepared on host ${ctx.hostId}: nothing restored`);
    }
    record.phase = 'restoring';
    await store.save(record);
    store.revokeTransfers(args.migrationId); // everything was sent: nothing more may be written into the copy
    // After the durable "restoring": a source that fences from now on finds the restore begun (see fence.ts).
    if (store.fenced(args.migrationId)) {
      await abortLocked(ctx, args.migrationId, 'fenced by the source');
      throw new HerdError('RESTORE_FAILED', `migration ${args.migrationId} was fenced on host ${ctx.hostId} by its source: nothing restored`);
    }
    const targetDockerId = record.targetDockerId;
    const started = performance.now();
    let failure: unknown;
    try {
      if (record.fsMode === 'full' && record.upperDir !== undefined) {
        const details = await runtime.inspect(targetDockerId, ctx.hostId);
        await hideDeletedLowerPaths(record.upperDir, details.lowerDirs ?? []);
      }
      if (ctx.faults().has('corrupt-images-in-transit') && record.checkpointDir !== undefined) corruptImages(record.checkpointDir);
      if (record.restoreWith === 'direct' && record.checkpointDir !== undefined) pointCheckpointAt(runtime.checkpointPath(targetDockerId, record.checkpointId), record.checkpointDir);
      await ctx.criu.run(() => runtime.startFromCheckpoint(targetDockerId, record.checkpointId), { onTimeout: () => killRuncJobs(targetDockerId) });
    } catch (err) {
      failure = err;
    }
    const restoreMs = performance.now() - started;
    // Settle what Docker did, whatever the call said (a reply lost with Docker restarting, a timeout). A start
    // that succeeded returned once runc's restore had ended.
    if (failure !== undefined) await waitForRuncJobs(targetDockerId, 60_000);
    let settled: 'removed' | 'started' | 'gone';
    try {
      settled = failure === undefined ? 'started' : await runtime.removeUnlessStarted(targetDockerId);
    } catch (err) {
      throw new HerdError('IN_DOUBT', `restore of migration ${args.migrationId} on ${ctx.hostId} failed [${toHerdError(failure).message}] and Docker cannot say whether the copy runs [${(err as Error).message}]`, { cause: err });
    }
    if (settled !== 'started') {
      await abortLocked(ctx, args.migrationId, `restore failed: ${toHerdError(failure).message}`);
      throw toHerdError(failure, 'RESTORE_FAILED');
    }
    const runningAt = new Date().toISOString();
    Object.assign(record, { phase: 'running', restoreMs, runningAt });
    await store.save(record);
    if (failure !== undefined) log.warn({ migrationId: args.migrationId, err: toHerdError(failure).message }, 'the restore call failed but the container runs: restored');
    void announceAddress(ctx.runtime, targetDockerId, ctx.hostId, ctx.log); // not part of the restore: do not wait
    sweepTempDirsSoon((dir) => log.info({ dir }, "removed containerd's restore temp dir"));
    // The images are no longer needed: leave no checkpoint files behind. After the reply (the source's downtime
    // ends with it), on the migration's lock, so before its commit or abort.
    const { checkpointId, checkpointDir } = record;
    void ctx.locks
      .run(args.migrationId, async () => {
        await new Promise((r) => setImmediate(r));
        await runtime.deleteCheckpoint(targetDockerId, checkpointId).catch(() => undefined);
        if (checkpointDir !== undefined) removeReceivedDir(checkpointDir);
      })
      .catch((err: unknown) => log.warn({ migrationId: args.migrationId, err: String(err) }, 'cannot remove the restored images (they go with the container)'));
    void ctx.publishContainers();
    log.info({ migrationId: args.migrationId, restoreMs: Math.round(restoreMs) }, 'target restored; waiting for the source to commit');
    return { restoreMs, runningAt };
  });
}

/**
 * Removes what prepare made unless the container was started. Call with the migration's
 * lock held. Returns the target's state.
 */
async function abortLocked(ctx: MigrationContext, migrationId: string, reason: string): Promise<AbortResult> {
  const { runtime, store, log } = ctx;
  const tomb = store.tombstone('target', migrationId);
  if (tomb?.outcome === 'committed') return { state: 'committed' };
  const record = store.get('target', migrationId);
  if (record?.phase === 'running') return { state: 'running' };
  store.revokeTransfers(migrationId);
  // The copy never ran (or it would be "running"): what was received goes first (Docker cannot remove a container over a mount).
  if (record?.checkpointDir !== undefined && record.phase !== 'restoring') removeReceivedDir(record.checkpointDir);
  // By label as well as by record: a prepare that crashed before saving the container id.
  const dockerIds = new Set(await runtime.findByMigration(migrationId));
  if (record?.targetDockerId !== undefined) dockerIds.add(record.targetDockerId);
  for (const id of dockerIds) {
    await waitForRuncJobs(id, 60_000);
    if ((await runtime.removeUnlessStarted(id)) === 'started') {
      if (record !== undefined) {
        await store.save(Object.assign(record, { phase: 'running', targetDockerId: id }));
        // Restored (by Docker, after this daemon died mid-restore): the images are not needed any more.
        await runtime.deleteCheckpoint(id, record.checkpointId).catch(() => undefined);
        if (record.checkpointDir !== undefined) removeReceivedDir(record.checkpointDir);
      }
      log.warn({ migrationId, reason }, 'abort refused: the target copy was started (it runs, or ran)');
      return { state: 'running' };
    }
  }
  if (record?.checkpointDir !== undefined) removeReceivedDir(record.checkpointDir);
  for (const name of record?.volumes ?? []) await runtime.removeVolume(name);
  if (tomb === undefined) {
    await store.finish('target', migrationId, { outcome: 'aborted', detail: reason, ...(record === undefined ? {} : { container: record.container, herdId: record.herdId, sourceHost: record.sourceHost, targetHost: record.targetHost }) });
  }
  if (record !== undefined || dockerIds.size > 0) {
    log.info({ migrationId, reason, removed: dockerIds.size }, 'target aborted');
    void ctx.publishContainers();
  }
  return { state: 'aborted' };
}

export function abortTarget(ctx: MigrationContext, args: CommandArgs<'migration.abort'>, from?: string): Promise<AbortResult> {
  return ctx.locks.run(args.migrationId, () => {
    assertFromSource(ctx, from, recordedSource(ctx, args.migrationId), args.migrationId);
    return abortLocked(ctx, args.migrationId, args.reason ?? 'aborted by the source');
  });
}

/** The source removed its copy: the target's copy is the container from now on. */
export function commitTarget(ctx: MigrationContext, args: CommandArgs<'migration.commit'>, from?: string): Promise<{ committed: true }> {
  return ctx.locks.run(args.migrationId, async () => {
    assertFromSource(ctx, from, recordedSource(ctx, args.migrationId), args.migrationId);
    return commitLocked(ctx, args.migrationId);
  });
}

/** The source host this target recorded for a migration (in flight or ended). */
function recordedSource(ctx: MigrationContext, migrationId: string): string | undefined {
  return ctx.store.get('target', migrationId)?.sourceHost ?? ctx.store.tombstone('target', migrationId)?.sourceHost;
}

async function commitLocked(ctx: MigrationContext, migrationId: string, detail?: string): Promise<{ committed: true }> {
  const { store } = ctx;
  const tomb = store.tombstone('target', migrationId);
  if (tomb?.outcome === 'committed') return { committed: true };
  if (tomb !== undefined) throw new HerdError('CONFLICT', `migration ${migrationId} was ${tomb.outcome} on host ${ctx.hostId}: cannot commit`);
  const record = store.get('target', migrationId);
  if (record?.phase !== 'running') throw new HerdError('CONFLICT', `migration ${migrationId} is ${record?.phase ?? 'unknown'} on host ${ctx.hostId}, not running: cannot commit`);
  await store.finish('target', migrationId, {
    outcome: 'committed',
    container: record.container,
    herdId: record.herdId,
    sourceHost: record.sourceHost,
    targetHost: record.targetHost,
    result: { restoreMs: record.restoreMs ?? 0, runningAt: record.runningAt ?? record.updatedAt },
    ...(detail === undefined ? {} : { detail }),
  });
  ctx.log.info({ migrationId, detail }, 'migration committed: the source removed its copy');
  void ctx.publishContainers();
  return { committed: true };
}

/** What this host knows of a migration, as source or target. */
export function migrationStatus(ctx: MigrationContext, migrationId: string): MigrationStatus {
  const { store, hostId } = ctx;
  const base = { migrationId, hostId };
  for (const role of ['source', 'target'] as const) {
    const record = store.get(role, migrationId);
    if (record !== undefined) {
      const inDoubt = record.role === 'source' && record.phase === 'restoring' && !ctx.locks.held(migrationId);
      const restoreMs = record.role === 'target' && record.phase === 'running' ? { restoreMs: record.restoreMs ?? 0 } : {};
      return { ...base, role, state: inDoubt ? 'in-doubt' : 'in-flight', phase: record.phase, container: record.container, sourceHost: record.sourceHost, targetHost: record.targetHost, updatedAt: record.updatedAt, ...restoreMs };
    }
    const tomb = store.tombstone(role, migrationId);
    if (tomb !== undefined) {
      return {
        ...base,
        role,
        state: tomb.outcome,
        ...(tomb.container === undefined ? {} : { container: tomb.container }),
        ...(tomb.sourceHost === undefined ? {} : { sourceHost: tomb.sourceHost }),
        ...(tomb.targetHost === undefined ? {} : { targetHost: tomb.targetHost }),
        updatedAt: tomb.finishedAt,
        ...(tomb.detail === undefined ? {} : { detail: tomb.detail }),
        ...(role === 'source' && tomb.result !== undefined ? { result: tomb.result as MigrationResult } : {}),
        ...(tomb.error === undefined ? {} : { error: tomb.error }),
      };
    }
  }
  // A source run that has claimed its container but not recorded the migration yet.
  if ([...ctx.inFlight.values()].includes(migrationId)) return { ...base, role: 'source', state: 'in-flight', phase: 'accepted' };
  return { ...base, state: 'unknown' };
}

/**
 * The target half of the reconciler, for a record no handler holds: a crashed prepare or
 * restore is settled; a fenced one is aborted; a prepared one whose source has moved on is
 * aborted; a running one whose source finished is committed.
 */
export async function reconcileTarget(ctx: MigrationContext, record: TargetRecord, askSource: () => Promise<MigrationStatus | undefined>): Promise<string | undefined> {
  const id = record.migrationId;
  if (record.phase === 'preparing') return (await abortLocked(ctx, id, 'prepare interrupted')).state;
  if (record.phase === 'restoring') {
    // The daemon died mid-restore: Docker finished it or not; a plain rm tells which.
    const state = await abortLocked(ctx, id, 'restore interrupted');
    return `restore interrupted: ${state.state}`;
  }
  if (record.phase === 'prepared') {
    if (ctx.store.fenced(id)) return `fenced: ${(await abortLocked(ctx, id, 'fenced by the source')).state}`;
    const source = await askSource();
    if (source === undefined) return undefined; // the source is unreachable: a prepared copy never starts by itself; ask again later
    if (source.state === 'in-flight' || source.state === 'in-doubt') return undefined;
    return `source ${source.state}: ${(await abortLocked(ctx, id, `the source's migration is ${source.state}`)).state}`;
  }
  // running: commit once the source has finished (it removed its copy).
  const source = await askSource();
  if (source?.state === 'done') {
    await commitLocked(ctx, id);
    return 'committed';
  }
  if (source !== undefined && (source.state === 'rolled-back' || source.state === 'restarted')) {
    // Both copies run (a fault the protocol should never let through). Settled here as this host's
    // container, so that the copy is no longer marked as migrating: the control daemon's cluster
    // check then sees the duplicate and stops one (see control/loop/placement-check.ts).
    ctx.log.error({ migrationId: id, source: source.state }, 'the source resumed its copy while this target runs one: left to the cluster check, which stops one of the two');
    await commitLocked(ctx, id, `the source ${source.state} while this copy ran: a duplicate for the cluster check`);
    return `committed: the source ${source.state} too (duplicate)`;
  }
  return undefined;
}
