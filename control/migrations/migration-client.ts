/**
 * The migration client the CLI (`herd migrate`), the demo and the control loop's executor
 * share: sends `migration.start` to the container's host, follows the migration's events
 * and resolves with its result (or throws its error: ROLLED_BACK, RESTORE_FAILED, ...).
 */
import { decode } from '../../protocol/codec.ts';
import type { ClusterView } from '../../protocol/cluster-view.ts';
import { newMigrationId } from '../../protocol/ids.ts';
import { HerdError } from '../../protocol/errors.ts';
import { migrationEventSchema, type Compression, type FsMode, type RestorePath, type MigrationEvent, type MigrationResult, type MigrationStatus } from '../../protocol/messages.ts';
import type { MqttClient } from '../../protocol/mqtt.ts';
import type { CommandClient } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';

/** What a migration needs of a broker session. */
export interface MigrationSession {
  client: MqttClient;
  rpc: CommandClient;
  view: ClusterView;
}

/** A migration may wait for CRIU jobs queued on both hosts: generous, but bounded. */
export const MIGRATION_TIMEOUT_MS = 15 * 60_000;

/** An ISO time as the local wall clock, HH:MM:SS.mmm: what the dashboard shows (JSON output keeps the ISO UTC time). */
export function localClock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * A done migration as the CLI and the loop learn it: its result, or (its source's tombstone
 * said done but kept no result) only what is known for sure: no timings, no fs mode.
 */
export type MigrationOutcome = MigrationResult | (Omit<MigrationResult, 'herdId' | 'fsMode' | 'timings'> & Partial<Pick<MigrationResult, 'herdId' | 'fsMode' | 'timings'>>);

export function describeEvent(e: MigrationEvent): string {
  const took = e.durationMs === undefined ? '' : ` ${e.durationMs.toFixed(1)} ms`;
  const bytes = e.bytes === undefined ? '' : ` ${(e.bytes / 2 ** 20).toFixed(2)} MiB`;
  const detail = e.detail === undefined ? '' : ` (${e.detail})`;
  const error = e.error === undefined ? '' : ` [${e.error.code}] ${e.error.message}`;
  return `${localClock(e.at)}  ${e.phase.padEnd(10)} ${e.status}${took}${bytes}${detail}${error}`;
}

