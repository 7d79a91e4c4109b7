/**
 * CommandClient against a real in-process aedes broker: a reply arrives; with the broker
 * gone, a request ends with BROKER_UNAVAILABLE (marked "no reply") instead of leaving a
 * rejection unobserved, whether the client reconnects (the publish waits for a broker that
 * does not come back) or not (the publish fails at once).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { computeClientId, operatorClientId } from './access.ts';
import { HerdError } from './errors.ts';
import { silentLogger } from './log.ts';
import { closeBroker, connectBroker, type MqttClient } from './mqtt.ts';
import { CommandClient, isNoReply, serveCommands } from './rpc.ts';

interface TestBroker {
  url: string;
  close(): Promise<void>;
}

async function startBroker(): Promise<TestBroker> {
  const aedes = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => aedes.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('CommandClient', () => {
  const clients: MqttClient[] = [];
  let broker: TestBroker | undefined;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  afterEach(async () => {
    process.off('unhandledRejection', onUnhandled);
    for (const c of clients.splice(0)) await closeBroker(c, 200).catch(() => undefined);
    await broker?.close().catch(() => undefined);
    broker = undefined;
    unhandled.length = 0;
  });

  const sender = async (reconnectPeriodMs: number) => {
    broker ??= await startBroker();
    const clientId = operatorClientId(undefined, 'rpc-test', 'localhost');
    const client = await connectBroker({ url: broker.url, clientId, reconnectPeriodMs });
    clients.push(client);
    return { client, rpc: await CommandClient.create(client, clientId, silentLogger) };
  };

  it('matches the reply of the host asked', async () => {
    const { rpc } = await sender(0);
    const host = await connectBroker({ url: (broker as TestBroker).url, clientId: computeClientId('h1'), reconnectPeriodMs: 0 });
    clients.push(host);
    await serveCommands(host, 'h1', computeClientId('h1'), { 'migration.status': async (cmd) => ({ migrationId: cmd.args.migrationId, hostId: 'h1', state: 'unknown' }) }, silentLogger);
    await expect(rpc.request('h1', 'migration.status', { migrationId: 'm-1' }, { timeoutMs: 5000 })).resolves.toMatchObject({ migrationId: 'm-1', state: 'unknown' });
  });

  it('with a reconnecting client and the broker gone: BROKER_UNAVAILABLE at the timeout, no unhandled rejection', async () => {
    process.on('unhandledRejection', onUnhandled);
    const { client, rpc } = await sender(100);
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    await (broker as TestBroker).close();
    broker = undefined;
    await closed;
    // The publish is queued for a broker that never comes back: it neither completes nor fails.
    const err = await rpc.request('h1', 'migration.status', { migrationId: 'm-2' }, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HerdError);
    expect(err).toMatchObject({ code: 'BROKER_UNAVAILABLE', retryable: true, message: expect.stringContaining('did not take "migration.status" for host h1 within 300 ms') });
    expect(isNoReply(err)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(unhandled).toEqual([]);
  });

  it('a publish that fails ends the request at once with BROKER_UNAVAILABLE and forgets it', async () => {
    process.on('unhandledRejection', onUnhandled);
    const { client, rpc } = await sender(0);
    await client.endAsync(true);
    const t0 = Date.now();
    const err = await rpc.request('h1', 'migration.status', { migrationId: 'm-3' }, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(err).toMatchObject({ code: 'BROKER_UNAVAILABLE', message: expect.stringContaining('could not publish "migration.status" to host h1') });
    expect(isNoReply(err)).toBe(true);
    expect((rpc as unknown as { pending: Map<string, unknown> }).pending.size).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(unhandled).toEqual([]);
  });
});
