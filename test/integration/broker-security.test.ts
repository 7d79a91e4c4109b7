/**
 * The embedded broker with a users file and TLS (as the lab and provisioning run it), and
 * the daemons' own checks: who may connect, publish, subscribe and command; forged,
 * stale, replayed, oversized and random messages. A real aedes on a loopback TLS port,
 * real command servers; no Docker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTls } from 'node:tls';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initAuth, type AuthFiles } from '../../control/auth/auth-init.ts';
import { BROKER_LIMITS, startEmbeddedBroker, type EmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { computeClientId, controlClientId, operatorClientId } from '../../protocol/access.ts';
import { brokerCredentials } from '../../protocol/config.ts';
import { loadUsersFile } from '../../protocol/credentials.ts';
import { silentLogger } from '../../protocol/log.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { CommandClient, serveCommands, type CommandHandlers } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { thrown } from '../support/thrown.ts';
import { badFuzzReplies, fuzzCommandTopics } from '../support/command-fuzz.ts';
import { eventually, Inbox } from './helpers.ts';

const log = silentLogger;
let dir: string;
let auth: AuthFiles;
let broker: EmbeddedBroker;
const clients: MqttClient[] = [];
const closers: Array<() => Promise<unknown>> = [];

/** Connects as `username` (its credentials file, the CA) with `clientId`. */
async function connectAs(username: string | undefined, clientId: string, extra: { password?: string; noCa?: boolean } = {}): Promise<MqttClient> {
  const creds = brokerCredentials({ ...(username === undefined ? {} : { credentialsFile: auth.credentials[username] }), ...(extra.noCa === true ? {} : { caFile: auth.tls?.caFile }) });
  const client = await connectBroker({ url: broker.url, clientId, reconnectPeriodMs: 0, connectTimeoutMs: 3000, ...creds, ...(extra.password === undefined ? {} : { password: extra.password }) });
  clients.push(client);
  return client;
}

const stops: string[] = [];
let slowRunning = 0;
const handlers = (hostId: string): CommandHandlers => ({
  'host.info': async (cmd) => ({ hostId, askedBy: cmd.from }),
  'container.stop': async (cmd) => {
    stops.push(`${hostId}:${cmd.args.container}`);
    return { stopped: cmd.args.container };
  },
  'container.remove': async (cmd) => {
    stops.push(`${hostId}:removed:${cmd.args.container}`);
    return { removed: cmd.args.container };
  },
  'migration.prepare': async () => ({ targetDockerId: 'a'.repeat(64), checkpointDir: '/root/.ssh', upperDir: '/var/lib/docker/../../root' }),
  'migration.status': async (cmd) => {
    slowRunning++;
    await new Promise((r) => setTimeout(r, cmd.args.migrationId === 'slow' ? 1500 : 0));
    slowRunning--;
    return { migrationId: cmd.args.migrationId, hostId, state: 'unknown' };
  },
});

let h1: MqttClient;
/** h2's daemon connection, and how to bring it back after a test got it cut off. */
async function serveHost(host: string): Promise<MqttClient> {
  const c = await connectAs(`compute-${host}`, computeClientId(host));
  const server = await serveCommands(c, host, computeClientId(host), handlers(host), log, { limits: { maxAgeSeconds: 60, maxConcurrent: 2 } });
  closers.push(() => server.close());
  return c;
}
async function reconnectH2(): Promise<void> {
  await serveHost('h2');
}
let operator: MqttClient;
let operatorId: string;
let rpc: CommandClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herd-itest-security-'));
  auth = initAuth({ dir, computeHosts: ['h1', 'h2', 'h3'], operators: ['operator', 'alice'], controlNode: 'lab', tlsNames: ['127.0.0.1'] });
  const tls = auth.tls as NonNullable<AuthFiles['tls']>;
  const { readFileSync } = await import('node:fs');
  broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, users: loadUsersFile(auth.usersFile), tls: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, maxPacketBytes: 64 * 1024 }, log);
  h1 = await serveHost('h1');
  await serveHost('h2');
  operatorId = operatorClientId('operator', 'itest', 'box');
  operator = await connectAs('operator', operatorId);
  rpc = await CommandClient.create(operator, operatorId, log);
  closers.push(() => rpc.close());
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  for (const c of clients) await closeBroker(c, 500).catch(() => undefined);
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

