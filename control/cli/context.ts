/** What CLI commands share: the broker URL, a connected client, output helpers. */
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { silentLogger } from '../../protocol/log.ts';
import { closeBroker, connectBroker, type MqttClient } from '../../protocol/mqtt.ts';
import { CommandClient, processClientId } from '../../protocol/rpc.ts';
import { watchCluster, type ClusterView } from '../../protocol/cluster-view.ts';
import { readLabState } from '../lab/state.ts';

export const cliState = { daemonRunning: false };

export const BROKER_HELP = "MQTT broker URL (default: $HERD_BROKER, the local lab's broker if it is up, else mqtt://127.0.0.1:1883)";

/** Every command that talks to the broker accepts --broker after its name too. */
export function withBrokerOption(cmd: Command): Command {
  return cmd.option('--broker <url>', BROKER_HELP);
}

export function brokerUrl(cmd: Command): string {
  const global = cmd.optsWithGlobals() as { broker?: string };
  return global.broker ?? process.env.HERD_BROKER ?? readLabState()?.brokerUrl ?? 'mqtt://127.0.0.1:1883';
}

export interface Session {
  client: MqttClient;
  rpc: CommandClient;
  view: ClusterView;
  close(): Promise<void>;
}

/**
 * Connects the CLI to the broker and reads the cluster's retained state. The connection
 * fails fast when the broker is not there; `reconnect` (long commands: a migration outlives
 * a broker restart) then keeps it, with its subscriptions, across broker restarts.
 */
export async function openSession(cmd: Command, options: { reconnect?: boolean } = {}): Promise<Session> {
  const clientId = processClientId('herd-cli', hostname());
  const client = await connectBroker({ url: brokerUrl(cmd), clientId, reconnectPeriodMs: 0 });
  // Before any subscription: mqtt.js only remembers topics to resubscribe while reconnecting is on.
  if (options.reconnect === true) (client.options as { reconnectPeriod?: number }).reconnectPeriod = 1000;
  const rpc = await CommandClient.create(client, clientId, silentLogger);
  const view = await watchCluster(client, silentLogger);
  return {
    client,
    rpc,
    view,
    async close() {
      await rpc.close();
      await view.close();
      await closeBroker(client);
    },
  };
}

export async function withSession<T>(cmd: Command, fn: (s: Session) => Promise<T>, options: { reconnect?: boolean } = {}): Promise<T> {
  const session = await openSession(cmd, options);
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Renders rows as aligned columns with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
