/**
 * The control daemon: runs the embedded MQTT broker (unless an external one is
 * configured) and watches the cluster. Decision making (windows → policies → plan →
 * executor) plugs in here.
 */
import { brokerCredentials } from '../protocol/config.ts';
import type { Logger } from 'pino';
import { closeBroker, connectBroker, type MqttClient } from '../protocol/mqtt.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from './broker/embedded-broker.ts';
import { watchCluster, type ClusterView } from '../protocol/cluster-view.ts';
import type { ControlConfig } from './config.ts';

export interface ControlDaemon {
  start(): Promise<void>;
  close(): Promise<void>;
  status(): { brokerUrl?: string; hosts: number; online: number };
  /** URL clients use to reach the broker this daemon uses. */
  brokerUrl(): string;
}

export function buildControlDaemon(config: ControlConfig, deps: { log: Logger }): ControlDaemon {
  const { log } = deps;
  let broker: EmbeddedBroker | undefined;
  let client: MqttClient | undefined;
  let view: ClusterView | undefined;
  let url: string | undefined;

  return {
    async start() {
      if (config.broker.embedded) {
        broker = await startEmbeddedBroker({ host: config.broker.host, port: config.broker.port }, log);
        url = broker.url;
      } else {
        url = config.broker.url as string;
      }
      client = await connectBroker({
        url,
        clientId: `herd-control-${config.nodeId}`,
        ...brokerCredentials(config.broker),
      });
      client.on('error', (err) => log.warn({ err: err.message }, 'broker error'));
      view = await watchCluster(client, log);
      const seen = new Map<string, string>();
      const report = () => {
        for (const h of view?.hosts() ?? []) {
          if (seen.get(h.hostId) !== h.state) log.info({ hostId: h.hostId, state: h.state, since: h.since }, 'host state');
          seen.set(h.hostId, h.state);
        }
      };
      client.on('message', report);
      report();
      log.info({ broker: url, embedded: config.broker.embedded }, 'control daemon started');
    },
    async close() {
      await view?.close();
      if (client !== undefined) await closeBroker(client);
      await broker?.close();
      log.info('control daemon stopped');
    },
    status() {
      const hosts = view?.hosts() ?? [];
      return { ...(url === undefined ? {} : { brokerUrl: url }), hosts: hosts.length, online: hosts.filter((h) => h.state === 'online').length };
    },
    brokerUrl() {
      if (url === undefined) throw new Error('control daemon not started');
      return url;
    },
  };
}
