/**
 * The control loop: windows → snapshot → policy chain → safety layer → re-check → executor.
 *
 * Evaluations run every `evaluationIntervalSeconds` after `initialDelaySeconds`, and at
 * once when a host's CPU utilisation or CPU pressure crosses its threshold in
 * `consecutiveSamples` samples in a row (the reactive trigger; at most one per
 * `minIntervalSeconds`). Every evaluation publishes what it decided and why as control
 * events. Paused or recommend-only, it plans and reports but sends nothing. Pause and
 * drains survive a restart (state.json); the history (history.jsonl) gives the safety
 * layer its cooldowns and failures back after a restart.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MAX_MESSAGE_BYTES } from '../../protocol/codec.ts';
import { replaceFileDurably, WriteQueue } from '../../protocol/durable-file.ts';
import { HerdError } from '../../protocol/errors.ts';
import type { ControlEvent, ControlMode, HostMetrics } from '../../protocol/messages.ts';
import { MAX_EVENTS_LIMIT, PROTOCOL_VERSION } from '../../protocol/messages.ts';
import { followMetrics, type MetricsMessage } from '../../protocol/metrics-view.ts';
import type { ClusterSnapshot, Plan } from '../../policies/model.ts';
import { POLICY_NAMES, type PolicyName, type PolicyStep } from '../../policies/registry.ts';
import { chainFor, configuredStep, decide, loopStep } from '../../policies/pipeline.ts';
import { emptySafetyState, recheckMove, type SafetyState } from '../../policies/safety/safety.ts';
import type { LoopConfig } from '../config.ts';
import type { MigrationSession } from '../migrations/migration-client.ts';
import { warmAggregator } from './danfo-aggregator.ts';
import { Executor } from './executor.ts';
import { HistoryStore, type MigrationRecord } from './history-store.ts';
import { buildSnapshot } from './snapshot-builder.ts';
import { SampleWindows } from './windows.ts';

export type ControlEventInput = Omit<ControlEvent, 'v' | 'nodeId' | 'at'>;

export interface LoopDeps {
  session: MigrationSession;
  log: Logger;
  publishEvent: (e: ControlEvent) => void;
  /** Called when pause, drains or the evaluation times change (the daemon republishes its status). */
  onStateChange: () => void;
  nodeId: string;
}

export interface Evaluation {
  evaluationId: string;
  trigger: 'periodic' | 'reactive' | 'manual';
  at: string;
  snapshot: ClusterSnapshot;
  /** The chain's plan, before the safety layer. */
  plan: Plan;
  /** What the safety layer let through (moves sent unless paused or recommend-only). */
  allowed: Plan;
  sent: number;
}

interface PersistedState {
  paused: boolean;
  pausedReason?: string;
  draining: string[];
}

/** Events kept for `control.events`: MAX_EVENTS_LIMIT of the protocol, the most `herd events --limit` asks for. */
export const EVENT_MEMORY = MAX_EVENTS_LIMIT;

/**
 * What the records of a `control.history` reply may take: the broker's and the readers' limit
 * (MAX_MESSAGE_BYTES) less room for the reply's envelope and the MQTT packet's own header.
 */
export const HISTORY_REPLY_BYTES = MAX_MESSAGE_BYTES - 64 * 1024;

export class ControlLoop {
  private readonly windows: SampleWindows;
  private readonly history: HistoryStore;
  private readonly executor: Executor;
  private readonly events: ControlEvent[] = [];
  private safety: SafetyState = emptySafetyState();
  private state: PersistedState = { paused: false, draining: [] };
  private timer: NodeJS.Timeout | undefined;
  private stopMetrics: (() => Promise<void>) | undefined;
  private evaluating: Promise<Evaluation> | undefined;
  private evaluationCount = 0;
  private lastEvaluation: Evaluation | undefined;
  private nextEvaluationAtMs: number | undefined;
  private lastReactiveAtMs = 0;
  private readonly overThreshold = new Map<string, number>();
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;
  private readonly stateWrites = new WriteQueue();
  private startedAtMs = Date.now();
  private readonly bootId = Date.now().toString(36);

  constructor(private readonly config: LoopConfig, private readonly deps: LoopDeps) {
    mkdirSync(config.stateDir, { recursive: true });
    this.windows = new SampleWindows(config);
    this.history = new HistoryStore(join(config.stateDir, 'history.jsonl'), (err) => deps.log.error({ err: err.message }, 'a migration history line could not be written'));
    if (this.history.skippedLines > 0) deps.log.warn({ skipped: this.history.skippedLines }, 'history lines that could not be read were skipped (a crash mid-write?)');
    this.state = this.readState();
    for (const r of this.history.all()) this.remember(r);
    this.executor = new Executor({
      session: deps.session,
      history: this.history,
      log: deps.log,
      fsMode: config.fsMode,
      timeoutMs: config.migrationTimeoutSeconds * 1000,
      onEnded: (r) => this.migrationEnded(r),
    });
  }

