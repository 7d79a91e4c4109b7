/**
 * The same wire contract through a real Mosquitto (any MQTT 3.1.1 broker must do):
 * request/reply, the last will, and the control daemon configured with an external
 * broker (`broker.embedded: false`) watching a compute daemon (in-memory runtime).
 * The test starts Mosquitto itself on a free loopback port and stops it by its pid.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildComputeDaemon, type ComputeDaemon } from '../../compute/daemon.ts';
import { computeConfigSchema } from '../../compute/config.ts';
import { controlConfigSchema } from '../../control/config.ts';
import { buildControlDaemon, type ControlDaemon } from '../../control/daemon.ts';
import { HerdError } from '../../protocol/errors.ts';
import { silentLogger } from '../../protocol/log.ts';
import type { HostStatus } from '../../protocol/messages.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { computeClientId } from '../../protocol/access.ts';
import { CommandClient, serveCommands } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { eventually, fakeRuntime, freePort, Inbox, startMosquitto, type MosquittoProcess } from './helpers.ts';

const log = silentLogger;

let dir: string;
let mosquitto: MosquittoProcess | undefined;
let url: string;
const clients: MqttClient[] = [];
const closers: Array<() => Promise<unknown>> = [];

async function connect(clientId: string, extra: Partial<Parameters<typeof connectBroker>[0]> = {}): Promise<MqttClient> {
  const client = await connectBroker({ url, clientId, reconnectPeriodMs: 0, ...extra });
  clients.push(client);
  return client;
}

async function startPlainMosquitto(): Promise<void> {
  const port = await freePort();
  url = `mqtt://127.0.0.1:${port}`;
  mosquitto = await startMosquitto(dir, [`listener ${port} 127.0.0.1`, 'allow_anonymous true'], async () => {
    await closeBroker(await connectBroker({ url, clientId: 'itest-mosquitto-probe', reconnectPeriodMs: 0, connectTimeoutMs: 1000 }));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herd-itest-mosquitto-'));
  await startPlainMosquitto();
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await Promise.all(clients.map((c) => closeBroker(c)));
  await mosquitto?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('through Mosquitto', () => {
  it('round-trips a command, and a bad one gets an error reply naming the field', async () => {
    const serverClient = await connect(computeClientId('mq-host'));
    const server = await serveCommands(serverClient, 'mq-host', computeClientId('mq-host'), { 'host.info': async (cmd) => ({ via: 'mosquitto', askedBy: cmd.from }) }, log);
    closers.push(() => server.close());
    const rpc = await CommandClient.create(await connect('itest-mq-caller'), 'itest-mq-caller', log);
    closers.push(() => rpc.close());

    await expect(rpc.request('mq-host', 'host.info', {})).resolves.toEqual({ via: 'mosquitto', askedBy: 'itest-mq-caller' });
    const err = await rpc.request('mq-host', 'container.stop', { container: '' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HerdError);
    expect(err).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('`args.container`') });
    await expect(rpc.request('mq-host', 'host.info', {})).resolves.toMatchObject({ via: 'mosquitto' });
  });

  it('publishes the retained last will when a connection dies without DISCONNECT', async () => {
    const hostId = 'mq-will';
    const since = new Date().toISOString();
    const statuses = await Inbox.open(await connect('itest-mq-will-watcher'), topics.hostStatus(hostId));
    const offline: HostStatus = { v: 1, hostId, state: 'offline', since, reason: 'connection lost' };
    const dying = await connect(`herd-compute-${hostId}`, { will: { topic: topics.hostStatus(hostId), payload: offline } });
    await publishJson(dying, topics.hostStatus(hostId), { v: 1, hostId, state: 'online', since } satisfies HostStatus, { retain: true });
    await statuses.next('state is online', (m) => m.json?.state === 'online');

    dying.stream.destroy();

    expect((await statuses.next('state is offline', (m) => m.json?.state === 'offline')).json).toEqual(offline);
    const late = await Inbox.open(await connect('itest-mq-will-late'), topics.hostStatus(hostId));
    const retained = await late.next('a retained status', () => true);
    expect(retained).toMatchObject({ retain: true, json: offline });
  });
});

describe('daemons on an external broker (Mosquitto)', () => {
  let control: ControlDaemon;
  let compute: ComputeDaemon;
  const hostId = 'mq-compute';

  beforeAll(async () => {
    control = buildControlDaemon(controlConfigSchema.parse({ nodeId: 'itest', broker: { embedded: false, url }, loop: { enabled: false }, metrics: { port: 0 }, dashboard: { port: 0 } }), { log });
    closers.push(() => control.close());
    await control.start();
    const stateDir = join(dir, 'compute-state');
    compute = buildComputeDaemon(computeConfigSchema.parse({ hostId, broker: { url }, stateDir, containersIntervalSeconds: 3600, metrics: { port: 0 } }), { runtime: fakeRuntime(), log });
    closers.push(() => compute.close());
  });

  it('the control daemon uses the configured broker and sees a status published there', async () => {
    expect(control.brokerUrl()).toBe(url);
    // Counts relative to what is already retained in the broker (earlier tests' hosts).
    const before = control.status();
    expect(before.brokerUrl).toBe(url);
    const publisher = await connect('itest-mq-publisher');
    const status = (state: 'online' | 'offline'): HostStatus => ({ v: 1, hostId: 'mq-manual', state, since: new Date().toISOString() });
    await publishJson(publisher, topics.hostStatus('mq-manual'), status('online'), { retain: true });
    await eventually('control sees mq-manual online', () => control.status().hosts === before.hosts + 1 && control.status().online === before.online + 1);
    await publishJson(publisher, topics.hostStatus('mq-manual'), status('offline'), { retain: true });
    await eventually('control sees mq-manual offline', () => control.status().online === before.online);
  });

  it('sees a compute daemon come online, serves its commands, and sees it go offline', async () => {
    const before = control.status();
    await compute.start();
    await eventually('control sees the compute host online', () => control.status().hosts === before.hosts + 1 && control.status().online === before.online + 1);
    const rpc = await CommandClient.create(await connect('itest-mq-cli'), 'itest-mq-cli', log);
    closers.push(() => rpc.close());
    await expect(rpc.request(hostId, 'host.info', {})).resolves.toMatchObject({ hostId, state: 'online', runtime: { dockerVersion: 'fake-1.0' } });
    await expect(rpc.request(hostId, 'container.list', {})).resolves.toEqual([]);
    await expect(rpc.request(hostId, 'container.run', { name: 'web', image: 'busybox:1.36', env: ['NOPE'] })).rejects.toMatchObject({
      code: 'BAD_MESSAGE',
      message: expect.stringContaining('`args.env.0`'),
    });
    expect(compute.status().connected).toBe(true);

    await compute.close();
    await eventually('control sees the compute host offline', () => control.status().online === before.online && control.status().hosts === before.hosts + 1);
  });
});
