/**
 * Runs the exactly-once check (placement-check.ts) over the control daemon's cluster view
 * on a timer (every 15 s), publishes each finding as a `placement` control event, logs it,
 * and repairs a duplicate by sending `container.stop` for each copy the check says to stop,
 * then publishes the repair's outcome.
 *
 * - One repair at a time per Herd id: while a stop is pending, later checks send none for
 *   that Herd id.
 * - After a repair ends (whatever its outcome) the check forgets the duplicate, so it must be
 *   seen again over the grace period before anything more is sent: the host's retained list
 *   has time to show the stopped copy, and a failing stop is retried at that pace.
 * - `holdRepairs` (the daemon: recommend mode or paused) holds repairs back: the finding is
 *   still published, saying what would be done; nothing is sent.
 */
import type { Logger } from 'pino';
import { toHerdError } from '../../protocol/errors.ts';
import { PROTOCOL_VERSION, type ContainerSummary, type ControlEvent, type HostStatus } from '../../protocol/messages.ts';
import { isNoReply, type CommandClient } from '../../protocol/rpc.ts';
import { checkPlacement, DEFAULT_PLACEMENT_GRACE_MS, forgetDuplicate, type PlacementFinding, type PlacementMemory, type Repair } from './placement-check.ts';

export const PLACEMENT_CHECK_INTERVAL_MS = 15_000;

const FINDING_CODES: Record<PlacementFinding['kind'], string> = {
  duplicate: 'DUPLICATE',
  'not-running': 'NOT_RUNNING',
  'host-offline': 'HOST_OFFLINE',
};

export interface PlacementGuardDeps {
  view: { hosts(): HostStatus[]; containers(): ContainerSummary[] };
  rpc: Pick<CommandClient, 'request'>;
  log: Logger;
  nodeId: string;
  publishEvent: (e: ControlEvent) => void;
  /** Why repairs are held back right now (report only), or undefined to act. */
  holdRepairs?: () => string | undefined;
}

export interface PlacementGuardOptions {
  intervalMs?: number;
  /** See PlacementCheckOptions.graceMs. */
  graceMs?: number;
  /** Docker's stop timeout for a duplicate copy (SIGTERM, then SIGKILL). */
  stopTimeoutSeconds?: number;
  /** How long to wait for the host's reply to `container.stop`. */
  requestTimeoutMs?: number;
  now?: () => number;
}

export class PlacementGuard {
  private memory: PlacementMemory | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly pending = new Map<string, Promise<void>>();
  private closed = false;
  private readonly intervalMs: number;
  private readonly graceMs: number;
  private readonly stopTimeoutSeconds: number;
  private readonly requestTimeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly deps: PlacementGuardDeps, options: PlacementGuardOptions = {}) {
    this.intervalMs = options.intervalMs ?? PLACEMENT_CHECK_INTERVAL_MS;
    this.graceMs = options.graceMs ?? DEFAULT_PLACEMENT_GRACE_MS;
    this.stopTimeoutSeconds = options.stopTimeoutSeconds ?? 10;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setInterval(() => {
      try {
        this.check();
      } catch (err) {
        this.deps.log.error({ err: String(err) }, 'placement check failed');
      }
    }, this.intervalMs);
    this.timer.unref?.();
  }

  /** Runs one check now: publishes its findings and starts its repairs (not awaited; see settle). */
  check(): { findings: PlacementFinding[]; repairs: Repair[] } {
    const result = checkPlacement(this.memory, { hosts: this.deps.view.hosts(), containers: this.deps.view.containers() }, this.now(), { graceMs: this.graceMs });
    this.memory = result.memory;
    const held = result.repairs.length > 0 ? this.deps.holdRepairs?.() : undefined;
    for (const f of result.findings) {
      const suffix = f.kind === 'duplicate' && held !== undefined ? ` (repair held: ${held})` : '';
      this.emit({ kind: 'placement', code: FINDING_CODES[f.kind], herdId: f.herdId, container: f.name, hosts: f.hosts, message: `${f.reason}${suffix}` }, 'warn');
    }
    if (held !== undefined) {
      if (result.repairs.length > 0) this.deps.log.debug({ held, repairs: result.repairs.length }, 'placement repairs held');
      return result;
    }
    const started = new Set<string>();
    for (const r of result.repairs) {
      if (this.pending.has(r.herdId) && !started.has(r.herdId)) {
        this.deps.log.debug({ herdId: r.herdId, hostId: r.hostId }, 'placement repair still pending: not repeated');
        continue;
      }
      started.add(r.herdId);
      const before = this.pending.get(r.herdId);
      const run = this.repair(r, before).catch((err: unknown) => this.deps.log.error({ herdId: r.herdId, hostId: r.hostId, err: String(err) }, 'placement repair failed'));
      this.pending.set(r.herdId, run);
      void run.finally(() => {
        if (this.pending.get(r.herdId) === run) this.pending.delete(r.herdId);
      });
    }
    return result;
  }

  /** Waits for the repairs under way (tests). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending.values()]);
  }

  /** Stops the timer. Repairs under way end on their own; their outcome is only logged. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops one copy (after `before`, another copy of the same Herd id started by the same check). */
  private async repair(r: Repair, before: Promise<void> | undefined): Promise<void> {
    await before;
    this.deps.log.warn({ herdId: r.herdId, hostId: r.hostId, container: r.container }, r.reason);
    let outcome: 'done' | 'failed' | 'unknown';
    let detail: string;
    try {
      await this.deps.rpc.request(r.hostId, 'container.stop', { container: r.container, timeoutSeconds: this.stopTimeoutSeconds }, { timeoutMs: this.requestTimeoutMs });
      outcome = 'done';
      detail = `stopped the duplicate of ${r.name} (${r.herdId}) on ${r.hostId} (${r.container.slice(0, 12)}); the copy on ${r.keep.hostId} (${r.keep.container.slice(0, 12)}) runs on`;
    } catch (err) {
      const e = toHerdError(err);
      outcome = isNoReply(err) ? 'unknown' : 'failed';
      detail =
        outcome === 'unknown'
          ? `no answer from ${r.hostId} to stopping the duplicate of ${r.name} (${r.herdId}) (${e.message}): it may or may not be stopped; the check looks again`
          : `could not stop the duplicate of ${r.name} (${r.herdId}) on ${r.hostId}: ${e.code}: ${e.message}; the check tries again once the duplicate is seen again`;
    }
    if (this.memory !== undefined) this.memory = forgetDuplicate(this.memory, r.herdId);
    this.emit({ kind: 'placement', code: 'DUPLICATE_STOPPED', outcome, herdId: r.herdId, container: r.name, hosts: [r.hostId], message: detail }, outcome === 'done' ? 'info' : 'warn');
  }

  private emit(e: Omit<ControlEvent, 'v' | 'nodeId' | 'at'>, level: 'info' | 'warn'): void {
    this.deps.log[level]({ kind: e.kind, code: e.code, herdId: e.herdId, hosts: e.hosts, outcome: e.outcome }, e.message);
    if (this.closed) return;
    const event: ControlEvent = { v: PROTOCOL_VERSION, nodeId: this.deps.nodeId, at: new Date(this.now()).toISOString(), ...e };
    this.deps.publishEvent(event);
  }
}