  async start(): Promise<void> {
    this.startedAtMs = Date.now();
    // danfojs loads in its worker meanwhile: the first evaluation need not wait for it (a failure there is the evaluation's to report).
    warmAggregator().catch(() => undefined);
    await this.executor.start();
    this.stopMetrics = await followMetrics(this.deps.session.client, (m) => this.onMetrics(m));
    const open = this.history.open();
    if (open.length > 0) {
      this.emit({ kind: 'control', message: `${open.length} migration(s) in doubt after a restart: their outcome will be asked of the hosts, none is started again (${open.map((r) => `${r.name} ${r.from} -> ${r.to}`).join(', ')})` });
      // Ask as soon as the hosts' retained lists are in (and again before every evaluation).
      setTimeout(() => this.closed || this.executor.reconcile(), 6_000).unref?.();
    }
    this.schedule(this.config.initialDelaySeconds);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.stopMetrics?.();
    await this.executor.close();
    await Promise.all([this.history.flush(), this.stateWrites.idle()]);
  }

  // ------------------------------------------------------------------ operator actions
  /** The snapshot of the latest evaluation (metrics' gauges). */
  latestSnapshot(): ClusterSnapshot | undefined {
    return this.lastEvaluation?.snapshot;
  }

  status() {
    return {
      mode: this.config.mode as ControlMode,
      paused: this.state.paused,
      ...(this.state.pausedReason === undefined ? {} : { pausedReason: this.state.pausedReason }),
      draining: [...this.state.draining],
      policies: this.config.policies.map((s) => s.policy),
      evaluations: this.evaluationCount,
      ...(this.lastEvaluation === undefined ? {} : { lastEvaluationAt: this.lastEvaluation.at, lastPlan: summarize(this.lastEvaluation) }),
      ...(this.nextEvaluationAtMs === undefined ? {} : { nextEvaluationAt: new Date(this.nextEvaluationAtMs).toISOString() }),
      inFlight: this.executor.inFlight(),
      windowSeconds: this.config.windowSeconds,
      evaluationIntervalSeconds: this.config.evaluationIntervalSeconds,
    };
  }

  async pause(reason: string | undefined): Promise<void> {
    // A new pause without a reason drops the old one: it would say why of a pause that was not this one.
    const { pausedReason: _old, ...rest } = this.state;
    this.state = { ...rest, paused: true, ...(reason === undefined ? {} : { pausedReason: reason }) };
    await this.writeState();
    this.emit({ kind: 'control', code: 'PAUSED', message: `paused${reason === undefined ? '' : `: ${reason}`}; evaluations go on, no move is sent` });
  }

  async resume(): Promise<void> {
    const { pausedReason: _r, ...rest } = this.state;
    this.state = { ...rest, paused: false };
    await this.writeState();
    this.emit({ kind: 'control', code: 'RESUMED', message: 'resumed: moves are sent again' });
  }

  async drain(host: string, cancel: boolean): Promise<{ draining: string[] }> {
    const known = this.deps.session.view.hosts().map((h) => h.hostId);
    // A drain of a host that has since left can still be cancelled.
    if (!known.includes(host) && !(cancel && this.state.draining.includes(host))) throw new HerdError('UNKNOWN_HOST', `unknown host "${host}" (known hosts: ${known.join(', ') || 'none'})`);
    const set = new Set(this.state.draining);
    if (cancel) set.delete(host);
    else set.add(host);
    this.state = { ...this.state, draining: [...set].sort() };
    await this.writeState();
    this.emit({ kind: 'control', code: cancel ? 'DRAIN_CANCELLED' : 'DRAINING', message: cancel ? `${host} is no longer drained: it takes containers again` : `draining ${host}: its containers leave (within the safety caps), none arrive` });
    if (!cancel) this.evaluateSoon('manual');
    return { draining: this.state.draining };
  }

  historyRecords(limit: number, container?: string): MigrationRecord[] {
    return this.historyReply(limit, container).records;
  }