const envelope = (id: string, type: string, args: unknown, from = operatorId, sentAt = new Date().toISOString()) => ({ v: 1, id, type, from, sentAt, args });

describe('who may connect', () => {
  it('refuses no credentials, a wrong password, an unknown user and plain TCP, naming the cause', async () => {
    expect(await thrown(connectAs(undefined, 'evil'))).toMatchObject({ code: 'NOT_AUTHORIZED', message: expect.stringMatching(/refused client evil without credentials/) });
    expect(await thrown(connectAs('operator', operatorClientId('operator', 'x', 'y'), { password: 'guess' }))).toMatchObject({ code: 'NOT_AUTHORIZED' });
    const err = await thrown(connectBroker({ url: broker.url, clientId: 'nobody.x', username: 'nobody', password: 'x', ca: brokerCredentials({ caFile: auth.tls?.caFile }).ca as Buffer, reconnectPeriodMs: 0 }));
    expect(err).toMatchObject({ code: 'NOT_AUTHORIZED' });
    const plain = await thrown(connectBroker({ url: broker.url.replace('mqtts:', 'mqtt:'), clientId: 'operator.plain', ...brokerCredentials({ credentialsFile: auth.credentials.operator }), reconnectPeriodMs: 0, connectTimeoutMs: 1500 }));
    expect(plain).toMatchObject({ code: 'BROKER_UNAVAILABLE' });
  });

  it('refuses a persistent session (clean: false): it would keep subscriptions and queued messages after the client left', async () => {
    const creds = brokerCredentials({ credentialsFile: auth.credentials.alice, caFile: auth.tls?.caFile });
    const err = await thrown(mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: operatorClientId('alice', 'persist', 'box'), clean: false, reconnectPeriod: 0, username: creds.username, password: creds.password, ca: creds.ca, rejectUnauthorized: true }));
    expect(err).toMatchObject({ code: 5 });
  });

  it('closes a connection whose CONNECT is over the small limit before authentication; after it, packets up to maxPacketBytes pass', async () => {
    const raw = connectTls({ host: '127.0.0.1', port: broker.address.port, ca: brokerCredentials({ caFile: auth.tls?.caFile }).ca });
    await new Promise<void>((resolve, reject) => raw.once('secureConnect', resolve).once('error', reject));
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.on('error', () => undefined);
    // A CONNECT announcing 32 KiB (under this broker's 64 KiB limit, over the 16 KiB allowed before authentication), then the first of its bytes.
    raw.write(Buffer.concat([Buffer.from([0x10, 0x80, 0x80, 0x02]), Buffer.alloc(4096, 'x')]));
    // Closed at the header, not when the 10 s allowed for a CONNECT run out.
    const at = Date.now();
    await closed;
    expect(Date.now() - at).toBeLessThan(5000);
    await publishJson(operator, topics.hostCommands('h1'), { junk: 'x'.repeat(32 * 1024) });
    expect(operator.connected).toBe(true);
  });

  it("refuses a certificate it cannot verify (no CA given) before sending credentials", async () => {
    expect(await thrown(connectAs('operator', operatorClientId('operator', 'noca', 'y'), { noCa: true }))).toMatchObject({ code: 'BROKER_UNAVAILABLE', message: expect.stringMatching(/certificate/) });
  });

  it("refuses a client id that is not the identity's: no one takes over a compute daemon's session", async () => {
    expect(await thrown(connectAs('operator', computeClientId('h1')))).toMatchObject({ code: 'NOT_AUTHORIZED', message: expect.stringMatching(/identifier rejected/i) });
    expect(await thrown(connectAs('compute-h2', computeClientId('h1')))).toMatchObject({ code: 'NOT_AUTHORIZED' });
    expect(await thrown(connectAs('alice', operatorId))).toMatchObject({ code: 'NOT_AUTHORIZED' });
    expect(h1.connected).toBe(true);
    await expect(rpc.request('h1', 'host.info', {})).resolves.toMatchObject({ hostId: 'h1' });
  });
});

