/**
 * The source side of a migration (Herd's sequence): check the target, then checkpoint
 * the container here while the target creates its container, in parallel; stream the
 * checkpoint and the filesystem (diff: overlay upper dir; full: the whole filesystem;
 * none: nothing) to the target over SSH; have the target restore; remove the source.
 *
 * Rollback, so that a failed migration leaves the container running exactly once, here:
 * - checkpoint fails      → abort the target; the source keeps (or is put back) running;
 * - a later step fails    → abort the target; restore the source from its checkpoint;
 * - that local restore fails → restart the source from scratch (state lost: RESTORE_FAILED).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Transform } from 'node:stream';
import { HerdError, toHerdError, type WireError } from '../../protocol/errors.ts';
import type { CommandArgs, MigrationEvent, MigrationPhase, MigrationResult, MigrationTimings, PrepareResult, TargetRestoreResult } from '../../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { ContainerDetails } from '../runtime/container-runtime.ts';
import type { MigrationContext } from './context.ts';
import { corruptImages } from './faults.ts';
import type { SourceRecord } from './migration-store.ts';
import { openReceiver, tarDirectory, type RemoteReceiver } from './ssh-transfer.ts';
import { assertCarried, assertCheckpointable, containerProcesses, hasSysResource } from './preflight.ts';

const execFileAsync = promisify(execFile);
const CHECK_TIMEOUT_MS = 15_000;
const PREPARE_TIMEOUT_MS = 60_000;
const RESTORE_TIMEOUT_MS = 180_000;
const ABORT_TIMEOUT_MS = 20_000;

/** Bytes of memory the container uses (cgroup v1), for the target's disk estimate. */
function memoryUsageBytes(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => /^\d+:memory:/.test(l));
    const path = line?.split(':')[2];
    if (path === undefined) return 0;
    return Number(readFileSync(`/sys/fs/cgroup/memory${path}/memory.usage_in_bytes`, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

class Throttle extends Transform {
  constructor(private readonly bytesPerSecond: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    setTimeout(() => done(null, chunk), (chunk.length / this.bytesPerSecond) * 1000);
  }
}

interface Clock {
  phaseStarted: Map<MigrationPhase, number>;
}

export class SourceMigration {
  private readonly clock: Clock = { phaseStarted: new Map() };
  private record!: SourceRecord;
  private details!: ContainerDetails;

  constructor(
    private readonly ctx: MigrationContext,
    private readonly args: CommandArgs<'migration.start'>,
  ) {}

  private get log() {
    return this.ctx.log.child({ migrationId: this.args.migrationId });
  }

  private async event(phase: MigrationPhase, status: MigrationEvent['status'], extra: Partial<MigrationEvent> = {}): Promise<void> {
    const now = performance.now();
    if (status === 'started') this.clock.phaseStarted.set(phase, now);
    const began = this.clock.phaseStarted.get(phase);
    const event: MigrationEvent = {
      v: PROTOCOL_VERSION,
      migrationId: this.args.migrationId,
      herdId: this.details?.herdId ?? 'unknown',
      container: this.details?.name ?? this.args.container,
      sourceHost: this.ctx.hostId,
      targetHost: this.args.targetHost,
      phase,
      status,
      at: new Date().toISOString(),
      ...(status !== 'started' && began !== undefined ? { durationMs: Math.round((now - began) * 10) / 10 } : {}),
      ...extra,
    };
    this.log.info({ phase, status, durationMs: event.durationMs, bytes: event.bytes }, `migration ${phase} ${status}`);
    // Not awaited: events must not stretch the downtime; the MQTT client keeps their order.
    this.ctx.publishEvent(event).catch((err: unknown) => this.log.warn({ err: String(err) }, 'cannot publish migration event'));
  }

  private async setPhase(phase: SourceRecord['phase']): Promise<void> {
    this.record.phase = phase;
    await this.ctx.store.save(this.record);
  }

  /** Validations that need no freezing: the container, the target, the target's image, name and disk. */
  private async validate(): Promise<void> {
    const { ctx, args } = this;
    if (args.targetHost === ctx.hostId) throw new HerdError('CONFLICT', `container "${args.container}" already runs on ${ctx.hostId}`);
    this.details = await ctx.runtime.inspect(args.container, ctx.hostId);
    // Check and claim in the same tick, so that two concurrent requests cannot both pass.
    if (ctx.inFlight.has(this.details.herdId)) throw new HerdError('ALREADY_MIGRATING', `container "${this.details.name}" (herd id ${this.details.herdId}) is already migrating`);
    if (!this.details.running) throw new HerdError('CONFLICT', `container "${this.details.name}" is ${this.details.state}, not running: only running containers are live-migrated`);
    assertCarried(this.details.name, this.details, ctx.sharedPaths);
    if (this.details.pid !== undefined) assertCheckpointable(this.details.name, containerProcesses(this.details.pid), hasSysResource());
    ctx.view.requireOnline(args.targetHost);
    ctx.inFlight.set(this.details.herdId, args.migrationId);
    void ctx.publishContainers(); // the retained list says it is migrating
  }

  async run(): Promise<MigrationResult> {
    const { ctx } = this;
    await this.validate();
    const d = this.details;
    try {
      return await this.runValidated();
    } finally {
      ctx.inFlight.delete(d.herdId);
      void ctx.publishContainers();
    }
  }

  private async runValidated(): Promise<MigrationResult> {
    const { ctx, args } = this;
    const d = this.details;
    const checkpointId = `herd-${args.migrationId}`.slice(0, 64);
    const now = new Date().toISOString();
    this.record = {
      role: 'source',
      phase: 'accepted',
      migrationId: args.migrationId,
      herdId: d.herdId,
      container: d.name,
      sourceHost: ctx.hostId,
      targetHost: args.targetHost,
      fsMode: args.fsMode,
      checkpointId,
      sourceDockerId: d.dockerId,
      startedAt: now,
      updatedAt: now,
    };
    const totalStart = performance.now();
    await this.event('accepted', 'started', { detail: `fs mode ${args.fsMode}` });

    // 1. Ask the target before freezing anything (clear errors with nothing to undo).
    //    The SSH connection (pooled, so usually already open) is part of that check.
    const target = ctx.view.requireOnline(args.targetHost);
    const sshHost = target.address ?? args.targetHost;
    const sshPort = target.sshPort ?? 22;
    const ssh = ctx.ssh.get(sshHost, sshPort);
    try {
      const requiredBytes = memoryUsageBytes(d.pid) * 2 + (args.fsMode === 'none' ? 0 : await this.filesystemEstimate());
      await Promise.all([this.request('migration.check', { migrationId: args.migrationId, spec: d.spec, requiredBytes }, CHECK_TIMEOUT_MS), ssh]);
    } catch (err) {
      const error = toHerdError(err);
      await this.event('failed', 'failed', { error: error.toWire(), detail: 'refused before anything was frozen' });
      throw error;
    }
    await ctx.store.save(this.record);

    // 2. In parallel: the target creates its container, the receivers start, the source checkpoints.
    await this.event('prepare', 'started');
    const prepared = this.request<PrepareResult>('migration.prepare', { migrationId: args.migrationId, sourceHost: ctx.hostId, spec: d.spec, fsMode: args.fsMode, checkpointId }, PREPARE_TIMEOUT_MS);
    // Receivers for the checkpoint and the filesystem, started now so that their start-up overlaps the checkpoint.
    const receivers = ssh.then((conn) =>
      Promise.all([openReceiver(conn, { xattrs: false }), args.fsMode === 'none' ? undefined : openReceiver(conn, { xattrs: args.fsMode === 'diff' })]),
    );
    const cancelReceivers = () => void receivers.then((rs) => rs.forEach((r) => r?.cancel())).catch(() => undefined);
    prepared.catch(() => undefined);
    receivers.catch(() => undefined);
    await this.setPhase('checkpointing');
    await this.event('checkpoint', 'started');
    const frozenAt = performance.now();
    try {
      await ctx.criu.run(() => ctx.runtime.checkpoint(d.dockerId, checkpointId, { exit: true, ...(ctx.faults().has('fail-checkpoint') ? { checkpointDir: '/dev/null/herd-fault-injected' } : {}) }));
    } catch (err) {
      const error = toHerdError(err, 'CHECKPOINT_FAILED');
      await this.event('checkpoint', 'failed', { error: error.toWire() });
      await prepared.catch(() => undefined);
      cancelReceivers();
      await this.abortTarget('checkpoint failed');
      await this.ensureSourceRunning();
      throw await this.rolledBack('checkpoint', error);
    }
    const checkpointMs = performance.now() - frozenAt;
    const checkpointPath = ctx.runtime.checkpointPath(d.dockerId, checkpointId);
    await this.setPhase('checkpointed');
    await this.event('checkpoint', 'finished');

    let prep: PrepareResult;
    let transferMs = 0;
    let checkpointBytes = 0;
    let filesystemBytes = 0;
    let restored: TargetRestoreResult;
    let stopWatching: () => void = () => undefined;
    try {
      prep = await prepared;
      await this.event('prepare', 'finished', { detail: `target container ${prep.targetDockerId.slice(0, 12)}` });
      // 3. Transfer the checkpoint images and the filesystem, both streams at once.
      await this.setPhase('transferring');
      await this.event('transfer', 'started');
      const transferStart = performance.now();
      const [checkpointReceiver, fsReceiver] = await receivers;
      // If the target goes offline mid-transfer, cut the streams instead of filling its disk for nothing.
      stopWatching = ctx.view.onHostStatus((s) => {
        if (s.hostId === args.targetHost && s.state === 'offline') {
          this.log.warn('target went offline during the transfer: closing the SSH streams');
          ctx.ssh.drop(sshHost, sshPort);
        }
      });
      const slow = ctx.faults().has('slow-transfer');
      const send = (receiver: RemoteReceiver, dir: string, source: NodeJS.ReadableStream, what: string) =>
        receiver.send(dir, slow ? (source as import('node:stream').Readable).pipe(new Throttle(1024 * 1024)) : source, what);
      const fsTransfer = async (): Promise<number> => {
        if (fsReceiver === undefined) return 0;
        if (args.fsMode === 'diff') {
          if (d.upperDir === undefined) throw new HerdError('TRANSFER_FAILED', 'source container has no overlay upper dir');
          return send(fsReceiver, prep.upperDir, tarDirectory(d.upperDir, { xattrs: true }), 'filesystem diff transfer');
        }
        return send(fsReceiver, prep.upperDir, await ctx.runtime.exportFilesystem(d.dockerId), 'full filesystem transfer');
      };
      // Wait for both streams even when one fails, so that nothing still writes on the target while it is aborted.
      const [cp, fs] = await Promise.allSettled([
        send(checkpointReceiver, prep.checkpointDir, tarDirectory(checkpointPath, { xattrs: false }), 'checkpoint transfer'),
        fsTransfer(),
      ]);
      stopWatching();
      if (ctx.view.host(args.targetHost)?.state === 'offline') throw new HerdError('HOST_OFFLINE', `target host ${args.targetHost} went offline during the transfer`);
      if (cp.status === 'rejected') throw cp.reason;
      if (fs.status === 'rejected') throw fs.reason;
      [checkpointBytes, filesystemBytes] = [cp.value, fs.value];
      transferMs = performance.now() - transferStart;
      await this.event('transfer', 'finished', { bytes: checkpointBytes + filesystemBytes, detail: `checkpoint ${checkpointBytes} B, filesystem ${filesystemBytes} B` });

      // 4. Restore on the target.
      await this.setPhase('restoring');
      await this.event('restore', 'started');
      restored = await this.request<TargetRestoreResult>('migration.restore', { migrationId: args.migrationId }, RESTORE_TIMEOUT_MS);
      await this.event('restore', 'finished');
    } catch (err) {
      stopWatching();
      cancelReceivers();
      const error = toHerdError(err);
      const phase: MigrationPhase = this.record.phase === 'restoring' ? 'restore' : this.record.phase === 'transferring' ? 'transfer' : 'prepare';
      if (error.code === 'TRANSFER_FAILED') ctx.ssh.drop(sshHost, sshPort);
      await this.event(phase, 'failed', { error: error.toWire() });
      await this.abortTarget(`${phase} failed`);
      await this.restoreSource();
      throw await this.rolledBack(phase, error);
    }
    const downtimeMs = performance.now() - frozenAt;
    await this.setPhase('restored');

    // 5. The target runs: remove the source (its checkpoint goes with it).
    await this.event('cleanup', 'started');
    await ctx.runtime.remove(d.dockerId, true).catch((err: unknown) => this.log.error({ err: String(err) }, 'could not remove the source container after a successful migration'));
    ctx.store.remove('source', args.migrationId);
    void ctx.publishContainers();
    await this.event('cleanup', 'finished');
    const timings: MigrationTimings = {
      checkpointMs: round(checkpointMs),
      transferMs: round(transferMs),
      restoreMs: round(restored.restoreMs),
      totalMs: round(performance.now() - totalStart),
      downtimeMs: round(downtimeMs),
      checkpointBytes,
      filesystemBytes,
    };
    await this.event('done', 'finished', { timings });
    return { migrationId: args.migrationId, herdId: d.herdId, container: d.name, sourceHost: ctx.hostId, targetHost: args.targetHost, fsMode: args.fsMode, timings };
  }

  private async filesystemEstimate(): Promise<number> {
    if (this.details.upperDir === undefined) return 0;
    try {
      const { stdout } = await execFileAsync('du', ['-sb', this.details.upperDir], { timeout: 30_000 });
      return Number(stdout.split(/\s/)[0]) || 0;
    } catch {
      return 0;
    }
  }

  private async request<R>(type: 'migration.check' | 'migration.prepare' | 'migration.restore', args: object, timeoutMs: number): Promise<R> {
    const { ctx } = this;
    // Fail fast when the target's last will says it went offline, instead of waiting out the timeout.
    const current = ctx.view.host(this.args.targetHost);
    if (current?.state === 'offline') throw new HerdError('HOST_OFFLINE', `target host ${current.hostId} is offline (before ${type})`);
    let unsubscribe: () => void = () => undefined;
    const offline = new Promise<never>((_, reject) => {
      unsubscribe = ctx.view.onHostStatus((s) => {
        if (s.hostId === this.args.targetHost && s.state === 'offline') reject(new HerdError('HOST_OFFLINE', `target host ${s.hostId} went offline during ${type}${s.reason ? ` (${s.reason})` : ''}`));
      });
    });
    offline.catch(() => undefined);
    try {
      return await Promise.race([ctx.rpc.request<R>(this.args.targetHost, type, args as never, { timeoutMs }), offline]);
    } finally {
      unsubscribe();
    }
  }

  private async abortTarget(reason: string): Promise<void> {
    if (this.ctx.view.host(this.args.targetHost)?.state === 'offline') {
      // Nobody would answer: the target removes its half-made container when its daemon restarts (recovery).
      this.log.warn('target is offline: not waiting for its abort; it cleans up when it comes back');
      return;
    }
    try {
      await this.ctx.rpc.request(this.args.targetHost, 'migration.abort', { migrationId: this.args.migrationId, reason }, { timeoutMs: ABORT_TIMEOUT_MS });
    } catch (err) {
      // The target cleans up by itself when its daemon comes back (recovery from its record).
      this.log.warn({ err: (err as Error).message }, 'target did not confirm the abort; it will clean up when it comes back');
    }
  }

  /** After a failed checkpoint: the container must run here. */
  private async ensureSourceRunning(): Promise<void> {
    const { ctx } = this;
    const now = await ctx.runtime.inspect(this.details.dockerId, ctx.hostId);
    if (!now.running) await ctx.runtime.start(this.details.dockerId);
    await ctx.runtime.deleteCheckpoint(this.details.dockerId, this.record.checkpointId).catch(() => undefined);
    ctx.store.remove('source', this.args.migrationId);
  }

  private localRestoreFailed: WireError | undefined;

  /** After a failure past the checkpoint: resume the source from its checkpoint, or restart it. */
  private async restoreSource(): Promise<void> {
    const { ctx } = this;
    await this.setPhase('rolling-back');
    await this.event('rollback', 'started');
    const checkpointPath = ctx.runtime.checkpointPath(this.details.dockerId, this.record.checkpointId);
    if (ctx.faults().has('fail-local-restore')) corruptImages(checkpointPath);
    try {
      await ctx.criu.run(() => ctx.runtime.startFromCheckpoint(this.details.dockerId, this.record.checkpointId));
      await this.event('rollback', 'finished', { detail: `restored on ${ctx.hostId} from its checkpoint` });
    } catch (err) {
      const error = toHerdError(err, 'RESTORE_FAILED');
      this.localRestoreFailed = error.toWire();
      this.log.error({ err: error.message }, 'local restore failed: restarting the container from scratch');
      await ctx.runtime.start(this.details.dockerId);
      await this.event('rollback', 'failed', { error: error.toWire(), detail: `restarted on ${ctx.hostId} (memory state lost)` });
    }
    await ctx.runtime.deleteCheckpoint(this.details.dockerId, this.record.checkpointId).catch(() => undefined);
    ctx.store.remove('source', this.args.migrationId);
    void ctx.publishContainers();
  }

  private async rolledBack(phase: MigrationPhase, cause: HerdError): Promise<HerdError> {
    const where = `"${this.details.name}" runs on ${this.ctx.hostId}`;
    const error =
      this.localRestoreFailed === undefined
        ? new HerdError('ROLLED_BACK', `migration ${this.args.migrationId} failed in ${phase} [${cause.code}: ${cause.message}] and was rolled back: ${where}`, { cause })
        : new HerdError('RESTORE_FAILED', `migration ${this.args.migrationId} failed in ${phase} [${cause.code}: ${cause.message}]; restoring the source from its checkpoint also failed [${this.localRestoreFailed.message}], so it was restarted: ${where} with its memory state lost`, { cause, retryable: false });
    await this.event('failed', 'failed', { error: error.toWire() });
    return error;
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