  /**
   * The newest `limit` records (oldest first), as many of them as fit in one reply: a reply
   * over the broker's message size would be dropped, and the operator would see a timeout
   * instead of a history. `truncated` says that older ones within the limit were left out.
   */
  historyReply(limit: number, container?: string, maxBytes = HISTORY_REPLY_BYTES): { records: MigrationRecord[]; truncated?: true } {
    const wanted = this.history.all().filter((r) => container === undefined || r.name === container || r.herdId === container).slice(-limit);
    let bytes = 2; // []
    let first = wanted.length;
    while (first > 0) {
      const size = Buffer.byteLength(JSON.stringify(wanted[first - 1])) + 1; // and its comma
      if (bytes + size > maxBytes) break;
      bytes += size;
      first--;
    }
    return first === 0 ? { records: wanted } : { records: wanted.slice(first), truncated: true };
  }

  recentEvents(limit: number): ControlEvent[] {
    return this.events.slice(-limit);
  }

  /** Plans on a fresh snapshot without acting: the chain, or one policy with its arguments in the chain (its defaults when it is not in it). */
  async planOnly(policy: string | undefined): Promise<{ snapshot: ClusterSnapshot; plan: Plan; allowed: Plan }> {
    if (policy !== undefined && !POLICY_NAMES.includes(policy as PolicyName)) throw new HerdError('BAD_USAGE', `unknown policy "${policy}" (known: ${POLICY_NAMES.join(', ')})`);
    const chain = policy === undefined ? this.chain() : [loopStep(configuredStep(this.config.policies, policy as PolicyName), this.config.missingSamplesThreshold)];
    const d = decide(await this.snapshot(`plan-${Date.now()}`), chain, this.safety, this.config.safety);
    return { snapshot: d.snapshot, plan: d.plan, allowed: d.allowed };
  }

  /** Runs an evaluation now (or returns the one running). */
  evaluateNow(trigger: Evaluation['trigger'] = 'manual'): Promise<Evaluation> {
    this.evaluating ??= this.evaluate(trigger).finally(() => {
      this.evaluating = undefined;
    });
    return this.evaluating;
  }

  /** Waits for the migrations the loop has sent (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  // ------------------------------------------------------------------ the loop
  private schedule(delaySeconds: number): void {
    if (this.closed || !this.config.enabled) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.nextEvaluationAtMs = Date.now() + delaySeconds * 1000;
    this.timer = setTimeout(() => {
      this.evaluateNow('periodic')
        .catch((err: unknown) => this.deps.log.error({ err: String(err) }, 'evaluation failed'))
        .finally(() => this.schedule(this.config.evaluationIntervalSeconds));
    }, delaySeconds * 1000);
    this.timer.unref?.();
    this.deps.onStateChange();
  }

  private evaluateSoon(trigger: Evaluation['trigger']): void {
    setImmediate(() => {
      if (this.closed) return;
      this.evaluateNow(trigger).catch((err: unknown) => this.deps.log.error({ err: String(err) }, 'evaluation failed'));
    });
  }

  private onMetrics(m: MetricsMessage): void {
    if (m.kind === 'containers') {
      this.windows.addContainers(m.batch);
      return;
    }
    this.windows.addHost(m.sample);
    this.reactive(m.sample);
  }

  /** The reactive trigger: consecutive host samples over a threshold. */
  private reactive(s: HostMetrics): void {
    const r = this.config.reactive;
    if (!r.enabled || !this.config.enabled || s.stale) return;
    const over = (s.cpuUtil ?? 0) >= r.cpuUtil || (s.pressure?.cpuSomeAvg10sPct ?? 0) >= r.cpuPressurePct;
    const n = over ? (this.overThreshold.get(s.hostId) ?? 0) + 1 : 0;
    this.overThreshold.set(s.hostId, n);
    if (n < r.consecutiveSamples) return;
    const now = Date.now();
    if (now - this.lastReactiveAtMs < r.minIntervalSeconds * 1000 || this.evaluating !== undefined) return;
    // Not before one window of samples could arrive.
    if (now - this.startedAtMs < this.config.windowSeconds * 1000) return;
    this.lastReactiveAtMs = now;
    this.overThreshold.set(s.hostId, 0);
    this.emit({ kind: 'trigger', code: 'HOST_OVER_THRESHOLD', message: `${s.hostId}: CPU ${((s.cpuUtil ?? 0) * 100).toFixed(0)} %${s.pressure?.cpuSomeAvg10sPct === undefined ? '' : `, CPU pressure ${s.pressure.cpuSomeAvg10sPct.toFixed(0)} %`} in ${n} samples in a row: evaluating now` });
    this.evaluateSoon('reactive');
  }

