/**
 * A metrics view: the monitors' samples as they arrive on the broker (hosts every few
 * seconds, one batch of container samples per host and round), checked against their
 * schemas. Beside cluster-view.ts: `herd metrics top` folds them into the latest sample
 * per host and container, the control loop keeps them in windows.
 */
import { containerMetricsBatchSchema, hostMetricsSchema, type ContainerMetrics, type ContainerMetricsBatch, type HostMetrics } from './messages.ts';
import type { MqttClient } from './mqtt.ts';
import { parseTopic, topics } from './topics.ts';

export type MetricsMessage = { kind: 'host'; sample: HostMetrics } | { kind: 'containers'; batch: ContainerMetricsBatch };

/** A metrics message, 'rejected' when it is not JSON or does not match its schema, undefined when the topic is not a metrics topic. */
export function parseMetricsMessage(topic: string, payload: string | Buffer): MetricsMessage | 'rejected' | undefined {
  const kind = parseTopic(topic)?.kind;
  if (kind !== 'hostMetrics' && kind !== 'containerMetrics') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    return 'rejected';
  }
  if (kind === 'hostMetrics') {
    const r = hostMetricsSchema.safeParse(json);
    return r.success ? { kind: 'host', sample: r.data } : 'rejected';
  }
  const r = containerMetricsBatchSchema.safeParse(json);
  return r.success ? { kind: 'containers', batch: r.data } : 'rejected';
}

export interface LatestMetrics {
  hosts: Map<string, HostMetrics>;
  /** Herd id → its latest sample (from whichever host published it last). */
  containers: Map<string, ContainerMetrics>;
  /** Messages that were not valid JSON or did not match their schema. */
  rejected: number;
}

export function emptyLatest(): LatestMetrics {
  return { hosts: new Map(), containers: new Map(), rejected: 0 };
}

/** Folds one MQTT message into `latest`. A host's batch replaces what that host said before. */
export function takeMessage(latest: LatestMetrics, topic: string, payload: string | Buffer): void {
  const m = parseMetricsMessage(topic, payload);
  if (m === undefined) return;
  if (m === 'rejected') {
    latest.rejected++;
    return;
  }
  if (m.kind === 'host') {
    latest.hosts.set(m.sample.hostId, m.sample);
    return;
  }
  for (const [id, s] of latest.containers) if (s.hostId === m.batch.hostId) latest.containers.delete(id);
  for (const s of m.batch.samples) latest.containers.set(s.herdId, s);
}

/** Calls `listener` with every valid metrics message until the returned function is called. */
export async function followMetrics(client: MqttClient, listener: (m: MetricsMessage) => void, onRejected?: (topic: string) => void): Promise<() => Promise<void>> {
  const onMessage = (topic: string, payload: Buffer) => {
    const m = parseMetricsMessage(topic, payload);
    if (m === 'rejected') onRejected?.(topic);
    else if (m !== undefined) listener(m);
  };
  client.on('message', onMessage);
  await client.subscribeAsync([topics.allHostMetrics, topics.allContainerMetrics], { qos: 0 });
  return async () => {
    client.off('message', onMessage);
    if (client.connected) await client.unsubscribeAsync([topics.allHostMetrics, topics.allContainerMetrics]).catch(() => undefined);
  };
}
