/**
 * The same identities and rules through a real Mosquitto, configured as provisioning does
 * (`herd auth init` + `herd auth mosquitto`: its password file reads Herd's `$7$` hashes,
 * its ACL file is protocol/access.ts's rules; TLS with Herd's CA). Mosquitto cannot bind
 * client ids to usernames nor look into payloads (docs/security.md); everything else is
 * checked here as on the embedded broker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initAuth, writeMosquittoFiles, type AuthFiles } from '../../control/auth/auth-init.ts';
import { computeClientId, operatorClientId } from '../../protocol/access.ts';
import { brokerCredentials } from '../../protocol/config.ts';
import { silentLogger } from '../../protocol/log.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { CommandClient, serveCommands } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { thrown } from '../support/thrown.ts';
import { freePort, Inbox, startMosquitto, type MosquittoProcess } from './helpers.ts';

const log = silentLogger;
let dir: string;
let auth: AuthFiles;
let url: string;
let mosquitto: MosquittoProcess | undefined;
const clients: MqttClient[] = [];
const closers: Array<() => Promise<unknown>> = [];

async function connectAs(username: string | undefined, clientId: string, password?: string): Promise<MqttClient> {
  const creds = brokerCredentials({ ...(username === undefined ? {} : { credentialsFile: auth.credentials[username] }), caFile: auth.tls?.caFile });
  const client = await connectBroker({ url, clientId, reconnectPeriodMs: 0, connectTimeoutMs: 3000, ...creds, ...(password === undefined ? {} : { password }) });
  clients.push(client);
  return client;
}

let operator: MqttClient;
let operatorId: string;
let rpc: CommandClient;
const ran: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herd-itest-mosquitto-security-'));
  auth = initAuth({ dir, computeHosts: ['h1', 'h2'], tlsNames: ['127.0.0.1'] });
  const files = writeMosquittoFiles(dir);
  const tls = auth.tls as NonNullable<AuthFiles['tls']>;
  const port = await freePort();
  url = `mqtts://127.0.0.1:${port}`;
  mosquitto = await startMosquitto(
    dir,
    // As root it keeps reading the 0600 files (provisioning makes them the mosquitto user's instead).
    ['user root', `listener ${port} 127.0.0.1`, `cafile ${tls.caFile}`, `certfile ${tls.certFile}`, `keyfile ${tls.keyFile}`, 'allow_anonymous false', `password_file ${files.passwordFile}`, `acl_file ${files.aclFile}`, 'set_tcp_nodelay true'],
    async () => closeBroker(await connectBroker({ url, clientId: operatorClientId('operator', 'probe', 'x'), reconnectPeriodMs: 0, connectTimeoutMs: 1000, ...brokerCredentials({ credentialsFile: auth.credentials.operator, caFile: tls.caFile }) })),
  );
  for (const host of ['h1', 'h2']) {
    const c = await connectAs(`compute-${host}`, computeClientId(host));
    const server = await serveCommands(c, host, computeClientId(host), { 'host.info': async (cmd) => ({ hostId: host, askedBy: cmd.from }), 'container.remove': async (cmd) => (ran.push(`${host}:${cmd.args.container}`), {}) }, log);
    closers.push(() => server.close());
  }
  operatorId = operatorClientId('operator', 'itest', 'box');
  operator = await connectAs('operator', operatorId);
  rpc = await CommandClient.create(operator, operatorId, log);
  closers.push(() => rpc.close());
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await Promise.all(clients.map((c) => closeBroker(c, 500).catch(() => undefined)));
  await mosquitto?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('Mosquitto with the users and ACLs herd auth writes', () => {
  it("reads Herd's password hashes: the right password connects, none or a wrong one is refused", async () => {
    await expect(rpc.request('h1', 'host.info', {})).resolves.toMatchObject({ hostId: 'h1', askedBy: operatorId });
    expect(await thrown(connectAs(undefined, 'evil'))).toMatchObject({ code: 'NOT_AUTHORIZED' });
    expect(await thrown(connectAs('operator', operatorClientId('operator', 'x', 'y'), 'guess'))).toMatchObject({ code: 'NOT_AUTHORIZED' });
  });

  it("applies the publish rules: a monitor's command and a host's forged status never arrive", async () => {
    const watcher = await connectAs('operator', operatorClientId('operator', 'watch', 'box'));
    const statuses = await Inbox.open(watcher, topics.allHostStatus);
    const monitor = await connectAs('monitor', 'herd-monitor-itest');
    await monitor.publishAsync(topics.hostCommands('h1'), JSON.stringify({ v: 1, id: 'm-1', type: 'container.remove', from: 'herd-monitor-itest', sentAt: new Date().toISOString(), args: { container: 'db', force: true } }), { qos: 1 }).catch(() => undefined);
    const h1 = clients.find((c) => c.options.clientId === computeClientId('h1')) as MqttClient;
    await publishJson(h1, topics.hostStatus('h2'), { v: 1, hostId: 'h2', state: 'offline', since: new Date().toISOString() }, { retain: true }).catch(() => undefined);
    await publishJson(h1, topics.hostStatus('h1'), { v: 1, hostId: 'h1', state: 'online', since: new Date().toISOString() }, { retain: true });
    await statuses.next('h1 status', (m) => m.json?.hostId === 'h1');
    await new Promise((r) => setTimeout(r, 300));
    expect(statuses.messages.filter((m) => m.json?.hostId === 'h2')).toEqual([]);
    expect(ran).toEqual([]);
  });

  it("applies the read rules: no one reads another host's commands or another client's replies", async () => {
    const h1 = clients.find((c) => c.options.clientId === computeClientId('h1')) as MqttClient;
    const spy = await Inbox.open(h1, topics.hostCommands('h2')).catch((err: unknown) => err);
    const replies = await Inbox.open(h1, topics.replies(operatorId)).catch((err: unknown) => err);
    await rpc.request('h2', 'host.info', {});
    await new Promise((r) => setTimeout(r, 300));
    for (const inbox of [spy, replies]) if (inbox instanceof Inbox) expect(inbox.messages).toEqual([]);
  });
});
