/**
 * The executor: sends the moves the loop decided (`migration.start` through the shared
 * migration client), follows every migration's events — its own and manual ones — to the
 * end, and records each outcome with its timings in the history. What is in flight (both
 * kinds) goes into the next snapshot, so the policies and the safety layer see it.
 *
 * After a restart, migrations the history has as started but not ended are "in doubt":
 * their outcome is learned from the hosts (where does the container run now, is it still
 * migrating), never guessed, and never started again.
 */
import type { Logger } from 'pino';
import { decode } from '../../protocol/codec.ts';
import { HerdError, toHerdError } from '../../protocol/errors.ts';
import { isNoReply } from '../../protocol/rpc.ts';
import { newMigrationId } from '../../protocol/ids.ts';
import { migrationEventSchema, type FsMode, type MigrationEvent, type MigrationStatus } from '../../protocol/messages.ts';
import { parseTopic, topics } from '../../protocol/topics.ts';
import type { MigrationInFlight, Move } from '../../policies/model.ts';
import { migrateOnce, outcomeOf as outcomeOfStatus, type MigrationSession } from '../migrations/migration-client.ts';
import type { HistoryStore, MigrationRecord, Outcome } from './history-store.ts';

export interface ExecutorDeps {
  session: MigrationSession;
  history: HistoryStore;
  log: Logger;
  fsMode: FsMode;
  timeoutMs: number;
  /** Called when a migration ends (its record complete). */
  onEnded: (record: MigrationRecord) => void;
  now?: () => number;
}

interface Tracked {
  record: MigrationRecord;
  startedAtMs: number;
  /** When its last event arrived (ms), if any did. */
  lastEventAtMs?: number;
}

const outcomeOf = (code: string | undefined): Outcome => (code === 'ROLLED_BACK' ? 'rolled-back' : code === 'TIMEOUT' ? 'timeout' : 'failed');

/** A migration whose events arrived this recently is still going on, whatever the lists say. */
const RECENT_EVENT_MS = 120_000;
/** How long the source host is given to say how a migration ended. */
const STATUS_TIMEOUT_MS = 5_000;

export class Executor {
  private readonly tracked = new Map<string, Tracked>();
  /** Own migrations whose `migration.start` reply is awaited. */
  private readonly inProgress = new Set<string>();
  /** Migrations whose outcome their source host is being asked for. */
  private readonly asking = new Set<string>();
  private readonly now: () => number;
  private unsubscribe: (() => Promise<void>) | undefined;

  constructor(private readonly deps: ExecutorDeps) {
    this.now = deps.now ?? Date.now;
    for (const r of deps.history.open()) this.tracked.set(r.migrationId, { record: r, startedAtMs: Date.parse(r.startedAt) });
  }

