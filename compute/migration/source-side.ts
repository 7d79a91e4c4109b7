/**
 * The source side of a migration (Herd's sequence): check the target, then checkpoint
 * the container here while the target creates its container, in parallel; stream the
 * checkpoint and the filesystem (diff: overlay upper dir; full: the whole filesystem;
 * none: nothing) to the target over SSH; have the target restore; remove the source.
 * With `preCopyFilesystem`, the upper dir (diff mode) and the named volumes (every mode) of
 * at least `preCopyFilesystemMinBytes` go while the container still runs, once the target
 * prepared its container; after the freeze only what changed since (fs-precopy.ts), and the
 * files its processes map shared and writable, read when the pre-copy starts, every 500 ms
 * while it runs and at the freeze (shared-mappings.ts: while frozen with runc's checkpoint,
 * right before Docker's own).
 * A tree holding a name that is not UTF-8 is not pre-copied: it goes whole after the freeze.
 * With `preCopyMemory`, a container using at least `preCopyMemoryMinBytes` of memory has its
 * resident pages copied then too, and after the freeze only the pages that changed since go
 * (memory-precopy.ts), and the checkpoint goes by pages (zero pages as holes, pages the target
 * holds as references); a smaller one's checkpoint goes by tar.
 * A failure before the freeze leaves nothing to undo here but the target's copy.
 *
 * Exactly once (see source-settle.ts for how it ends):
 * - before the restore request: a failure aborts the target (its copy never started) and
 *   resumes the source from its checkpoint (or restarts it when that fails: RESTORE_FAILED);
 * - the target answers the restore with an error: it has made sure its copy does not run
 *   (target-side.ts), so the source resumes;
 * - no answer (lost reply, target offline, timeout): in doubt. The source asks the target
 *   to abort unless it runs, or fences it over SSH, and rolls forward or back on the answer;
 *   without one the container stays frozen (IN_DOUBT) and the reconciler keeps asking.
 * The whole run holds the migration's lock; every step is recorded durably first.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Transform, type Readable } from 'node:stream';
import { HerdError, toHerdError } from '../../protocol/errors.ts';
import type { CommandArgs, Compression, MigrationEvent, MigrationPhase, MigrationResult, MigrationStatus, MigrationTimings, PrepareResult, TargetRestoreResult } from '../../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { ContainerDetails } from '../runtime/container-runtime.ts';
import type { MigrationContext } from './context.ts';
import type { SourceRecord } from './migration-store.ts';
import { killRuncJobs } from './runc-jobs.ts';
import { askTargetToAbort, resolveInDoubt, restoreOutcomeUnknown, rollBackSource, rollForward, type Settled } from './source-settle.ts';
import { openPruner, openReceiver, tarDirectory, type RemotePruner, type RemoteReceiver, type SentBytes, type SshSessions } from './ssh-transfer.ts';
import { BlockState, blocksStream, openBlocksSender, type BlocksSender } from './block-delta.ts';
import { MemoryPrior, openImagesSender, priorStream } from './memory-precopy.ts';
import { changesSince, snapshotTree, type TreeSnapshot } from './fs-precopy.ts';
import { assertCarried, assertCheckpointable, containerPids, containerProcesses, hasSysResource } from './preflight.ts';
import { containerMemory } from './container-memory.ts';
import { sharedWritableFiles, treeRelative } from './shared-mappings.ts';
import { assertUnclaimed } from './container-claims.ts';

const execFileAsync = promisify(execFile);
const CHECK_TIMEOUT_MS = 15_000;
const PREPARE_TIMEOUT_MS = 60_000;
/** Long: a target's CRIU queue may hold other restores first; the target's last will ends the wait sooner. */
const RESTORE_TIMEOUT_MS = 15 * 60_000;
/** While waiting for the restore's reply, how often the target is asked whether it already runs the container. */
const STATUS_POLL_MS = 15_000;
/** How long a migration keeps resolving an in-doubt restore before leaving it to the reconciler. */
const RESOLVE_WITHIN_MS = 90_000;

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

/** A tree the pre-copy sent: what it held then, the pruner of its deletions, and for its large files, what went, and the receiver of their delta (and its sender, when started before the freeze). */
interface PreCopied {
  snapshot: TreeSnapshot;
  pruner: Promise<RemotePruner>;
  blocks?: { state: BlockState; receiver: Promise<RemoteReceiver>; sender?: BlocksSender };
}

/** A directory tree the migration carries as files: the upper dir (diff mode) or a named volume. */
interface FsTree {
  /** For messages: "filesystem" or `volume "name"`. */
  what: string;
  dir: string;
  /** Its directory on the target, once prepared. */
  into(prep: PrepareResult): string;
  /** Where the container sees it: `/` (the upper dir) or the volume's mount points. */
  mountedAt: string[];
  /** Its size (du) before the move. */
  bytes: number;
  /** Copied before the freeze (then only its changes after it); the pre-copy clears it for a tree it cannot take. */
  precopy: boolean;
}