describe('what each identity may publish and read', () => {
  it("a compute host cannot overwrite another host's retained status, nor read its commands or others' replies", async () => {
    const watcher = await connectAs('alice', operatorClientId('alice', 'watch', 'box'));
    await publishJson(h1, topics.hostStatus('h1'), { v: 1, hostId: 'h1', state: 'online', since: new Date().toISOString() }, { retain: true });
    // h3 (no daemon here) tries to say h2 is offline; the broker closes its connection instead.
    const forger = await connectAs('compute-h3', computeClientId('h3'));
    forger.publish(topics.hostStatus('h2'), JSON.stringify({ v: 1, hostId: 'h2', state: 'offline', since: new Date().toISOString() }), { qos: 0, retain: true });
    await eventually('the broker to drop the forger', () => !forger.connected);
    const statuses = await Inbox.open(watcher, topics.allHostStatus);
    await eventually('the retained status of h1', () => statuses.messages.some((m) => m.json?.hostId === 'h1'));
    expect(statuses.messages.some((m) => m.json?.hostId === 'h2')).toBe(false);
    for (const filter of [topics.hostCommands('h1'), topics.replies(computeClientId('h1')), 'herd/v1/#']) {
      expect(await thrown(watcher.subscribeAsync(filter)), filter).toMatchObject({ message: expect.stringMatching(/Subscribe error/) });
    }
  });

  it('refuses retained messages except on the topics Herd retains: they would be kept and replayed forever', async () => {
    const h3 = await connectAs('compute-h3', computeClientId('h3'));
    h3.publish(topics.migrationEvents('m-flood'), JSON.stringify({ flood: true }), { qos: 0, retain: true });
    await eventually('the broker to drop the compute host', () => !h3.connected);
    const monitor = await connectAs('monitor', 'herd-monitor-retain');
    await publishJson(monitor, topics.hostMetrics('h1'), { fresh: true }); // not retained: fine
    monitor.publish(topics.hostMetrics('h1'), JSON.stringify({ flood: true }), { qos: 0, retain: true });
    await eventually('the broker to drop the monitor', () => !monitor.connected);
    const watcher = await connectAs('alice', operatorClientId('alice', 'retained', 'box'));
    const events = await Inbox.open(watcher, topics.allMigrationEvents);
    const metrics = await Inbox.open(watcher, topics.allHostMetrics);
    const statuses = await Inbox.open(watcher, topics.allHostStatus);
    await eventually('the retained status of h1 (retained where Herd retains)', () => statuses.messages.some((m) => m.retain && m.json?.hostId === 'h1'));
    expect([...events.messages, ...metrics.messages]).toEqual([]);
  });

  it('caps the subscriptions of one client (SUBACK 0x80 beyond the cap); an unsubscribe makes room', async () => {
    const many = await connectAs('alice', operatorClientId('alice', 'many', 'box'));
    const filters = Array.from({ length: BROKER_LIMITS.maxSubscriptions }, (_, i) => topics.migrationEvents(`m-${i}`));
    await many.subscribeAsync(filters, { qos: 0 });
    expect(await thrown(many.subscribeAsync(topics.migrationEvents('m-one-more')))).toMatchObject({ message: expect.stringMatching(/Subscribe error/) });
    await many.subscribeAsync(filters[0] as string); // held already: not one more
    await many.unsubscribeAsync(filters[0] as string);
    await many.subscribeAsync(topics.migrationEvents('m-one-more'));
    expect(many.connected).toBe(true);
  });

  it('a monitor cannot send commands: the broker drops them and the host never sees one', async () => {
    const monitor = await connectAs('monitor', 'herd-monitor-itest');
    const before = stops.length;
    monitor.publish(topics.hostCommands('h1'), JSON.stringify(envelope('m-1', 'container.remove', { container: 'db', force: true }, 'herd-monitor-itest')), { qos: 0 });
    await eventually('the broker to drop the monitor', () => !monitor.connected);
    expect(stops.length).toBe(before);
  });

  it("a command or reply claiming another sender is dropped by the broker", async () => {
    const alice = await connectAs('alice', operatorClientId('alice', 'forge', 'box'));
    const before = stops.length;
    alice.publish(topics.hostCommands('h1'), JSON.stringify(envelope('f-1', 'container.stop', { container: 'db' }, operatorId)), { qos: 0 });
    await eventually('the broker to drop the forger', () => !alice.connected);
    const h2 = clients.find((c) => c.options.clientId === computeClientId('h2')) as MqttClient;
    h2.publish(topics.replies(operatorId), JSON.stringify({ v: 1, id: 'x', ok: true, from: computeClientId('h1'), result: {} }), { qos: 0 });
    await eventually('the broker to cut off h2', () => !h2.connected); // the real h2 daemon, had it done this, is cut off too
    await reconnectH2();
    expect(stops.length).toBe(before);
  });
});

