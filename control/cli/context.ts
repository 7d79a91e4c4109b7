/** What CLI commands share: the broker URL, a connected client, output helpers. */
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { silentLogger } from '../../protocol/log.ts';
import type { BrokerEndpoint, MqttClient } from '../../protocol/mqtt.ts';
import type { CommandClient } from '../../protocol/rpc.ts';
import { operatorClientId } from '../../protocol/access.ts';
import { brokerUrlProblem, cliBrokerEndpoint } from '../../protocol/config.ts';
import { HerdError } from '../../protocol/errors.ts';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { watchCluster, type ClusterView } from '../../protocol/cluster-view.ts';
import { readLabState } from '../lab/state.ts';

/** Where provisioning puts the operator's credentials on the control node. */
export const DEFAULT_CREDENTIALS_FILE = '/etc/herd/credentials.yaml';

export const cliState = { daemonRunning: false };

export const BROKER_HELP = "MQTT broker URL (default: $HERD_BROKER, the local lab's broker if it is up, else mqtt://127.0.0.1:1883)";
export const CREDENTIALS_HELP = `broker credentials file, YAML { username, password } (default: $HERD_CREDENTIALS, the lab's operator credentials for the lab's broker, else ${DEFAULT_CREDENTIALS_FILE} if present)`;
export const CA_HELP = "CA certificate of the broker's TLS certificate, for mqtts:// (default: $HERD_BROKER_CA, the lab's CA for the lab's broker)";

/** Every command that talks to the broker accepts --broker, --credentials and --ca after its name too. */
export function withBrokerOption(cmd: Command): Command {
  return cmd.option('--broker <url>', BROKER_HELP).option('--credentials <file>', CREDENTIALS_HELP).option('--ca <file>', CA_HELP);
}

export function brokerUrl(cmd: Command): string {
  const global = cmd.optsWithGlobals() as { broker?: string };
  const given = global.broker ?? process.env.HERD_BROKER;
  const problem = given === undefined ? undefined : brokerUrlProblem(given);
  if (problem !== undefined) throw new HerdError('BAD_USAGE', `${global.broker !== undefined ? '--broker' : '$HERD_BROKER'} "${given}" ${problem}`);
  return given ?? readLabState()?.brokerUrl ?? 'mqtt://127.0.0.1:1883';
}

/** The broker and the identity a client command uses: flags, environment, the lab's operator (for the lab's broker), the machine's default file. */
export function brokerEndpoint(cmd: Command): BrokerEndpoint {
  const global = cmd.optsWithGlobals() as { credentials?: string; ca?: string };
  const url = brokerUrl(cmd);
  const lab = readLabState();
  const forLab = lab !== undefined && lab.brokerUrl === url;
  const credentialsFile = global.credentials ?? process.env.HERD_CREDENTIALS ?? (forLab ? lab.credentialsFile : undefined) ?? (existsSync(DEFAULT_CREDENTIALS_FILE) ? DEFAULT_CREDENTIALS_FILE : undefined);
  const caFile = global.ca ?? process.env.HERD_BROKER_CA ?? (forLab ? lab.caFile : undefined);
  return cliBrokerEndpoint({ url, credentialsFile, caFile });
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
  const endpoint = brokerEndpoint(cmd);
  const clientId = operatorClientId(endpoint.username, 'herd-cli', hostname());
  // MQTT loads with the first session: commands without one (help, lab, doctor) start faster.
  const [{ closeBroker }, { CommandClient, connectCommandClient }] = await Promise.all([import('../../protocol/mqtt.ts'), import('../../protocol/rpc.ts')]);
  const client = await connectCommandClient(endpoint, 'herd-cli');
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

/** Checks, before any work, that `file` (given with `flag`) can be written: BAD_USAGE naming both otherwise. */
export function checkOutputFile(file: string, flag: string): void {
  const dir = dirname(resolve(file));
  if (!existsSync(dir)) throw new HerdError('BAD_USAGE', `${flag} ${file}: directory ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new HerdError('BAD_USAGE', `${flag} ${file}: ${dir} is not a directory`);
  if (existsSync(file) && statSync(file).isDirectory()) throw new HerdError('BAD_USAGE', `${flag} ${file} is a directory: name a file`);
}

/** Writes the file an option names; BAD_USAGE naming the option and the file when it cannot. */
export function writeOutputFile(file: string, text: string, flag: string): void {
  checkOutputFile(file, flag);
  try {
    writeFileSync(file, text);
  } catch (err) {
    throw new HerdError('BAD_USAGE', `${flag} ${file}: cannot write: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
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
