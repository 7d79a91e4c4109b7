/**
 * The migration client the CLI (`herd migrate`), the demo and the control loop's executor
 * share: sends `migration.start` to the container's host, follows the migration's events
 * and resolves with its result (or throws its error: ROLLED_BACK, RESTORE_FAILED, ...).
 */
import { decode } from '../../protocol/codec.ts';
import type { ClusterView } from '../../protocol/cluster-view.ts';
import { newMigrationId } from '../../protocol/ids.ts';
import { migrationEventSchema, type FsMode, type MigrationEvent, type MigrationResult } from '../../protocol/messages.ts';
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

export function describeEvent(e: MigrationEvent): string {
  const took = e.durationMs === undefined ? '' : ` ${e.durationMs.toFixed(1)} ms`;
  const bytes = e.bytes === undefined ? '' : ` ${(e.bytes / 2 ** 20).toFixed(2)} MiB`;
  const detail = e.detail === undefined ? '' : ` (${e.detail})`;
  const error = e.error === undefined ? '' : ` [${e.error.code}] ${e.error.message}`;
  return `${e.at.slice(11, 23)}  ${e.phase.padEnd(10)} ${e.status}${took}${bytes}${detail}${error}`;
}

export function formatTimings(r: MigrationResult): string {
  const t = r.timings;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  return [
    `migrated ${r.container} ${r.sourceHost} -> ${r.targetHost} (fs ${r.fsMode}, ${r.migrationId})`,
    `  checkpoint ${t.checkpointMs.toFixed(1)} ms   transfer ${t.transferMs.toFixed(1)} ms   restore ${t.restoreMs.toFixed(1)} ms`,
    `  downtime   ${t.downtimeMs.toFixed(1)} ms   total ${t.totalMs.toFixed(1)} ms`,
    `  bytes      checkpoint ${mib(t.checkpointBytes)}   filesystem ${mib(t.filesystemBytes)}`,
  ].join('\n');
}

/** Runs one migration through the session, calling onEvent for each of its events; resolves with the result or throws the migration's error. */
export async function migrateOnce(
  session: MigrationSession,
  container: string,
  to: string,
  fsMode: FsMode,
  onEvent: (e: MigrationEvent) => void,
  onStart?: (line: string) => void,
  options: { migrationId?: string; timeoutMs?: number } = {},
): Promise<MigrationResult> {
  const { view, rpc, client } = session;
  const found = view.findContainer(container);
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
    onStart?.(`migrating ${found.name} (${found.herdId}) from ${found.hostId} to ${to}, fs ${fsMode}, id ${migrationId}`);
    const result = await rpc.request<MigrationResult>(found.hostId, 'migration.start', { migrationId, container: found.herdId, targetHost: to, fsMode }, { timeoutMs: options.timeoutMs ?? MIGRATION_TIMEOUT_MS });
    await new Promise((r) => setTimeout(r, 100)); // let the last events arrive
    return result;
  } finally {
    client.off('message', listener);
    await client.unsubscribeAsync(eventsTopic).catch(() => undefined);
  }
}