describe('what the daemons accept', () => {
  it('a compute host may send its peers only the target side of a migration', async () => {
    const h1rpc = await CommandClient.create(h1, computeClientId('h1'), log);
    try {
      await expect(h1rpc.request('h2', 'container.remove', { container: 'db', force: true })).rejects.toMatchObject({ code: 'NOT_AUTHORIZED', message: expect.stringMatching(/compute host h1 may send its peers only/) });
      await expect(h1rpc.request('h2', 'migration.status', { migrationId: 'm-2' })).resolves.toMatchObject({ hostId: 'h2' });
    } finally {
      await h1rpc.close();
    }
    expect(stops).not.toContain('h2:removed:db');
  });

  it('ignores a reply from a peer other than the one asked, and takes the real one', async () => {
    const h3 = await connectAs('compute-h3', computeClientId('h3'));
    const id = 'forged-reply-1';
    const asked = rpc.request('h1', 'host.info', {}, { id });
    // h3 answers first, for h1: same id, its own (true) `from`, a result that would mislead.
    await publishJson(h3, topics.replies(operatorId), { v: 1, id, ok: true, from: computeClientId('h3'), result: { hostId: 'forged' } });
    await expect(asked).resolves.toMatchObject({ hostId: 'h1' });
  });

  it("validates a result before the caller acts on it: paths outside the peer's rules are refused", async () => {
    const err = await thrown(rpc.request('h1', 'migration.prepare', { migrationId: 'm-3', sourceHost: 'h2', spec: { herdId: 'c1', name: 'c1', image: 'herd/busybox' }, fsMode: 'diff', checkpointId: 'cp-1' }));
    expect(err).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringMatching(/reply of herd-compute-h1 to "migration.prepare" is invalid: field `result.upperDir`: must not contain empty, \. or \.\. segments/) });
  });

  it('refuses a stale command (a replay) and answers a redelivery within the window with the first reply, running it once', async () => {
    const replies = await Inbox.open(operator, topics.replies(operatorId));
    const old = envelope('stale-1', 'container.stop', { container: 'web' }, operatorId, new Date(Date.now() - 3_600_000).toISOString());
    await publishJson(operator, topics.hostCommands('h1'), old);
    const stale = await replies.next('reply to stale-1', (m) => m.json?.id === 'stale-1');
    expect(stale.json.error).toMatchObject({ code: 'STALE_COMMAND', message: expect.stringMatching(/sent 3600 s ago; host h1 accepts commands at most 60 s old/) });
    const future = envelope('future-1', 'container.stop', { container: 'web' }, operatorId, new Date(Date.now() + 3_600_000).toISOString());
    await publishJson(operator, topics.hostCommands('h1'), future);
    expect((await replies.next('reply to future-1', (m) => m.json?.id === 'future-1')).json.error.message).toMatch(/in the future/);
    const before = stops.filter((s) => s === 'h1:web').length;
    const fresh = envelope('replay-1', 'container.stop', { container: 'web' });
    await publishJson(operator, topics.hostCommands('h1'), fresh);
    await publishJson(operator, topics.hostCommands('h1'), fresh);
    const first = await replies.next('first reply to replay-1', (m) => m.json?.id === 'replay-1');
    const second = await replies.next('second reply to replay-1', (m) => m.json?.id === 'replay-1', 1);
    expect(second.json).toEqual(first.json);
    expect(stops.filter((s) => s === 'h1:web').length).toBe(before + 1);
  });

  it('runs at most maxConcurrent commands at once; the next gets BUSY (retryable)', async () => {
    const slow = [rpc.request('h1', 'migration.status', { migrationId: 'slow' }), rpc.request('h1', 'migration.status', { migrationId: 'slow' })];
    await eventually('two slow commands running', () => slowRunning === 2);
    expect(await thrown(rpc.request('h1', 'host.info', {}))).toMatchObject({ code: 'BUSY', retryable: true });
    await Promise.all(slow);
    await expect(rpc.request('h1', 'host.info', {})).resolves.toMatchObject({ hostId: 'h1' });
  });

  it('closes the connection of a client that sends a packet over the limit; others keep working', async () => {
    const big = await connectAs('alice', operatorClientId('alice', 'big', 'box'));
    const closed = new Promise<void>((resolve) => big.once('close', () => resolve()));
    big.publish(topics.hostCommands('h1'), Buffer.alloc(200 * 1024, 'x'), { qos: 0 });
    await closed;
    await expect(rpc.request('h1', 'host.info', {})).resolves.toMatchObject({ hostId: 'h1' });
  });
});

