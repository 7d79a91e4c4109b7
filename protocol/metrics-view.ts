/**
 * A metrics view: the monitors' samples as they arrive on the broker (hosts every few
 * seconds, one batch of container samples per host and round), checked against their
 * schemas. Beside cluster-view.ts: `herd metrics top` folds them into the latest sample
 * per host and container, the control loop keeps them in windows.
 *
 * As in cluster-view.ts, a message speaks only for the host of its topic: a host sample or
 * a batch whose `hostId` names another host is rejected, and samples inside a batch that
 * name another host are dropped (counted), so that a misconfigured or compromised monitor
 * cannot put figures on a host it was not asked about, or move a container's series there.
 */
import { containerMetricsBatchSchema, hostMetricsSchema, type ContainerMetrics, type ContainerMetricsBatch, type HostMetrics } from './messages.ts';
import type { MqttClient } from './mqtt.ts';
import { parseTopic, topics } from './topics.ts';

export type MetricsMessage =
  | { kind: 'host'; sample: HostMetrics }
  /** `batch.samples` holds only the topic host's samples; `foreignSamples` is how many others it named and were dropped. */
  | { kind: 'containers'; batch: ContainerMetricsBatch; foreignSamples: number };

/**
 * A metrics message; 'rejected' when it is not JSON, does not match its schema or names
 * another host than its topic; undefined when the topic is not a metrics topic.
 */
export function parseMetricsMessage(topic: string, payload: string | Buffer): MetricsMessage | 'rejected' | undefined {
  const parsed = parseTopic(topic);
  const kind = parsed?.kind;
  if (parsed === undefined || (kind !== 'hostMetrics' && kind !== 'containerMetrics')) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    return 'rejected';
  }
  if (kind === 'hostMetrics') {
    const r = hostMetricsSchema.safeParse(json);
    return r.success && r.data.hostId === parsed.id ? { kind: 'host', sample: r.data } : 'rejected';
  }
  const r = containerMetricsBatchSchema.safeParse(json);
  if (!r.success || r.data.hostId !== parsed.id) return 'rejected';
  const own = r.data.samples.filter((s) => s.hostId === parsed.id);
  const foreignSamples = r.data.samples.length - own.length;
  return { kind: 'containers', batch: foreignSamples === 0 ? r.data : { ...r.data, samples: own }, foreignSamples };
}

export interface LatestMetrics {
  hosts: Map<string, HostMetrics>;
  /** Herd id → its latest sample (from whichever host published it last). */
  containers: Map<string, ContainerMetrics>;
  /** Messages that were not valid JSON, did not match their schema or named another host than their topic. */
  rejected: number;
  /** Samples in container batches that named another host than the batch's topic (dropped). */
  foreignSamples: number;
}

export function emptyLatest(): LatestMetrics {
  return { hosts: new Map(), containers: new Map(), rejected: 0, foreignSamples: 0 };
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
  latest.foreignSamples += m.foreignSamples;
  for (const [id, s] of latest.containers) if (s.hostId === m.batch.hostId) latest.containers.delete(id);
  for (const s of m.batch.samples) latest.containers.set(s.herdId, s);
}

/**
 * Calls `listener` with every valid metrics message until the returned function is called;
 * `onRejected` with the topic of a rejected message, or of a batch some of whose samples named another host.
 */
export async function followMetrics(client: MqttClient, listener: (m: MetricsMessage) => void, onRejected?: (topic: string) => void): Promise<() => Promise<void>> {
  const onMessage = (topic: string, payload: Buffer) => {
    const m = parseMetricsMessage(topic, payload);
    if (m === 'rejected') onRejected?.(topic);
    else if (m !== undefined) {
      if (m.kind === 'containers' && m.foreignSamples > 0) onRejected?.(topic);
      listener(m);
    }
  };
  client.on('message', onMessage);
  await client.subscribeAsync([topics.allHostMetrics, topics.allContainerMetrics], { qos: 0 });
  return async () => {
    client.off('message', onMessage);
    if (client.connected) await client.unsubscribeAsync([topics.allHostMetrics, topics.allContainerMetrics]).catch(() => undefined);
  };
}