  private chain(): PolicyStep[] {
    return chainFor(this.config.policies, { missingSamplesThreshold: this.config.missingSamplesThreshold, draining: this.state.draining.length > 0 });
  }

  private async snapshot(version: string): Promise<ClusterSnapshot> {
    const nowMs = Date.now();
    const aggregates = await this.windows.aggregate(nowMs);
    return buildSnapshot({
      version,
      nowMs,
      windowSeconds: this.config.windowSeconds,
      view: this.deps.session.view,
      aggregates,
      inFlight: this.executor.inFlight(),
      draining: new Set(this.state.draining),
      hostCores: (h) => this.windows.hostCores(h),
      windowRestartedAt: (h) => this.windows.restartedAt(h, nowMs),
    });
  }

  private async evaluate(trigger: Evaluation['trigger']): Promise<Evaluation> {
    this.executor.reconcile();
    // Unique across restarts: the history keeps evaluation ids.
    const evaluationId = `e-${this.bootId}-${++this.evaluationCount}`;
    const planStarted = performance.now();
    const { snapshot, plan, allowed, state, rules } = decide(await this.snapshot(evaluationId), this.chain(), this.safety, this.config.safety);
    const durationMs = performance.now() - planStarted;
    this.safety = { ...state, lastMovedAtMs: this.safety.lastMovedAtMs, lastFailedAtMs: this.safety.lastFailedAtMs };
    const acting = this.config.mode === 'act' && !this.state.paused;
    const evaluation: Evaluation = { evaluationId, trigger, at: new Date(snapshot.nowMs).toISOString(), snapshot, plan, allowed, sent: 0 };
    this.lastEvaluation = evaluation;
    const why = acting ? '' : this.state.paused ? ' (paused: nothing is sent)' : ' (recommend-only: nothing is sent)';
    this.emit({ kind: 'evaluation', evaluationId, policy: plan.policy, proposed: plan.moves.length, allowed: allowed.moves.length, durationMs, message: `${trigger} evaluation ${evaluationId}: ${snapshot.hosts.filter((h) => h.online).length} host(s), ${snapshot.containers.length} container(s), ${snapshot.inFlight.length} in flight; ${plan.policy} proposed ${plan.moves.length} move(s), ${allowed.moves.length} allowed${why}` });
    for (const a of allowed.annotations) {
      this.emit({ kind: a.level === 'veto' ? 'veto' : 'annotation', evaluationId, code: a.code, ...(a.policy === undefined ? {} : { policy: a.policy }), ...(a.herdId === undefined ? {} : { herdId: a.herdId }), message: a.message });
    }
    if (acting) {
      for (const move of allowed.moves) {
        // The last look, against fresh state (the window's figures, the hosts' lists now).
        const fresh = await this.snapshot(`${evaluationId}-recheck`);
        // Paused, closed or switched while this evaluation ran: nothing more is sent.
        if (this.stoppedWhy() !== undefined) {
          this.emit({ kind: 'veto', evaluationId, code: 'PAUSED', policy: move.policy, herdId: move.herdId, container: move.name, message: `${move.name} ${move.from} -> ${move.to} not sent: the loop was paused or stopped during the evaluation` });
          break;
        }
        const stale = recheckMove(move, fresh, this.safety, rules);
        if (stale !== undefined) {
          this.emit({ kind: 'veto', evaluationId, code: stale.code, policy: move.policy, herdId: move.herdId, container: move.name, from: move.from, to: move.to, message: `${move.name} ${move.from} -> ${move.to} not sent: ${stale.message}` });
          continue;
        }
        evaluation.sent++;
        this.emit({ kind: 'move', evaluationId, code: move.reasonCode, policy: move.policy, herdId: move.herdId, container: move.name, from: move.from, to: move.to, message: `${move.name} ${move.from} -> ${move.to}: ${move.reason}` });
        const p = this.executor
          .execute(move, evaluationId, () => this.stoppedWhy())
          .then((r) => {
            if ('notSent' in r) this.emit({ kind: 'veto', evaluationId, code: 'NOT_SENT', policy: move.policy, herdId: move.herdId, container: move.name, from: move.from, to: move.to, message: `${move.name} ${move.from} -> ${move.to} not sent: ${r.notSent}` });
          })
          .catch((err: unknown) => this.deps.log.error({ err: String(err) }, 'executor failed'));
        this.running.add(p);
        void p.finally(() => this.running.delete(p));
      }
    }
    this.deps.onStateChange();
    return evaluation;
  }