describe('fuzzing the command topics', () => {
  it('10,000 malformed or random messages: each gets an error reply or is dropped, nothing runs, the daemons keep serving', async () => {
    const replies = await Inbox.open(operator, topics.replies(operatorId));
    const before = stops.length;
    const addressed = await fuzzCommandTopics(operator, operatorId, [topics.hostCommands('h1'), topics.hostCommands('h2')], 10_000);
    await eventually(`error replies to the ${addressed} addressed messages`, () => replies.messages.filter((r) => String(r.json?.id).startsWith('fz-')).length >= addressed);
    const fuzzReplies = replies.messages.filter((r) => String(r.json?.id).startsWith('fz-'));
    expect(badFuzzReplies(fuzzReplies).slice(0, 3)).toEqual([]);
    expect(stops.length).toBe(before);
    expect(operator.connected).toBe(true);
    for (const host of ['h1', 'h2']) await expect(rpc.request(host, 'host.info', {})).resolves.toMatchObject({ hostId: host });
  }, 180_000);
});

describe('the control daemon identity', () => {
  it('may command hosts and read every host, but only as its own node', async () => {
    const control = await connectAs('control', controlClientId('lab'));
    const crpc = await CommandClient.create(control, controlClientId('lab'), log);
    try {
      await expect(crpc.request('h2', 'host.info', {})).resolves.toMatchObject({ askedBy: controlClientId('lab') });
    } finally {
      await crpc.close();
    }
    expect(await thrown(connectAs('control', controlClientId('other')))).toMatchObject({ code: 'NOT_AUTHORIZED' });
  });
});

describe('connections not yet authenticated', () => {
  it('are capped in all and per remote address; an authenticated one no longer counts', async () => {
    const capped = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, users: loadUsersFile(auth.usersFile), limits: { maxUnauthenticated: 3, maxUnauthenticatedPerAddress: 2 } }, log);
    const sockets: Socket[] = [];
    /** A connection from `localAddress` that sends nothing; whether the broker closed it within 300 ms. */
    const idle = async (localAddress: string) => {
      const socket = connectTcp({ host: '127.0.0.1', port: capped.address.port, localAddress });
      sockets.push(socket);
      socket.on('error', () => undefined);
      return new Promise<boolean>((resolve) => {
        socket.once('close', () => resolve(true));
        setTimeout(() => resolve(false), 300);
      });
    };
    try {
      expect(await idle('127.0.0.1')).toBe(false);
      expect(await idle('127.0.0.1')).toBe(false);
      expect(await idle('127.0.0.1')).toBe(true); // a third from the same address
      expect(await idle('127.0.0.2')).toBe(false);
      expect(await idle('127.0.0.3')).toBe(true); // a fourth in all
      (sockets[0] as Socket).destroy();
      const creds = brokerCredentials({ credentialsFile: auth.credentials.alice });
      let client: MqttClient | undefined;
      await eventually('a free slot for an operator', async () => {
        client = await connectBroker({ url: capped.url, clientId: operatorClientId('alice', 'capped', 'box'), reconnectPeriodMs: 0, connectTimeoutMs: 1000, ...creds }).catch(() => undefined);
        return client !== undefined;
      });
      clients.push(client as MqttClient);
      expect(await idle('127.0.0.4')).toBe(false); // the operator, authenticated, left its slot
    } finally {
      for (const s of sockets) s.destroy();
      await capped.close();
    }
  });
});
