/**
 * Feeds the dashboard's live state from the control daemon's broker connection: the
 * monitors' samples, every migration's events (the loop's and manual ones) and the
 * placement whenever a host's retained status or container list changes. Also builds the
 * whole state the page loads first (GET /api/state).
 */
import type { Logger } from 'pino';
import { decode } from '../../protocol/codec.ts';
import type { ClusterView } from '../../protocol/cluster-view.ts';
import { migrationEventSchema } from '../../protocol/messages.ts';
import { followMetrics } from '../../protocol/metrics-view.ts';
import type { MqttClient } from '../../protocol/mqtt.ts';
import { parseTopic, topics } from '../../protocol/topics.ts';
import { modelOf } from '../../policies/forecast-greedy/policy.ts';
import type { PolicyStep } from '../../policies/registry.ts';
import type { ControlLoop } from '../loop/control-loop.ts';
import type { LiveState } from './live-state.ts';

/** Placement changes arrive as bursts (a migration touches two hosts): coalesced into one update. */
const PLACEMENT_COALESCE_MS = 150;

export async function feedLiveState(client: MqttClient, view: ClusterView, live: LiveState, log: Logger): Promise<() => Promise<void>> {
  const stopMetrics = await followMetrics(client, (m) => (m.kind === 'host' ? live.host(m.sample) : live.containers(m.batch)));
  let pending: NodeJS.Timeout | undefined;
  const onMessage = (topic: string, payload: Buffer) => {
    const kind = parseTopic(topic)?.kind;
    if (kind === 'hostStatus' || kind === 'hostContainers') {
      pending ??= setTimeout(() => {
        pending = undefined;
        live.placement(view.hosts(), view.containers());
      }, PLACEMENT_COALESCE_MS);
    } else if (kind === 'migrationEvents') {
      try {
        live.migration(decode(migrationEventSchema, payload, 'migration event'));
      } catch (err) {
        log.debug({ topic, err: (err as Error).message }, 'dashboard ignored a malformed migration event');
      }
    }
  };
  client.on('message', onMessage);
  await client.subscribeAsync(topics.allMigrationEvents, { qos: 1 });
  return async () => {
    if (pending !== undefined) clearTimeout(pending);
    client.off('message', onMessage);
    await stopMetrics();
  };
}

export interface ForecastInfo {
  policy: string;
  features: number;
  /** Gain importance, as a share of the total (the top 10). */
  importance: { feature: string; share: number }[];
}

/** The forecast models the loop's policy chain uses (forecast-greedy steps), for the page. */
export function forecastInfo(steps: readonly PolicyStep[]): ForecastInfo[] {
  return steps.flatMap((s) => {
    const json = (s.args as { model?: unknown } | undefined)?.model;
    if (s.policy !== 'forecast-greedy' || json === null || typeof json !== 'object') return [];
    try {
      const model = modelOf(json);
      const ranked = model.importance();
      const total = ranked.reduce((a, r) => a + r.gain, 0) || 1;
      return [{ policy: s.policy, features: model.featureNames.length, importance: ranked.slice(0, 10).map((r) => ({ feature: r.feature, share: r.gain / total })) }];
    } catch {
      return [];
    }
  });
}

/** Everything the page shows, at once. */
export function dashboardState(view: ClusterView, live: LiveState, loop: ControlLoop | undefined, steps: readonly PolicyStep[]) {
  return {
    control: loop?.status() ?? null,
    hosts: view.hosts(),
    containers: view.containers(),
    latest: { hosts: Object.fromEntries(live.latestHost), containers: Object.fromEntries(live.latestContainer) },
    series: { hosts: Object.fromEntries(live.hostSeries), containers: Object.fromEntries(live.containerSeries) },
    migrations: live.migrationList(),
    history: loop?.historyRecords(50) ?? [],
    events: loop?.recentEvents(50) ?? [],
    forecast: forecastInfo(steps),
  };
}