  /** Why no move may be sent now (paused, closed, not in act mode); undefined when moves may go. */
  private stoppedWhy(): string | undefined {
    if (this.closed) return 'the control loop was stopped';
    if (this.state.paused) return 'the loop was paused';
    if (this.config.mode !== 'act') return `the loop is in ${this.config.mode} mode`;
    return undefined;
  }

  private migrationEnded(r: MigrationRecord): void {
    this.remember(r);
    if (r.outcome === 'done') this.windows.forgetHosts([r.from, r.to], r.endedAt === undefined ? Date.now() : Date.parse(r.endedAt));
    const t = r.timings;
    const figures = t === undefined ? '' : `: downtime ${t.downtimeMs.toFixed(0)} ms, total ${t.totalMs.toFixed(0)} ms`;
    const error = r.error === undefined ? '' : ` [${r.error.code}] ${r.error.message}`;
    this.emit({
      kind: 'migration',
      migrationId: r.migrationId,
      herdId: r.herdId,
      container: r.name,
      from: r.from,
      to: r.to,
      outcome: r.outcome ?? 'unknown',
      ...(r.policy === undefined ? {} : { policy: r.policy }),
      ...(t === undefined ? {} : { downtimeMs: t.downtimeMs, totalMs: t.totalMs }),
      message: `${r.name} ${r.from} -> ${r.to} ${r.outcome ?? 'unknown'}${r.manual ? ' (manual)' : ''}${figures}${error}`,
    });
  }

  /** Feeds a finished migration to the safety layer's memory. */
  private remember(r: MigrationRecord): void {
    if (r.outcome === undefined || r.endedAt === undefined) return;
    const at = Date.parse(r.endedAt);
    if (r.outcome === 'done') this.safety.lastMovedAtMs[r.herdId] = Math.max(at, this.safety.lastMovedAtMs[r.herdId] ?? 0);
    else this.safety.lastFailedAtMs[r.herdId] = Math.max(at, this.safety.lastFailedAtMs[r.herdId] ?? 0);
  }

  /** Keeps an event raised beside the loop (the placement guard) with the loop's own, so that `herd events` shows both. */
  keepEvent(event: ControlEvent): void {
    this.events.push(event);
    if (this.events.length > EVENT_MEMORY) this.events.splice(0, this.events.length - EVENT_MEMORY);
    this.deps.publishEvent(event);
  }

  private emit(e: ControlEventInput): void {
    const event: ControlEvent = { v: PROTOCOL_VERSION, nodeId: this.deps.nodeId, at: new Date().toISOString(), ...e };
    this.events.push(event);
    if (this.events.length > EVENT_MEMORY) this.events.splice(0, this.events.length - EVENT_MEMORY);
    this.deps.log.info({ kind: e.kind, code: e.code, migrationId: e.migrationId }, e.message);
    this.deps.publishEvent(event);
  }

  private readState(): PersistedState {
    const file = join(this.config.stateDir, 'state.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.config.startPaused ? { paused: true, pausedReason: 'started paused (loop.startPaused)', draining: [] } : { paused: false, draining: [] };
      return this.unreadableState(file, err);
    }
    try {
      const s = JSON.parse(text) as Partial<PersistedState>;
      return { paused: s.paused === true, ...(typeof s.pausedReason === 'string' ? { pausedReason: s.pausedReason } : {}), draining: Array.isArray(s.draining) ? s.draining.filter((h): h is string => typeof h === 'string') : [] };
    } catch (err) {
      return this.unreadableState(file, err);
    }
  }

  /** A saved pause or drain must not be forgotten silently: start paused and say why. */
  private unreadableState(file: string, err: unknown): PersistedState {
    const reason = `${file} could not be read (${err instanceof Error ? err.message : String(err)}): started paused; check pauses and drains, then "herd control resume"`;
    this.deps.log.error({ file }, reason);
    return { paused: true, pausedReason: reason, draining: [] };
  }

  /** Writes the state as it is when the write runs (writes queue: the last one leaves the latest state). */
  private async writeState(): Promise<void> {
    await this.stateWrites.run(() => replaceFileDurably(join(this.config.stateDir, 'state.json'), `${JSON.stringify(this.state, null, 2)}\n`));
    this.deps.onStateChange();
  }
}

function summarize(e: Evaluation) {
  return { evaluationId: e.evaluationId, trigger: e.trigger, policy: e.plan.policy, proposed: e.plan.moves.length, allowed: e.allowed.moves.length, sent: e.sent, moves: e.allowed.moves, annotations: e.allowed.annotations };
}