/**
 * What one entry (file, directory, link) of a tree costs to archive, send and extract, in bytes of
 * data that would take as long: measured on the lab, 20,000 files of a few bytes took 1.3 s while
 * frozen (about 55 us each beyond their 2 KiB of tar headers), as long as ~10 KiB each at its
 * link speed. A tree of many small files is worth pre-copying although its bytes are few.
 */
const ENTRY_COST_BYTES = 8 * 1024;

/** How often a transfer reports the bytes it moved. */
const PROGRESS_INTERVAL_MS = 500;

export class SourceMigration {
  private readonly clock: Clock = { phaseStarted: new Map() };
  private record!: SourceRecord;
  private details!: ContainerDetails;
  /** Named volume → its directory here. */
  private readonly volumeDirs = new Map<string, string>();

  constructor(
    private readonly ctx: MigrationContext,
    private readonly args: CommandArgs<'migration.start'>,
  ) {}

  private get log() {
    return this.ctx.log.child({ migrationId: this.args.migrationId });
  }

  /** Bytes the transfer should move (memory in use + upper dir and volumes), for progress; unknown in full mode. */
  private estimatedTransferBytes: number | undefined;
  /** The upper dir (diff mode) and the named volumes. */
  private trees: FsTree[] = [];
  /** The block states of the pre-copy's large files (removed when the migration ends). */
  private readonly blockStates: BlockState[] = [];
  /**
   * Container paths of the files its processes mapped shared and writable during the pre-copy
   * or at the freeze: they go again after it, whatever their ctime (shared-mappings.ts). Undefined
   * when they could not be read: then every file of a pre-copied tree goes again.
   */
  private mappedWritable: Set<string> | undefined = new Set();
  /** The pages the memory pre-copy sent (removed when the migration ends). */
  private prior: MemoryPrior | undefined;

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
    this.log[status === 'progress' ? 'debug' : 'info']({ phase, status, durationMs: event.durationMs, bytes: event.bytes }, `migration ${phase} ${status}`);
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
    for (const v of this.details.spec.volumes ?? []) {
      const info = await ctx.runtime.volumeInfo(v.name);
      if (info === undefined) throw new HerdError('DOCKER_FAILED', `volume "${v.name}" of "${this.details.name}" is not known to Docker on ${ctx.hostId}`);
      const others = info.usedBy.filter((id) => id !== this.details.dockerId);
      if (others.length > 0) throw new HerdError('NOT_MIGRATABLE', `volume "${v.name}" of "${this.details.name}" is also used by container(s) ${others.map((id) => id.slice(0, 12)).join(', ')} on ${ctx.hostId}: it cannot move without them (nothing was frozen)`);
      this.volumeDirs.set(v.name, info.mountpoint);
    }
    // Check and claim in the same tick, so that two concurrent requests cannot both pass.
    assertUnclaimed(ctx, this.details.herdId, this.details.name);
    // Docker calls a paused container running; CRIU would resume it on the target.
    if (this.details.state === 'paused') throw new HerdError('CONFLICT', `container "${this.details.name}" is paused: unpause it first (docker unpause), since the restore on the target would resume it`);
    if (!this.details.running) throw new HerdError('CONFLICT', `container "${this.details.name}" is ${this.details.state}, not running: only running containers are live-migrated`);
    assertCarried(this.details.name, this.details, ctx.sharedPaths);
    if (this.details.pid !== undefined) assertCheckpointable(this.details.name, containerProcesses(this.details.pid), hasSysResource());
    ctx.view.requireOnline(args.targetHost);
    ctx.inFlight.set(this.details.herdId, args.migrationId);
    void ctx.publishContainers(); // the retained list says it is migrating
  }

  async run(): Promise<MigrationResult> {
    const { ctx } = this;
    if (ctx.stopping()) throw new HerdError('HOST_OFFLINE', `compute daemon of ${ctx.hostId} is stopping: no new migrations`);
    await this.validate();
    const d = this.details;
    try {
      return await ctx.locks.run(this.args.migrationId, () => this.runValidated());
    } finally {
      for (const state of this.blockStates) state.remove();
      this.prior?.remove();
      ctx.inFlight.delete(d.herdId);
      void ctx.publishContainers();
    }
  }

  private async runValidated(): Promise<MigrationResult> {
    const { ctx, args } = this;
    const d = this.details;
    if (ctx.store.tombstone('source', args.migrationId) !== undefined || ctx.store.get('source', args.migrationId) !== undefined) {
      throw new HerdError('CONFLICT', `migration id ${args.migrationId} was already used on ${ctx.hostId}: see herd migrate --status ${args.migrationId}`);
    }
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
      ...(this.volumeDirs.size > 0 ? { volumes: [...this.volumeDirs.keys()] } : {}),
      ...(d.spec.restartPolicy === undefined ? {} : { restartPolicy: d.spec.restartPolicy }),
    };
    const totalStart = performance.now();
    // Recorded before anyone hears of it: a daemon that dies from here on finds the record at start and settles it.
    await ctx.store.save(this.record);
    await this.event('accepted', 'started', { detail: `fs mode ${args.fsMode}` });

    // 1. Ask the target before freezing anything (clear errors with nothing to undo).
    //    The SSH connection (pooled, so usually already open) is part of that check.
    // Online when validated; one gone offline since fails the check below, which records the refusal.
    const target = ctx.view.host(args.targetHost);
    const sshHost = target?.address ?? args.targetHost;
    const sshPort = target?.sshPort ?? 22;
    const ssh = ctx.ssh.peer(sshHost, sshPort);
    const { usageBytes: memoryBytes, residentBytes } = containerMemory(d.pid);
    const precopyMemory = ctx.preCopyMemory && residentBytes >= ctx.preCopyMemoryMinBytes && d.pid !== undefined;
    // With the memory pre-copied the images go by pages, else by tar: on a tiny checkpoint a Python process on
    // each host (~65 ms of CPU each) costs more than what the pre-copy saves (config preCopyMemoryMinBytes).
    // The sender starts first: its start-up overlaps the check and the pre-copy; it sends once the dump is complete.
    const imagesSender = precopyMemory ? openImagesSender() : undefined;
    try {
      const { trees, exportBytes } = await this.filesystemTrees();
      this.trees = trees;
      const filesystemBytes = exportBytes + trees.reduce((sum, t) => sum + t.bytes, 0);
      // What the transfer will move, roughly (the checkpoint is about the memory in use): the progress bar's 100 %. Unknown for a whole-filesystem export.
      // Unknown too when the memory goes before the freeze: only what changed since is left then.
      if (args.fsMode !== 'full' && !precopyMemory) this.estimatedTransferBytes = memoryBytes + this.trees.reduce((sum, t) => sum + (t.precopy ? 0 : t.bytes), 0);
      const requiredBytes = memoryBytes * 2 + filesystemBytes;
      await Promise.all([this.request('migration.check', { migrationId: args.migrationId, spec: d.spec, requiredBytes }, CHECK_TIMEOUT_MS), ctx.ssh.connect(sshHost, sshPort)]);
    } catch (err) {
      imagesSender?.cancel();
      const error = toHerdError(err);
      const detail = 'refused before anything was frozen';
      await ctx.store.finish('source', args.migrationId, { outcome: 'refused', detail, error: error.toWire(), container: d.name, herdId: d.herdId, sourceHost: ctx.hostId, targetHost: args.targetHost });
      await this.event('failed', 'failed', { error: error.toWire(), detail });
      throw error;
    }

    // 2. In parallel: the target creates its container, the receivers start, the source checkpoints.
    await this.event('prepare', 'started');
    const prepared = this.request<PrepareResult>('migration.prepare', { migrationId: args.migrationId, sourceHost: ctx.hostId, spec: d.spec, fsMode: args.fsMode, checkpointId, ...(args.restoreWith === undefined ? {} : { restoreWith: args.restoreWith }) }, PREPARE_TIMEOUT_MS);
    // Receivers for the checkpoint, a full export and each tree, started now so that their
    // start-up (sshd's fork of the forced command) overlaps the pre-copy or the checkpoint.
    const compression = args.compression ?? ctx.transferCompression;
    const receivers = allOrNone([
      openReceiver(ssh, { kind: imagesSender === undefined ? 'plain' : 'pages', compression }),
      // With xattrs: Docker's export carries files' capabilities (security.capability).
      args.fsMode === 'full' ? openReceiver(ssh, { kind: 'xattrs', compression }) : Promise.resolve(undefined),
      // A pre-copied tree's delta extracts over the pre-copy (`over`); the others into a new, empty directory.
      ...this.trees.map((t) => openReceiver(ssh, { kind: t.precopy ? 'over' : 'xattrs', compression })),
    ]);
    const precopyTrees = this.trees.filter((t) => t.precopy);
    // The pre-copy's receivers likewise: per tree, one for its archive and one for its large files (used one after the other; unused ones are closed).
    const precopyReceivers = allOrNone(precopyTrees.flatMap(() => [openReceiver(ssh, { kind: 'xattrs', compression }), openReceiver(ssh, { kind: 'blocks', compression })]));
    // The memory's, when it goes before the freeze too.
    const memoryReceiver = allOrNone(precopyMemory ? [openReceiver(ssh, { kind: 'pages', compression })] : []);
    // The large files' receivers for after the freeze, opened by the pre-copy (see preCopy).
    const precopied = new Map<FsTree, PreCopied>();
    const precopyChannels = () => [...precopied.values()].flatMap((p) => [p.pruner, ...(p.blocks === undefined ? [] : [p.blocks.receiver])]);
    // Each on its own: one that failed to open must not keep the others (and their SSH sessions) open.
    const cancelReceivers = () => {
      const opening: Promise<readonly ({ cancel(): void } | undefined)[]>[] = [receivers, precopyReceivers, memoryReceiver, ...precopyChannels().map((p) => p.then((r) => [r]))];
      for (const o of opening) void o.then((all) => all.forEach((r) => r?.cancel()), () => undefined);
      imagesSender?.cancel();
      for (const p of precopied.values()) p.blocks?.sender?.cancel();
    };
    prepared.catch(() => undefined);
    receivers.catch(() => undefined);
    precopyReceivers.catch(() => undefined);
    memoryReceiver.catch(() => undefined);
    // The large trees and the memory go while the container still runs; after the freeze, only what changed.
    let precopy: { ms: number; bytes: number; wireBytes: number } | undefined;
    if (precopyTrees.length > 0 || precopyMemory) {
      let phase: MigrationPhase = 'prepare';
      try {
        const prep = await prepared;
        phase = 'precopy';
        const [memory] = await memoryReceiver;
        precopy = await this.preCopy(precopyTrees, prep, await precopyReceivers, precopied, ssh, compression, memory === undefined ? undefined : { receiver: memory, pid: d.pid as number });
        if (this.prior !== undefined) imagesSender?.matchAgainst(this.prior);
      } catch (err) {
        const error = toHerdError(err, 'TRANSFER_FAILED');
        await this.event(phase, 'failed', { error: error.toWire() });
        cancelReceivers();
        // Nothing was frozen: the target's copy goes, the source runs on.
        await askTargetToAbort(ctx, this.record, `${phase === 'prepare' ? 'prepare' : 'pre-copy'} failed`);
        throw await this.rolledBack(phase, error, await rollBackSource(ctx, this.record, error));
      }
    }
    await this.setPhase('checkpointing');
    await this.event('checkpoint', 'started');
    const frozenAt = performance.now();
    // Settles once Docker saw the container stop; the images may go before (once dumped).
    let stopped: Promise<void> = Promise.resolve();
    try {
      // Docker would restart a container the checkpoint stops: "no" until it resumes here or is removed.
      if (d.spec.restartPolicy !== undefined) await ctx.runtime.setRestartPolicy(d.dockerId, { name: 'no' });
      let dumped!: () => void;
      const imagesComplete = new Promise<void>((resolve) => (dumped = resolve));
      const onFrozen = precopied.size > 0 ? () => this.noteMappedWritable() : undefined;
      stopped = ctx.criu.run(() => ctx.runtime.checkpoint(d.dockerId, checkpointId, { exit: true, onFrozen, onDumped: dumped, ...(ctx.faults().has('fail-checkpoint') ? { checkpointDir: '/dev/null/herd-fault-injected' } : {}) }), {
        onTimeout: () => killRuncJobs(d.dockerId),
      });
      stopped.catch(() => undefined);
      await Promise.race([imagesComplete, stopped]);
    } catch (err) {
      const error = toHerdError(err, 'CHECKPOINT_FAILED');
      await this.event('checkpoint', 'failed', { error: error.toWire() });
      await prepared.catch(() => undefined);
      cancelReceivers();
      // The restore was never asked for: the target's copy cannot run; tell it, roll back here.
      await askTargetToAbort(ctx, this.record, 'checkpoint failed');
      throw await this.rolledBack('checkpoint', error, await rollBackSource(ctx, this.record, error));
    }
    const checkpointMs = performance.now() - frozenAt;
    const checkpointPath = ctx.runtime.checkpointPath(d.dockerId, checkpointId);
    await this.setPhase('checkpointed');
    await this.event('checkpoint', 'finished');

    let prep: PrepareResult;
    let transferMs = 0;
    let checkpointBytes = 0;
    let filesystemBytes = 0;
    let wireBytes = precopy?.wireBytes ?? 0;
    let stopWatching: () => void = () => undefined;
    let progressTimer: NodeJS.Timeout | undefined;
    try {
      prep = await prepared;
      if (precopy === undefined) await this.event('prepare', 'finished', { detail: `target container ${prep.targetDockerId.slice(0, 12)}` });
      // 3. Transfer the checkpoint images and the filesystem, both streams at once.
      await this.setPhase('transferring');
      await this.event('transfer', 'started');
      const transferStart = performance.now();
      const [checkpointReceiver, exportReceiver, ...treeReceivers] = await receivers;
      // If the target goes offline mid-transfer, cut the streams instead of filling its disk for nothing.
      stopWatching = ctx.view.onHostStatus((s) => {
        if (s.hostId === args.targetHost && s.state === 'offline') {
          this.log.warn('target went offline during the transfer: closing the SSH connection');
          ctx.ssh.drop(sshHost, sshPort);
        }
      });
      // Progress for people watching (herd migrate's bar): bytes moved so far, twice a second while they change.
      let moved = 0;
      let reported = 0;
      progressTimer = setInterval(() => {
        if (moved === reported) return;
        reported = moved;
        void this.event('transfer', 'progress', { bytes: moved, ...(this.estimatedTransferBytes === undefined ? {} : { totalBytes: Math.max(moved, this.estimatedTransferBytes) }) });
      }, PROGRESS_INTERVAL_MS);
      const send = (receiver: RemoteReceiver, dir: string, source: NodeJS.ReadableStream, what: string) => this.sendStream(receiver, dir, source, what, (n) => (moved += n));
      const treeTransfer = async (tree: FsTree, receiver: RemoteReceiver): Promise<SentBytes> => {
        const into = tree.into(prep);
        const pre = precopied.get(tree);
        if (pre === undefined) return send(receiver, into, tarDirectory(tree.dir, { xattrs: true }), `${tree.what} transfer`);
        // What changed since the pre-copy: deletions first, then the large files' changed blocks, then
        // the other changed entries (last: extracting a directory entry sets its times).
        const changes = await changesSince(tree.dir, pre.snapshot, this.writtenThroughMaps(tree));
        if (changes.deleted.length > 0) await (await pre.pruner).prune(changes.deleted);
        else void pre.pruner.then((p) => p.cancel(), () => undefined);
        this.log.info({ tree: tree.what, changed: changes.changed.length, blocks: changes.blocks.length, deleted: changes.deleted.length }, 'filesystem changes since the pre-copy');
        let blocks: SentBytes = { bytes: 0, wireBytes: 0 };
        if (pre.blocks !== undefined) {
          const blockReceiver = await pre.blocks.receiver;
          const sender = pre.blocks.sender ?? openBlocksSender(tree.dir, pre.blocks.state);
          if (changes.blocks.length === 0) {
            blockReceiver.cancel();
            sender.cancel();
          } else blocks = await send(blockReceiver, into, sender.blocks(changes.blocks), `${tree.what} delta of large files`);
        }
        const rest = await send(receiver, into, tarDirectory(tree.dir, { xattrs: true, only: changes.changed }), `${tree.what} delta transfer`);
        return { bytes: blocks.bytes + rest.bytes, wireBytes: blocks.wireBytes + rest.wireBytes };
      };
      // Wait for every stream even when one fails, so that nothing still writes on the target while it is aborted.
      const [cp, ...fs] = await Promise.allSettled([
        send(checkpointReceiver as RemoteReceiver, prep.checkpointDir, imagesSender === undefined ? tarDirectory(checkpointPath, { xattrs: false }) : imagesSender.images(checkpointPath), 'checkpoint transfer'),
        ...(exportReceiver === undefined ? [] : [ctx.runtime.exportFilesystem(d.dockerId).then((exported) => send(exportReceiver, prep.upperDir, exported, 'full filesystem transfer'))]),
        ...this.trees.map((tree, i) => treeTransfer(tree, treeReceivers[i] as RemoteReceiver)),
      ]);
      stopWatching();
      clearInterval(progressTimer);
      if (ctx.view.host(args.targetHost)?.state === 'offline') throw new HerdError('HOST_OFFLINE', `target host ${args.targetHost} went offline during the transfer`);
      for (const r of [cp, ...fs]) if (r.status === 'rejected') throw r.reason;
      // Docker must have seen the stop before the restore (and before a rollback would start it again here).
      await stopped.catch((err: unknown) => {
        throw toHerdError(err, 'CHECKPOINT_FAILED');
      });
      const sent = (r: PromiseSettledResult<SentBytes>) => (r as PromiseFulfilledResult<SentBytes>).value;
      checkpointBytes = sent(cp).bytes;
      filesystemBytes = fs.reduce((sum, r) => sum + sent(r).bytes, 0);
      wireBytes += [cp, ...fs].reduce((sum, r) => sum + sent(r).wireBytes, 0);
      transferMs = performance.now() - transferStart;
      await this.event('transfer', 'finished', { bytes: checkpointBytes + filesystemBytes, detail: `checkpoint ${checkpointBytes} B, filesystem ${filesystemBytes} B, ${compression === 'lz4' ? `lz4-compressed to ${wireBytes} B on the network (pre-copy included)` : 'uncompressed'}` });
    } catch (err) {
      stopWatching();
      clearInterval(progressTimer);
      cancelReceivers();
      await stopped.catch(() => undefined);
      const error = toHerdError(err);
      const phase: MigrationPhase = this.record.phase === 'transferring' ? 'transfer' : 'prepare';
      await this.event(phase, 'failed', { error: error.toWire() });
      // The restore was never asked for: the target's copy cannot run.
      await askTargetToAbort(ctx, this.record, `${phase} failed`);
      throw await this.rolledBack(phase, error, await rollBackSource(ctx, this.record, error));
    }

    // 4. Restore on the target. From the moment the request may have left, the source's copy
    //    is resumed only once the target confirms that its copy does not run (source-settle.ts).
    await this.setPhase('restoring');
    await this.event('restore', 'started');
    let restored: TargetRestoreResult;
    try {
      restored = await this.awaitRestore();
      await this.event('restore', 'finished');
    } catch (err) {
      const error = toHerdError(err);
      await this.event('restore', 'failed', { error: error.toWire() });
      // Resumed here only on the target's answer to an abort (or a fence), whatever the reply said: an
      // error reply normally means the target made sure its copy does not run (target-side.ts), but a
      // reply this host could not read, or a record the target could not save after the start, is an
      // error while the copy runs.
      const settled = await this.resolveWithin(error, restoreOutcomeUnknown(err) ? undefined : `the target's restore failed [${error.code}]`);
      if (settled !== 'rolled-forward') throw await this.rolledBack('restore', error, settled);
      restored = { restoreMs: 0, runningAt: new Date().toISOString() };
    }
    const downtimeMs = performance.now() - frozenAt;
    const timings: MigrationTimings = {
      checkpointMs: round(checkpointMs),
      transferMs: round(transferMs),
      restoreMs: round(restored.restoreMs),
      totalMs: round(performance.now() - totalStart),
      downtimeMs: round(downtimeMs),
      checkpointBytes,
      filesystemBytes,
      wireBytes,
      ...(precopy === undefined ? {} : { precopyMs: round(precopy.ms), precopyBytes: precopy.bytes }),
    };
    const result: MigrationResult = { migrationId: args.migrationId, herdId: d.herdId, container: d.name, sourceHost: ctx.hostId, targetHost: args.targetHost, fsMode: args.fsMode, ...(prep.restoreWith === undefined ? {} : { restoreWith: prep.restoreWith }), compression, timings };
    // 5. The target runs: remove the source (its checkpoint goes with it), then the target commits.
    if (this.record.phase === 'restoring') await this.finishForward(result);
    await this.event('done', 'finished', { timings });
    return result;
  }

  private async finishForward(result: MigrationResult): Promise<void> {
    try {
      await rollForward(this.ctx, this.record, result);
    } catch (err) {
      // Docker refused to remove the source: the record says "restored"; the reconciler finishes it,
      // without a second `done` (this migration publishes it now: the container runs on the target).
      this.log.error({ err: (err as Error).message }, 'could not remove the source after a successful restore; the reconciler retries');
      this.record.doneAnnounced = true;
      await this.ctx.store.save(this.record).catch((e: unknown) => this.log.warn({ err: String(e) }, 'cannot record that done was published'));
    }
  }

  /**
   * The restore's reply, or the target's record when the reply is lost (a broker restart
   * drops it): the target is asked every STATUS_POLL_MS whether it runs the container.
   */
  private async awaitRestore(): Promise<TargetRestoreResult> {
    const { ctx, args } = this;
    const send = () => this.request<TargetRestoreResult>('migration.restore', { migrationId: args.migrationId }, RESTORE_TIMEOUT_MS);
    let reply = send();
    let settled = reply.then(
      () => 'reply' as const,
      () => 'reply' as const,
    );
    let notArrived = 0;
    for (;;) {
      if ((await Promise.race([settled, new Promise<'tick'>((r) => setTimeout(() => r('tick'), STATUS_POLL_MS))])) === 'reply') return reply;
      const status = await ctx.rpc.request<MigrationStatus>(args.targetHost, 'migration.status', { migrationId: args.migrationId }, { timeoutMs: 5000 }).catch(() => undefined);
      if (status?.role !== 'target') continue;
      if (status.state === 'committed' || (status.state === 'in-flight' && status.phase === 'running')) {
        this.log.warn('no reply to the restore, but the target runs the container');
        return { restoreMs: status.restoreMs ?? 0, runningAt: status.updatedAt ?? new Date().toISOString() };
      }
      if (status.state === 'aborted') throw new HerdError('RESTORE_FAILED', `the target aborted migration ${args.migrationId} (${status.detail ?? 'no detail'}) and its reply was lost`);
      // Still "prepared" twice in a row: the request was lost (published while the broker was
      // down). Send it again; a restore is idempotent per migration on the target.
      notArrived = status.state === 'in-flight' && status.phase === 'prepared' ? notArrived + 1 : 0;
      if (notArrived >= 2) {
        this.log.warn('the target never got the restore request: sending it again');
        notArrived = 0;
        const again = send();
        reply = Promise.race([reply, again]);
        settled = reply.then(
          () => 'reply' as const,
          () => 'reply' as const,
        );
      }
    }
  }

  /** Keeps resolving an in-doubt restore for a while; then leaves it to the reconciler. */
  private async resolveWithin(cause: HerdError, why?: string): Promise<Settled> {
    const deadline = Date.now() + RESOLVE_WITHIN_MS;
    for (;;) {
      const settled = await resolveInDoubt(this.ctx, this.record, cause, why).catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'resolving the restore failed');
        return 'in-doubt' as const;
      });
      if (settled !== 'in-doubt' || Date.now() > deadline) return settled;
      await new Promise((r) => setTimeout(r, 5000));
    }
  }

  /**
   * Copies the trees to the target while the container runs (after the target prepared its
   * container), one after the other, noting beforehand what each holds (fs-precopy.ts); then,
   * with `memory`, the resident pages of the container's processes (memory-precopy.ts), last,
   * so that as little as possible changes before the freeze.
   */
  private async preCopy(trees: FsTree[], prep: PrepareResult, receivers: RemoteReceiver[], done: Map<FsTree, PreCopied>, ssh: SshSessions, compression: Compression, memory: { receiver: RemoteReceiver; pid: number } | undefined): Promise<{ ms: number; bytes: number; wireBytes: number }> {
    await this.event('prepare', 'finished', { detail: `target container ${prep.targetDockerId.slice(0, 12)}` });
    await this.event('precopy', 'started');
    const start = performance.now();
    const totalBytes = trees.reduce((sum, t) => sum + t.bytes, 0);
    let moved = 0;
    let reported = 0;
    const timer = setInterval(() => {
      // A map made and unmade while the pre-copy runs is seen if it lasts this long.
      this.noteMappedWritable();
      if (moved === reported) return;
      reported = moved;
      void this.event('precopy', 'progress', { bytes: moved, ...(totalBytes > 0 ? { totalBytes: Math.max(moved, totalBytes) } : {}) });
    }, PROGRESS_INTERVAL_MS);
    try {
      let entries = 0;
      let wireBytes = 0;
      for (const [i, tree] of trees.entries()) {
        this.noteMappedWritable();
        const [archiveReceiver, blocksReceiver] = [receivers[2 * i], receivers[2 * i + 1]] as [RemoteReceiver, RemoteReceiver];
        const snapshot = await snapshotTree(tree.dir);
        const large = [...snapshot.blockFiles];
        const into = this.ctx.faults().has('fail-precopy') ? '/herd-fault-injected/upper' : tree.into(prep);
        const send = async (receiver: RemoteReceiver, source: Readable, what: string) => {
          const sent = await this.sendStream(receiver, into, source, what, (n) => (moved += n));
          wireBytes += sent.wireBytes;
          return sent;
        };
        await send(archiveReceiver, tarDirectory(tree.dir, { xattrs: true, exclude: large, live: { archived: (rel) => snapshot.archived.add(rel) } }), `${tree.what} pre-copy`);
        // The pruner of the deletions after the freeze starts now, off the downtime.
        const pruner = openPruner(ssh, into);
        pruner.catch(() => undefined);
        if (large.length === 0) {
          blocksReceiver.cancel();
          done.set(tree, { snapshot, pruner });
        } else {
          // The large files by blocks (block-delta.ts); the target replies what it holds. The receiver for their delta opens now, off the downtime.
          const state = new BlockState();
          this.blockStates.push(state);
          const receiver = openReceiver(ssh, { kind: 'blocks', compression });
          receiver.catch(() => undefined);
          done.set(tree, { snapshot, pruner, blocks: { state, receiver } });
          state.save((await send(blocksReceiver, blocksStream(tree.dir, large), `${tree.what} pre-copy of large files`)).reply);
        }
        entries += snapshot.entries.size;
      }
      let memoryDetail = '';
      if (memory !== undefined) {
        // The large files' delta senders start now, their start-up overlapping this copy instead of the
        // downtime (a container this large is likely a database, whose files change); without a memory
        // pre-copy, one starts after the freeze, and only if a large file changed.
        for (const [tree, p] of done) if (p.blocks !== undefined) p.blocks.sender = openBlocksSender(tree.dir, p.blocks.state);
        this.prior = new MemoryPrior();
        const pids = containerPids(memory.pid);
        const into = this.ctx.faults().has('fail-precopy') ? '/herd-fault-injected/images' : prep.checkpointDir;
        const sent = await this.sendStream(memory.receiver, into, priorStream(pids, this.prior), 'memory pre-copy', (n) => (moved += n));
        wireBytes += sent.wireBytes;
        memoryDetail = `${(sent.bytes / 2 ** 20).toFixed(1)} MiB of memory pages`;
      }
      const ms = performance.now() - start;
      const copied = trees.filter((t) => t.precopy);
      const what = [...(copied.length > 0 ? [`${entries} entries of ${copied.map((t) => t.what).join(', ')}`] : []), ...(memoryDetail === '' ? [] : [memoryDetail])];
      await this.event('precopy', 'finished', { durationMs: round(ms), bytes: moved, detail: `${what.join(' and ')} while running` });
      return { ms, bytes: moved, wireBytes };
    } finally {
      clearInterval(timer);
    }
  }

  /** Sends a stream through a receiver, throttled to 1 MiB/s under the slow-transfer fault (tests); logs (debug) when its first byte left and when it ended. */
  private sendStream(receiver: RemoteReceiver, dir: string, source: NodeJS.ReadableStream, what: string, onBytes: (n: number) => void): Promise<SentBytes> {
    const slow = this.ctx.faults().has('slow-transfer');
    const started = performance.now();
    let firstByteMs: number | undefined;
    const counted = (n: number) => {
      firstByteMs ??= round(performance.now() - started);
      onBytes(n);
    };
    return receiver.send(dir, slow ? (source as Readable).pipe(new Throttle(1024 * 1024)) : source, what, counted).then((sent) => {
      this.log.debug({ what, firstByteMs, ms: round(performance.now() - started), bytes: sent.bytes }, 'stream sent');
      return sent;
    });
  }

  /**
   * The trees the migration carries as files, with their sizes (du): the upper dir in diff
   * mode, and the named volumes in every mode. Also the bytes of the upper dir in full mode,
   * which its export carries (for the target's disk check).
   */
  private async filesystemTrees(): Promise<{ trees: FsTree[]; exportBytes: number }> {
    const { args, ctx, details: d } = this;
    const upper = args.fsMode === 'none' ? undefined : d.upperDir;
    const dirs = [...(upper === undefined ? [] : [upper]), ...this.volumeDirs.values()];
    const sizes = new Map<string, number>();
    const entries = new Map<string, number>();
    if (dirs.length > 0) {
      // Unknown sizes (du failed): no pre-copy decision can be made well; copy while running as configured.
      const du = async (flags: string[], into: Map<string, number>) => {
        try {
          const { stdout } = await execFileAsync('du', [...flags, '--', ...dirs], { timeout: 30_000 });
          for (const line of stdout.split('\n')) {
            const m = /^(\d+)\t(.*)$/.exec(line);
            if (m !== null) into.set(m[2] as string, Number(m[1]));
          }
        } catch {
          into.clear();
        }
      };
      await Promise.all([du(['-sb'], sizes), du(['-s', '--inodes'], entries)]);
    }
    const tree = (what: string, dir: string, mountedAt: string[], into: (prep: PrepareResult) => string): FsTree => {
      const bytes = sizes.get(dir);
      const cost = bytes === undefined ? undefined : bytes + (entries.get(dir) ?? 0) * ENTRY_COST_BYTES;
      return { what, dir, mountedAt, into, bytes: bytes ?? 0, precopy: ctx.preCopyFilesystem && (cost === undefined || cost >= ctx.preCopyFilesystemMinBytes) };
    };
    const trees: FsTree[] = [];
    if (args.fsMode === 'diff') {
      if (d.upperDir === undefined) throw new HerdError('NOT_MIGRATABLE', `container "${d.name}" has no overlay upper dir (storage driver must be overlay2): use --fs none or full`);
      trees.push(tree('filesystem', d.upperDir, ['/'], (prep) => prep.upperDir));
    }
    // Named volumes: every mode carries them (they are the container's data, not its image's filesystem).
    for (const [name, dir] of this.volumeDirs) {
      trees.push(
        tree(`volume "${name}"`, dir, (d.spec.volumes ?? []).filter((v) => v.name === name).map((v) => v.target), (prep) => {
          const into = prep.volumeDirs?.[name];
          if (into === undefined) throw new HerdError('TRANSFER_FAILED', `the target prepared no directory for volume "${name}"`);
          return into;
        }),
      );
    }
    return { trees, exportBytes: args.fsMode === 'full' && upper !== undefined ? (sizes.get(upper) ?? 0) : 0 };
  }

  /** Notes the files the container's processes map shared and writable now (see mappedWritable). */
  private noteMappedWritable(): void {
    const pid = this.details.pid;
    if (pid === undefined || this.mappedWritable === undefined) return;
    try {
      for (const path of sharedWritableFiles(containerPids(pid))) this.mappedWritable.add(path);
    } catch (err) {
      this.log.warn({ err }, 'cannot read which files the container maps shared and writable: every file of the pre-copied trees goes again after the freeze');
      this.mappedWritable = undefined;
    }
  }

  /** The entries of `tree` that count as changed after the freeze whatever their ctime: files mapped shared and writable. */
  private writtenThroughMaps(tree: FsTree): { has(rel: string): boolean } {
    if (this.mappedWritable === undefined) return { has: () => true };
    const mounts = ['/', ...this.details.mounts.map((m) => m.destination)];
    const rels = new Set<string>();
    for (const path of this.mappedWritable) {
      for (const at of tree.mountedAt) {
        const rel = treeRelative(path, at, mounts);
        if (rel !== undefined) rels.add(rel);
      }
    }
    if (rels.size > 0) this.log.info({ tree: tree.what, files: [...rels].slice(0, 20) }, 'files mapped shared and writable go again after the freeze');
    return rels;
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

  private async rolledBack(phase: MigrationPhase, cause: HerdError, settled: Settled): Promise<HerdError> {
    const { migrationId } = this.args;
    const where = `"${this.details.name}" runs on ${this.ctx.hostId}`;
    let error: HerdError;
    if (settled === 'in-doubt') {
      error = new HerdError('IN_DOUBT', `migration ${migrationId} failed in ${phase} [${cause.code}: ${cause.message}] and the target (${this.args.targetHost}) cannot be asked whether it runs the container: it stays frozen, never running twice, until that is known; ${this.ctx.hostId} keeps resolving it (herd migrate --status ${migrationId})`, { cause });
    } else if (settled === 'restarted') {
      error = new HerdError('RESTORE_FAILED', `migration ${migrationId} failed in ${phase} [${cause.code}: ${cause.message}]; restoring the source from its checkpoint also failed, so it was restarted: ${where} with its memory state lost`, { cause, retryable: false });
    } else if (settled === 'lost') {
      error = new HerdError('CONFLICT', `migration ${migrationId} failed in ${phase} [${cause.code}: ${cause.message}] and the source container was removed outside Herd meanwhile`, { cause });
    } else {
      error = new HerdError('ROLLED_BACK', `migration ${migrationId} failed in ${phase} [${cause.code}: ${cause.message}] and was rolled back: ${where}`, { cause });
    }
    await this.event('failed', 'failed', { error: error.toWire() });
    return error;
  }
}

/** All the receivers, or none: when one cannot open, those that did are closed (each holds an SSH session). */
async function allOrNone<T extends { cancel(): void } | undefined>(opening: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(opening);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed === undefined) return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
  for (const r of settled) if (r.status === 'fulfilled') r.value?.cancel();
  throw failed.reason;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