  /** Follows every migration's events on the broker (manual ones too). */
  async start(): Promise<void> {
    const { client } = this.deps.session;
    const onMessage = (topic: string, payload: Buffer) => {
      if (parseTopic(topic)?.kind !== 'migrationEvents') return;
      try {
        this.observe(decode(migrationEventSchema, payload, 'migration event'));
      } catch (err) {
        this.deps.log.debug({ topic, err: (err as Error).message }, 'ignored malformed migration event');
      }
    };
    client.on('message', onMessage);
    await client.subscribeAsync(topics.allMigrationEvents, { qos: 1 });
    this.unsubscribe = async () => {
      client.off('message', onMessage);
      if (client.connected) await client.unsubscribeAsync(topics.allMigrationEvents).catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    await this.unsubscribe?.();
  }

  inFlight(): MigrationInFlight[] {
    return [...this.tracked.values()].map((t) => ({ migrationId: t.record.migrationId, herdId: t.record.herdId, sourceHost: t.record.from, targetHost: t.record.to, manual: t.record.manual, startedAtMs: t.startedAtMs }));
  }

  /**
   * Sends one move. Resolves when the migration has ended (the outcome is in the history),
   * or with the reason it was not sent (its container or a host is gone: nothing recorded;
   * `stopped` says why not, once its history line is written: recorded as failed, not sent).
   */
  async execute(move: Move, evaluationId: string, stopped: () => string | undefined = () => undefined): Promise<MigrationRecord | { notSent: string }> {
    try {
      this.deps.session.view.findContainer(move.herdId);
      this.deps.session.view.requireOnline(move.from);
      this.deps.session.view.requireOnline(move.to);
    } catch (err) {
      return { notSent: toHerdError(err).message };
    }
    const migrationId = newMigrationId();
    const record: MigrationRecord = { migrationId, herdId: move.herdId, name: move.name, from: move.from, to: move.to, manual: false, policy: move.policy, reasonCode: move.reasonCode, reason: move.reason, evaluationId, startedAt: new Date(this.now()).toISOString() };
    // In flight from now on (the next evaluation must not move this container again), though not sent yet.
    this.tracked.set(migrationId, { record, startedAtMs: this.now() });
    this.inProgress.add(migrationId);
    // Durable intent first: a restart from here on finds it and asks how it ended.
    try {
      await this.deps.history.started(record);
    } catch (err) {
      this.tracked.delete(migrationId);
      this.inProgress.delete(migrationId);
      return { notSent: `the migration history could not be written: ${(err as Error).message}` };
    }
    // Paused or closed while the line was written: an operator was told no move is sent.
    const why = stopped();
    if (why !== undefined) {
      this.inProgress.delete(migrationId);
      this.end(migrationId, 'failed', { error: new HerdError('CONFLICT', `not sent: ${why}`).toWire(), learnedBy: 'reply' });
      return { notSent: why };
    }
    const log = this.deps.log.child({ migrationId });
    log.info({ container: move.name, from: move.from, to: move.to, reason: move.reason }, 'migration sent');
    try {
      const result = await migrateOnce(this.deps.session, move.herdId, move.to, this.deps.fsMode, () => undefined, undefined, { migrationId, timeoutMs: this.deps.timeoutMs });
      return this.end(migrationId, 'done', { timings: result.timings, learnedBy: 'reply' }) ?? this.deps.history.get(migrationId) ?? record;
    } catch (err) {
      const error = toHerdError(err);
      if (isNoReply(err)) {
        // No answer is not an outcome: the migration may have finished. Its record stays
        // open (in flight) until its final event arrives or the hosts tell (reconcile).
        log.warn({ code: error.code, err: error.message }, 'migration outcome in doubt: will ask the hosts');
        return this.deps.history.get(migrationId) ?? record;
      }
      log.warn({ code: error.code, err: error.message }, 'migration did not complete');
      return this.end(migrationId, outcomeOf(error.code), { error: error.toWire(), learnedBy: 'reply' }) ?? this.deps.history.get(migrationId) ?? record;
    } finally {
      this.inProgress.delete(migrationId);
    }
  }

  /** A migration event from the broker: tracks manual migrations, ends any migration on its final event. */
  observe(e: MigrationEvent): void {
    // A migration first seen here is a manual one (or one whose first events were missed): record it, even on its final event.
    if (!this.tracked.has(e.migrationId) && this.deps.history.get(e.migrationId) === undefined) {
      const record: MigrationRecord = { migrationId: e.migrationId, herdId: e.herdId, name: e.container, from: e.sourceHost, to: e.targetHost, manual: true, reason: 'started outside the control loop (herd migrate)', startedAt: e.at };
      // Not awaited: nothing waits on this record (a failed write is logged by the history).
      this.deps.history.started(record).catch(() => undefined);
      this.tracked.set(e.migrationId, { record, startedAtMs: Date.parse(e.at), lastEventAtMs: this.now() });
    }
    const t = this.tracked.get(e.migrationId);
    if (t !== undefined) t.lastEventAtMs = this.now();
    if (e.phase === 'done' && e.status === 'finished') this.end(e.migrationId, 'done', { ...(e.timings === undefined ? {} : { timings: e.timings }), learnedBy: 'events', at: e.at });
    // In doubt is not an end: the source keeps resolving it, and says how it ended when it has.
    else if (e.phase === 'failed' && e.error?.code !== 'IN_DOUBT') this.end(e.migrationId, outcomeOf(e.error?.code), { ...(e.error === undefined ? {} : { error: e.error as never }), learnedBy: 'events', at: e.at });
  }

  /**
   * Settles migrations in doubt against what the hosts report: a container running on its
   * target (and no longer migrating) moved; one running on its source, not migrating,
   * did not. Running nowhere (removed since, say): the source host's record or tombstone
   * says how it ended (asked). Still migrating: wait (up to the timeout, then ask again next time).
   */
  reconcile(): void {
    const containers = this.deps.session.view.containers();
    for (const [id, t] of this.tracked) {
      const copies = containers.filter((c) => c.herdId === t.record.herdId);
      const running = copies.find((c) => c.state === 'running');
      const busy = copies.some((c) => c.migrationId !== undefined);
      const age = this.now() - t.startedAtMs;
      // Our own migrations awaiting their reply end by it (or by its timeout); recent events mean it goes on.
      const recent = t.lastEventAtMs !== undefined && this.now() - t.lastEventAtMs < RECENT_EVENT_MS;
      if (busy || recent || age < 5_000 || this.inProgress.has(id)) continue;
      if (running?.hostId === t.record.to) this.end(id, 'done', { learnedBy: 'reconcile' });
      else if (running?.hostId === t.record.from) this.end(id, 'failed', { learnedBy: 'reconcile' });
      else if (age > this.deps.timeoutMs) this.end(id, 'unknown', { learnedBy: 'reconcile' });
      else this.askSource(id, t.record.from);
    }
  }

  /** Asks the source host how a migration ended: its record or tombstone (no answer: asked again at the next reconcile). */
  private askSource(migrationId: string, sourceHost: string): void {
    if (this.asking.has(migrationId)) return;
    this.asking.add(migrationId);
    this.deps.session.rpc
      .request<MigrationStatus>(sourceHost, 'migration.status', { migrationId }, { timeoutMs: STATUS_TIMEOUT_MS })
      .then(
        (status) => {
          const outcome = outcomeOfStatus(status);
          if (outcome === undefined || !this.tracked.has(migrationId) || this.inProgress.has(migrationId)) return;
          const at = status.updatedAt === undefined ? {} : { at: status.updatedAt };
          if (outcome instanceof HerdError) this.end(migrationId, outcomeOf(outcome.code), { learnedBy: 'reconcile', error: outcome.toWire(), ...at });
          else this.end(migrationId, 'done', { learnedBy: 'reconcile', ...(outcome.timings === undefined ? {} : { timings: outcome.timings }), ...at });
        },
        (err: unknown) => this.deps.log.debug({ migrationId, sourceHost, err: (err as Error).message }, 'the source host did not say how a migration ended; asked again at the next reconcile'),
      )
      .finally(() => this.asking.delete(migrationId));
  }

  private end(migrationId: string, outcome: Outcome, extra: Parameters<HistoryStore['ended']>[2]): MigrationRecord | undefined {
    this.tracked.delete(migrationId);
    const r = this.deps.history.ended(migrationId, outcome, extra);
    if (r !== undefined) this.deps.onEnded(r);
    return r;
  }
}
