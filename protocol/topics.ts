/**
 * Herd's MQTT topic layout. Every topic starts with `herd/v1/` so that a broker can be
 * shared and a later protocol version can live beside this one.
 *
 * | topic                                   | retained | QoS | publisher  | payload            |
 * |-----------------------------------------|----------|-----|------------|--------------------|
 * | herd/v1/hosts/{hostId}/status           | yes      | 1   | compute    | HostStatus (last will: offline) |
 * | herd/v1/hosts/{hostId}/containers       | yes      | 1   | compute    | HostContainers     |
 * | herd/v1/hosts/{hostId}/commands         | no       | 1   | any client | Command            |
 * | herd/v1/replies/{clientId}              | no       | 1   | daemons    | Reply              |
 * | herd/v1/migrations/{migrationId}/events | no       | 1   | compute    | MigrationEvent     |
 * | herd/v1/metrics/hosts/{hostId}          | no       | 0   | monitor    | HostMetrics        |
 * | herd/v1/metrics/hosts/{hostId}/containers | no     | 0   | monitor    | ContainerMetricsBatch |
 * | herd/v1/control/{nodeId}/status         | yes      | 1   | control    | ControlStatus (last will: offline) |
 * | herd/v1/control/{nodeId}/commands       | no       | 1   | any client | Command (control.*) |
 * | herd/v1/control/{nodeId}/events         | no       | 1   | control    | ControlEvent       |
 */
export const TOPIC_ROOT = 'herd/v1';

/** Ids that appear in topics: no MQTT wildcards or separators, 1..64 chars. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

function segment(kind: string, id: string): string {
  if (!ID_PATTERN.test(id)) throw new Error(`invalid ${kind} "${id}": must match ${ID_PATTERN}`);
  return id;
}

export const topics = {
  hostStatus: (hostId: string) => `${TOPIC_ROOT}/hosts/${segment('host id', hostId)}/status`,
  hostContainers: (hostId: string) => `${TOPIC_ROOT}/hosts/${segment('host id', hostId)}/containers`,
  hostCommands: (hostId: string) => `${TOPIC_ROOT}/hosts/${segment('host id', hostId)}/commands`,
  replies: (clientId: string) => `${TOPIC_ROOT}/replies/${segment('client id', clientId)}`,
  migrationEvents: (migrationId: string) => `${TOPIC_ROOT}/migrations/${segment('migration id', migrationId)}/events`,
  hostMetrics: (hostId: string) => `${TOPIC_ROOT}/metrics/hosts/${segment('host id', hostId)}`,
  /** One message per host and tracking round with the samples of all its containers (one per Herd id). */
  containerMetrics: (hostId: string) => `${TOPIC_ROOT}/metrics/hosts/${segment('host id', hostId)}/containers`,
  controlStatus: (nodeId: string) => `${TOPIC_ROOT}/control/${segment('control node id', nodeId)}/status`,
  controlCommands: (nodeId: string) => `${TOPIC_ROOT}/control/${segment('control node id', nodeId)}/commands`,
  controlEvents: (nodeId: string) => `${TOPIC_ROOT}/control/${segment('control node id', nodeId)}/events`,
  /** Subscription filters. */
  allHostStatus: `${TOPIC_ROOT}/hosts/+/status`,
  allHostContainers: `${TOPIC_ROOT}/hosts/+/containers`,
  allMigrationEvents: `${TOPIC_ROOT}/migrations/+/events`,
  allHostMetrics: `${TOPIC_ROOT}/metrics/hosts/+`,
  allContainerMetrics: `${TOPIC_ROOT}/metrics/hosts/+/containers`,
  allControlStatus: `${TOPIC_ROOT}/control/+/status`,
} as const;

export type TopicKind =
  | 'hostStatus'
  | 'hostContainers'
  | 'hostCommands'
  | 'replies'
  | 'migrationEvents'
  | 'hostMetrics'
  | 'containerMetrics'
  | 'controlStatus'
  | 'controlCommands'
  | 'controlEvents';

export interface ParsedTopic {
  kind: TopicKind;
  /** The id in the topic: host, client or migration id depending on kind. */
  id: string;
}

/** Parses a concrete topic back into its kind and id; undefined for topics that are not Herd's. */
export function parseTopic(topic: string): ParsedTopic | undefined {
  const parts = topic.split('/');
  if (parts[0] !== 'herd' || parts[1] !== 'v1') return undefined;
  const [, , area, id, leaf, extra] = parts;
  if (id === undefined || !ID_PATTERN.test(id)) return undefined;
  if (area === 'metrics' && id === 'hosts' && leaf !== undefined && ID_PATTERN.test(leaf) && extra === 'containers' && parts.length === 6) return { kind: 'containerMetrics', id: leaf };
  if (extra !== undefined) return undefined;
  if (area === 'hosts' && leaf === 'status') return { kind: 'hostStatus', id };
  if (area === 'hosts' && leaf === 'containers') return { kind: 'hostContainers', id };
  if (area === 'hosts' && leaf === 'commands') return { kind: 'hostCommands', id };
  if (area === 'replies' && leaf === undefined) return { kind: 'replies', id };
  if (area === 'migrations' && leaf === 'events') return { kind: 'migrationEvents', id };
  if (area === 'control' && leaf === 'status') return { kind: 'controlStatus', id };
  if (area === 'control' && leaf === 'commands') return { kind: 'controlCommands', id };
  if (area === 'control' && leaf === 'events') return { kind: 'controlEvents', id };
  if (area === 'metrics' && id === 'hosts' && leaf !== undefined && ID_PATTERN.test(leaf)) return { kind: 'hostMetrics', id: leaf };
  return undefined;
}
