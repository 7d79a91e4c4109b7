/**
 * A live view of the cluster built from retained messages: every host's status and its
 * Herd-managed containers. Used by the control daemon, the CLI and compute daemons
 * (which watch a migration's peer host).
 *
 * A host speaks only for itself: the broker lets a compute identity publish only on its
 * own host's topics, and a status, a container list or a container entry whose `hostId`
 * names another host than the topic is dropped (and logged), so that a compromised host
 * cannot pose as its peers (say, report a "newer" copy of a peer's container there, which
 * the placement guard would answer by stopping the real one).
 */
import type { Logger } from 'pino';
import { decode } from './codec.ts';
import { HerdError } from './errors.ts';
import { hostContainersSchema, hostStatusSchema, type ContainerSummary, type HostContainers, type HostStatus } from './messages.ts';
import type { MqttClient } from './mqtt.ts';
import { parseTopic, topics } from './topics.ts';

export interface ClusterView {
  hosts(): HostStatus[];
  host(hostId: string): HostStatus | undefined;
  containers(): ContainerSummary[];
  /** Throws UNKNOWN_HOST or HOST_OFFLINE. */
  requireOnline(hostId: string): HostStatus;
  /** Calls `listener` on every status message of any host; returns the unsubscribe function. */
  onHostStatus(listener: (status: HostStatus) => void): () => void;
  /** Finds a container by name or Herd id anywhere; throws UNKNOWN_CONTAINER. */
  findContainer(ref: string): ContainerSummary;
  close(): Promise<void>;
}

/** Subscribes and waits `settleMs` for retained messages to arrive. */
export async function watchCluster(client: MqttClient, log: Logger, settleMs = 300): Promise<ClusterView> {
  const status = new Map<string, HostStatus>();
  const containers = new Map<string, HostContainers>();
  const listeners = new Set<(status: HostStatus) => void>();
  const onMessage = (topic: string, payload: Buffer) => {
    const parsed = parseTopic(topic);
    if (parsed === undefined || payload.length === 0) return;
    try {
      if (parsed.kind === 'hostStatus') {
        const s = decode(hostStatusSchema, payload, `status of host ${parsed.id}`);
        if (s.hostId !== parsed.id) return log.warn({ topic, hostId: s.hostId }, 'ignored a host status naming another host');
        status.set(parsed.id, s);
        for (const l of listeners) l(s);
      } else if (parsed.kind === 'hostContainers') {
        const list = decode(hostContainersSchema, payload, `containers of host ${parsed.id}`);
        if (list.hostId !== parsed.id) return log.warn({ topic, hostId: list.hostId }, 'ignored a container list naming another host');
        const own = list.containers.filter((c) => c.hostId === parsed.id);
        if (own.length < list.containers.length) {
          const others = [...new Set(list.containers.filter((c) => c.hostId !== parsed.id).map((c) => c.hostId))];
          log.warn({ topic, dropped: list.containers.length - own.length, hosts: others }, 'ignored containers a host listed for other hosts');
        }
        containers.set(parsed.id, { ...list, containers: own });
      }
    } catch (err) {
      log.warn({ topic, err: (err as Error).message }, 'ignored malformed retained message');
    }
  };
  client.on('message', onMessage);
  await client.subscribeAsync([topics.allHostStatus, topics.allHostContainers], { qos: 1 });
  await new Promise((r) => setTimeout(r, settleMs));

  const view: ClusterView = {
    hosts: () => [...status.values()].sort((a, b) => a.hostId.localeCompare(b.hostId)),
    host: (hostId) => status.get(hostId),
    containers: () =>
      [...containers.values()]
        .filter((hc) => status.get(hc.hostId)?.state === 'online')
        .flatMap((hc) => hc.containers)
        .sort((a, b) => a.name.localeCompare(b.name)),
    requireOnline(hostId) {
      const s = status.get(hostId);
      if (s === undefined) {
        const known = [...status.keys()].sort().join(', ') || 'none';
        throw new HerdError('UNKNOWN_HOST', `unknown host "${hostId}" (known hosts: ${known})`);
      }
      if (s.state !== 'online') throw new HerdError('HOST_OFFLINE', `host "${hostId}" is offline since ${s.since}${s.reason ? ` (${s.reason})` : ''}`);
      return s;
    },
    onHostStatus(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    findContainer(ref) {
      const all = view.containers();
      // During a migration the target's prepared copy (same name and Herd id, not running) is
      // listed too: the running copy is the container.
      const matches = all.filter((c) => c.name === ref);
      const byId = matches.length > 0 ? matches : all.filter((c) => c.herdId === ref);
      const found = byId.find((c) => c.state === 'running') ?? byId[0];
      if (found === undefined) throw new HerdError('UNKNOWN_CONTAINER', `no Herd-managed container named "${ref}" on any online host`);
      return found;
    },
    async close() {
      client.off('message', onMessage);
      if (client.connected) await client.unsubscribeAsync([topics.allHostStatus, topics.allHostContainers]).catch(() => undefined);
    },
  };
  return view;
}