export function formatTimings(r: MigrationOutcome): string {
  const t = r.timings;
  if (t === undefined) {
    return [
      `migrated ${r.container} ${r.sourceHost} -> ${r.targetHost} (${r.fsMode === undefined ? '' : `fs ${r.fsMode}, `}${r.migrationId})`,
      `  timings unknown: the source recorded the migration as done but not its result (herd migrate --status ${r.migrationId})`,
    ].join('\n');
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  return [
    `migrated ${r.container} ${r.sourceHost} -> ${r.targetHost} (fs ${r.fsMode ?? 'unknown'}${r.restoreWith === undefined ? '' : `, restore ${r.restoreWith}`}${r.compression === undefined || r.compression === 'none' ? '' : `, ${r.compression}`}, ${r.migrationId})`,
    `  checkpoint ${t.checkpointMs.toFixed(1)} ms   transfer ${t.transferMs.toFixed(1)} ms   restore ${t.restoreMs.toFixed(1)} ms`,
    `  downtime   ${t.downtimeMs.toFixed(1)} ms   total ${t.totalMs.toFixed(1)} ms`,
    `  bytes      checkpoint ${mib(t.checkpointBytes)}   filesystem ${mib(t.filesystemBytes)}${t.precopyBytes === undefined ? '' : `   pre-copy ${mib(t.precopyBytes)}`}${t.wireBytes === undefined ? '' : `   on the network ${mib(t.wireBytes)}`}`,
  ].join('\n');
}

/**
 * Runs one migration through the session, calling onEvent for each of its events; resolves
 * with the result or throws the migration's error. `onStart` gets the lines to show the
 * operator: the start, and notes while the outcome is awaited (the broker away).
 */
export async function migrateOnce(
  session: MigrationSession,
  container: string,
  to: string,
  fsMode: FsMode,
  onEvent: (e: MigrationEvent) => void,
  onStart?: (line: string) => void,
  options: { migrationId?: string; timeoutMs?: number; restoreWith?: RestorePath; compression?: Compression; /** For tests: how often the source is asked. */ pollEveryMs?: number } = {},
): Promise<MigrationOutcome> {
  const { view, rpc, client } = session;
  const found = view.findContainer(container);
  // No copy runs and the one listed takes part in a migration: it is frozen on its source or
  // prepared on its target. Asking "its" host would ask the wrong one (the target's copy).
  if (found.state !== 'running' && found.migrationId !== undefined) {
    throw new HerdError('ALREADY_MIGRATING', `container "${found.name}" has migration ${found.migrationId} in flight; wait for it (herd migrate --status ${found.migrationId})`);
  }
  if (found.hostId === to) throw new HerdError('CONFLICT', `container "${found.name}" already runs on ${to}`);
  view.requireOnline(found.hostId);
  view.requireOnline(to);
  const migrationId = options.migrationId ?? newMigrationId();
  const eventsTopic = topics.migrationEvents(migrationId);
  const listener = (topic: string, payload: Buffer) => {
    if (topic !== eventsTopic) return;
    try {
      onEvent(decode(migrationEventSchema, payload, 'migration event'));
    } catch {
      // a malformed event is not ours to print
    }
  };
  client.on('message', listener);
  try {
    await client.subscribeAsync(eventsTopic, { qos: 1 });
    const sourceSince = view.host(found.hostId)?.since; // the source daemon's start: a restart changes it
    onStart?.(`migrating ${found.name} (${found.herdId}) from ${found.hostId} to ${to}, fs ${fsMode}, id ${migrationId}`);
    const started = rpc.request<MigrationOutcome>(found.hostId, 'migration.start', { migrationId, container: found.herdId, targetHost: to, fsMode, ...(options.restoreWith === undefined ? {} : { restoreWith: options.restoreWith }), ...(options.compression === undefined ? {} : { compression: options.compression }) }, { timeoutMs: options.timeoutMs ?? MIGRATION_TIMEOUT_MS });
    // The reply can be lost (the source's daemon restarted, the broker restarted): the source's
    // record or tombstone still says how the migration ended, so ask it now and then.
    const polled = new AbortController();
    const asked = { herdId: found.herdId, container: found.name, targetHost: to };
    const outcome = pollOutcome(session, found.hostId, sourceSince, migrationId, asked, polled.signal, onStart, options.pollEveryMs);
    started.catch(() => undefined);
    outcome.catch(() => undefined);
    try {
      const result = await Promise.race([started, outcome]);
      await new Promise((r) => setTimeout(r, 100)); // let the last events arrive
      return result;
    } finally {
      polled.abort();
    }
  } finally {
    client.off('message', listener);
    await client.unsubscribeAsync(eventsTopic).catch(() => undefined);
  }
}

const POLL_EVERY_MS = 10_000;

/** Asks every host that answers what it knows of a migration (source and target views). */
export async function migrationStatusEverywhere(session: MigrationSession, migrationId: string): Promise<MigrationStatus[]> {
  const hosts = session.view.hosts().filter((h) => h.state === 'online');
  const answers = await Promise.all(hosts.map((h) => session.rpc.request<MigrationStatus>(h.hostId, 'migration.status', { migrationId }, { timeoutMs: 5000 }).catch(() => undefined)));
  return answers.filter((a): a is MigrationStatus => a !== undefined && a.state !== 'unknown');
}

/**
 * The migration's end as its source recorded it, turned into the result or error the start's
 * reply would have carried. A done tombstone without its result gives what is known (the
 * status, else `asked`: what the migration was started with), never made-up timings or fs mode.
 */
export function outcomeOf(status: MigrationStatus, asked?: { herdId: string; container: string; targetHost: string }): MigrationOutcome | HerdError | undefined {
  if (status.role !== 'source') return undefined;
  if (status.state === 'done') {
    if (status.result !== undefined) return status.result;
    return {
      migrationId: status.migrationId,
      ...(asked === undefined ? {} : { herdId: asked.herdId }),
      container: status.container ?? asked?.container ?? '?',
      sourceHost: status.hostId,
      targetHost: status.targetHost ?? asked?.targetHost ?? '?',
    };
  }
  if (status.state === 'refused') {
    return new HerdError(status.error?.code ?? 'CONFLICT', `migration ${status.migrationId} was refused before anything was frozen: ${status.error?.message ?? status.detail ?? ''}`);
  }
  if (status.state === 'lost') {
    return new HerdError('CONFLICT', `migration ${status.migrationId} failed and the source container was removed outside Herd meanwhile: ${status.detail ?? ''}${status.error ? ` [${status.error.code}: ${status.error.message}]` : ''}`);
  }
  if (status.state === 'rolled-back' || status.state === 'restarted') {
    const code = status.state === 'restarted' ? 'RESTORE_FAILED' : 'ROLLED_BACK';
    return new HerdError(code, `migration ${status.migrationId} ${status.state === 'restarted' ? 'failed and the container was restarted (memory state lost)' : 'was rolled back'}: ${status.detail ?? ''}${status.error ? ` [${status.error.code}: ${status.error.message}]` : ''}`);
  }
  return undefined;
}

async function pollOutcome(session: MigrationSession, sourceHost: string, sourceSince: string | undefined, migrationId: string, asked: { herdId: string; container: string; targetHost: string }, signal: AbortSignal, note?: (line: string) => void, everyMs = POLL_EVERY_MS): Promise<MigrationOutcome> {
  /** Whether the broker was found away (said once per outage, and when it is back). */
  let brokerAway = false;
  for (;;) {
    await new Promise((r) => setTimeout(r, everyMs).unref());
    if (signal.aborted) return new Promise<never>(() => undefined);
    let status: MigrationStatus | undefined;
    try {
      status = await session.rpc.request<MigrationStatus>(sourceHost, 'migration.status', { migrationId }, { timeoutMs: 5000 });
      if (brokerAway && !signal.aborted) note?.(`broker reachable again: still following migration ${migrationId}`);
      brokerAway = false;
    } catch (err) {
      // The migration goes on on its hosts without the broker: keep asking (a session that
      // reconnects gets the broker back after a restart), and say why nothing shows meanwhile.
      if (!brokerAway && !signal.aborted && err instanceof HerdError && err.code === 'BROKER_UNAVAILABLE') {
        brokerAway = true;
        note?.(`the MQTT broker is unreachable (${err.message}): migration ${migrationId} goes on on its hosts; asking ${sourceHost} again every ${everyMs / 1000} s (or later: herd migrate --status ${migrationId})`);
      }
    }
    if (signal.aborted || status === undefined) continue;
    // A source records a migration before it freezes anything. One that restarted since the
    // request and does not know it lost the request (or died before recording it): nothing ran.
    const since = session.view.host(sourceHost)?.since;
    if (status.state === 'unknown' && since !== sourceSince) {
      throw new HerdError('ROLLED_BACK', `migration ${migrationId} never started: the compute daemon of ${sourceHost} restarted (at ${since}) before recording it, so nothing was frozen and the container runs on ${sourceHost}; start it again`);
    }
    const outcome = outcomeOf(status, asked);
    if (outcome instanceof HerdError) throw outcome;
    if (outcome !== undefined) return outcome;
  }
}
