/**
 * Request/reply, bad messages, duplicates, timeouts and the last will through the REAL
 * embedded broker (aedes on a loopback port), plus the compute daemon's command path
 * with an in-memory ContainerRuntime (no Docker).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildComputeDaemon, type ComputeDaemon } from '../../compute/daemon.ts';
import { computeConfigSchema } from '../../compute/config.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { HerdError } from '../../protocol/errors.ts';
import { silentLogger } from '../../protocol/log.ts';
import type { HostStatus } from '../../protocol/messages.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { computeClientId } from '../../protocol/access.ts';
import { CommandClient, serveCommands, type CommandServer } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { eventually, fakeRuntime, Inbox } from './helpers.ts';

const log = silentLogger;
const HOST = 'itest-host';
const RAW_ID = 'itest-raw';

let broker: EmbeddedBroker;
const clients: MqttClient[] = [];
const closers: Array<() => Promise<unknown>> = [];

async function connect(clientId: string, extra: Partial<Parameters<typeof connectBroker>[0]> = {}): Promise<MqttClient> {
  const client = await connectBroker({ url: broker.url, clientId, reconnectPeriodMs: 0, ...extra });
  clients.push(client);
  return client;
}

let rpc: CommandClient;
let raw: MqttClient;
let rawReplies: Inbox;
let stopCalls = 0;

beforeAll(async () => {
  broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, log);
  const serverClient = await connect(computeClientId(HOST));
  const server: CommandServer = await serveCommands(
    serverClient,
    HOST,
    computeClientId(HOST),
    {
      'host.info': async (cmd) => ({ hostId: HOST, askedBy: cmd.from }),
      'container.stop': async (cmd) => {
        stopCalls += 1;
        return { stopped: cmd.args.container, calls: stopCalls };
      },
      'container.remove': async (cmd) => {
        throw new HerdError('CONFLICT', `container "${cmd.args.container}" is running`);
      },
    },
    log,
  );
  closers.push(() => server.close());
  const caller = await connect('itest-caller');
  rpc = await CommandClient.create(caller, 'itest-caller', log);
  closers.push(() => rpc.close());
  raw = await connect(RAW_ID);
  rawReplies = await Inbox.open(raw, topics.replies(RAW_ID));
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await Promise.all(clients.map((c) => closeBroker(c)));
  await broker?.close();
});

const envelope = (id: string, type: string, args: unknown) => ({ v: 1, id, type, from: RAW_ID, sentAt: new Date().toISOString(), args });
const replyTo = (id: string) => rawReplies.next(`reply id is ${id}`, (m) => m.json?.id === id);

describe('request/reply through the embedded broker', () => {
  it('round-trips a command to its handler and back', async () => {
    await expect(rpc.request(HOST, 'host.info', {})).resolves.toEqual({ hostId: HOST, askedBy: 'itest-caller' });
  });

  it("turns a handler's HerdError into an error reply with its code", async () => {
    const err = await rpc.request(HOST, 'container.remove', { container: 'web' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HerdError);
    expect(err).toMatchObject({ code: 'CONFLICT', message: 'container "web" is running', retryable: false });
  });

  it('answers a type the server does not handle with UNKNOWN_COMMAND', async () => {
    await expect(rpc.request(HOST, 'container.list', {})).rejects.toMatchObject({ code: 'UNKNOWN_COMMAND', message: expect.stringContaining('"container.list"') });
  });

  it('answers malformed, unknown and badly-typed commands with errors naming the problem, then keeps serving', async () => {
    const topic = topics.hostCommands(HOST);
    // Not JSON (truncated): the address is still recovered from the text.
    await raw.publishAsync(topic, '{"v":1,"id":"bad-json","type":"host.info","from":"itest-raw","args":{', { qos: 1 });
    // Not JSON and nothing to reply to: must be dropped without harm.
    await raw.publishAsync(topic, 'garbage', { qos: 1 });
    await publishJson(raw, topic, envelope('bad-type', 'container.explode', {}));
    await publishJson(raw, topic, envelope('bad-field', 'container.run', { name: 'web', image: 42 }));
    await publishJson(raw, topic, { ...envelope('bad-extra', 'host.info', {}), colour: 'red' });

    const notJson = (await replyTo('bad-json')).json;
    expect(notJson).toMatchObject({ ok: false, from: computeClientId(HOST), error: { code: 'BAD_MESSAGE', retryable: false } });
    expect(notJson.error.message).toMatch(/command is not valid JSON/);

    const unknown = (await replyTo('bad-type')).json;
    expect(unknown.error.code).toBe('UNKNOWN_COMMAND');
    expect(unknown.error.message).toContain('"container.explode"');

    const badField = (await replyTo('bad-field')).json;
    expect(badField.error.code).toBe('BAD_MESSAGE');
    expect(badField.error.message).toMatch(/field `args.image`: .*expected string/);

    const extra = (await replyTo('bad-extra')).json;
    expect(extra.error).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('`colour`') });

    // Through CommandClient too: the caller gets a HerdError, not a timeout.
    await expect(rpc.request(HOST, 'container.run', { name: 'web' } as never)).rejects.toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('`args.image`') });

    await publishJson(raw, topic, envelope('good-after', 'host.info', {}));
    expect((await replyTo('good-after')).json).toMatchObject({ ok: true, result: { hostId: HOST, askedBy: RAW_ID } });
    await expect(rpc.request(HOST, 'host.info', {})).resolves.toMatchObject({ hostId: HOST });
  });

  it('runs a duplicated command once and answers both deliveries with the first reply', async () => {
    const before = stopCalls;
    const command = envelope('dup-1', 'container.stop', { container: 'web' });
    await publishJson(raw, topics.hostCommands(HOST), command);
    await publishJson(raw, topics.hostCommands(HOST), command);
    const first = await rawReplies.next('first reply to dup-1', (m) => m.json?.id === 'dup-1');
    const second = await rawReplies.next('second reply to dup-1', (m) => m.json?.id === 'dup-1', 1);
    expect(first.json).toEqual({ v: 1, id: 'dup-1', ok: true, from: computeClientId(HOST), result: { stopped: 'web', calls: before + 1 } });
    expect(second.json).toEqual(first.json);
    expect(stopCalls).toBe(before + 1);
    // A new id runs again.
    await expect(rpc.request(HOST, 'container.stop', { container: 'web' })).resolves.toEqual({ stopped: 'web', calls: before + 2 });
  });

  it('fails with TIMEOUT naming the host and the command when nobody serves the host', async () => {
    const err = await rpc.request('nobody-home', 'container.list', {}, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HerdError);
    expect(err).toMatchObject({ code: 'TIMEOUT', retryable: true });
    expect((err as HerdError).message).toContain('host nobody-home');
    expect((err as HerdError).message).toContain('"container.list"');
  });
});

describe('last will through the embedded broker', () => {
  it('publishes the retained offline status when a connection dies without DISCONNECT', async () => {
    const hostId = 'itest-will';
    const since = new Date().toISOString();
    const watcher = await connect('itest-will-watcher');
    const statuses = await Inbox.open(watcher, topics.hostStatus(hostId));
    const offline: HostStatus = { v: 1, hostId, state: 'offline', since, reason: 'connection lost' };
    const dying = await connect(`herd-compute-${hostId}`, { will: { topic: topics.hostStatus(hostId), payload: offline } });
    const online: HostStatus = { v: 1, hostId, state: 'online', since };
    await publishJson(dying, topics.hostStatus(hostId), online, { retain: true });
    await statuses.next('state is online', (m) => m.json?.state === 'online');

    dying.stream.destroy();

    expect((await statuses.next('state is offline', (m) => m.json?.state === 'offline')).json).toEqual(offline);
    // Retained: a client that subscribes later sees offline at once.
    const late = await connect('itest-will-late');
    const lateStatuses = await Inbox.open(late, topics.hostStatus(hostId));
    const retained = await lateStatuses.next('a retained status', () => true);
    expect(retained.retain).toBe(true);
    expect(retained.json).toEqual(offline);
  });
});

describe('compute daemon command path (in-memory runtime, no Docker)', () => {
  let daemon: ComputeDaemon;
  let stateDir: string;
  const hostId = 'itest-compute';
  const runtime = fakeRuntime({ images: ['busybox:1.36'] });

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'herd-itest-compute-'));
    const config = computeConfigSchema.parse({ hostId, broker: { url: broker.url }, stateDir, containersIntervalSeconds: 3600, ssh: { address: '10.77.0.11' }, metrics: { port: 0 } });
    daemon = buildComputeDaemon(config, { runtime, log });
    closers.push(async () => {
      await daemon.close();
      rmSync(stateDir, { recursive: true, force: true });
    });
    await daemon.start();
  });

  it('announces itself online (retained) on start', async () => {
    const watcher = await connect('itest-compute-watcher');
    const statuses = await Inbox.open(watcher, topics.hostStatus(hostId));
    const status = await statuses.next('state is online', (m) => m.json?.state === 'online');
    expect(status.json).toMatchObject({ v: 1, hostId, state: 'online', address: '10.77.0.11', sshPort: 22, dockerVersion: 'fake-1.0' });
  });

  it('answers host.info and container.list', async () => {
    await expect(rpc.request(hostId, 'host.info', {})).resolves.toMatchObject({ hostId, state: 'online', runtime: { dockerVersion: 'fake-1.0' } });
    await expect(rpc.request(hostId, 'container.list', {})).resolves.toEqual([]);
  });

  it('runs a container, lists it, and publishes the container list', async () => {
    const watcher = await connect('itest-containers-watcher');
    const lists = await Inbox.open(watcher, topics.hostContainers(hostId));
    const run = await rpc.request<{ herdId: string; name: string; state: string }>(hostId, 'container.run', { name: 'web', image: 'busybox:1.36' });
    expect(run).toMatchObject({ name: 'web', hostId, state: 'running' });
    expect(run.herdId).toMatch(/^[A-Za-z0-9]/);
    await expect(rpc.request(hostId, 'container.list', {})).resolves.toEqual([expect.objectContaining({ name: 'web', herdId: run.herdId })]);
    await lists.next('the list has web', (m) => m.json?.containers?.some((c: { name: string }) => c.name === 'web') === true);
  });

  it('rejects container.run with a bad field as BAD_MESSAGE without calling the runtime, and keeps running', async () => {
    const callsBefore = runtime.calls.length;
    const err = await rpc.request(hostId, 'container.run', { name: 'db', image: 'busybox:1.36', memoryLimitBytes: -5 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('`args.memoryLimitBytes`') });
    expect(runtime.calls.slice(callsBefore).filter((c) => c.startsWith('create'))).toEqual([]);
    await expect(rpc.request(hostId, 'container.run', { name: 'db', image: 'missing:latest' })).rejects.toMatchObject({ code: 'IMAGE_MISSING' });
    expect(daemon.status()).toMatchObject({ hostId, connected: true });
    await expect(rpc.request(hostId, 'host.info', {})).resolves.toMatchObject({ hostId, state: 'online' });
  });

  it('publishes offline when closed', async () => {
    const watcher = await connect('itest-compute-close-watcher');
    const statuses = await Inbox.open(watcher, topics.hostStatus(hostId));
    await statuses.next('state is online', (m) => m.json?.state === 'online');
    await daemon.close();
    expect((await statuses.next('state is offline', (m) => m.json?.state === 'offline')).json).toMatchObject({ hostId, reason: 'daemon stopped' });
    await eventually('daemon reports disconnected', () => daemon.status().connected === false);
  });
});
