/**
 * `herd migrate` outlives a broker restart (control/cli/migrate-command.ts opens a
 * reconnecting session): against a real in-process aedes broker that goes away while the
 * migration runs and comes back on the same port, the client keeps asking the source, says
 * the broker is unreachable (no unhandled rejection), and ends with the outcome the source
 * recorded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { computeClientId, operatorClientId } from '../../protocol/access.ts';
import { watchCluster } from '../../protocol/cluster-view.ts';
import { silentLogger } from '../../protocol/log.ts';
import type { MigrationResult } from '../../protocol/messages.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { CommandClient, serveCommands } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../broker/embedded-broker.ts';
import { migrateOnce } from './migration-client.ts';

describe('migrateOnce across a broker restart', () => {
  let broker: EmbeddedBroker | undefined;
  const clients: MqttClient[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  afterEach(async () => {
    process.off('unhandledRejection', onUnhandled);
    for (const c of clients.splice(0)) await closeBroker(c, 500).catch(() => undefined);
    await broker?.close();
    broker = undefined;
  });

  it('keeps asking the source while the broker is away and ends with the outcome it recorded', async () => {
    process.on('unhandledRejection', onUnhandled);
    broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, silentLogger);
    const url = broker.url;
    const port = Number(new URL(url).port);
    const result: MigrationResult = { migrationId: 'm-restart', herdId: 'c0ffee000001', container: 'web', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff', timings: { checkpointMs: 1, transferMs: 2, restoreMs: 3, totalMs: 9, downtimeMs: 6, checkpointBytes: 10, filesystemBytes: 20 } };

    // The hosts' retained state, and a source that never answers the start (its reply is lost with the broker) but records the end.
    const fake = await connectBroker({ url, clientId: 'restart-fake', reconnectPeriodMs: 0 });
    clients.push(fake);
    for (const h of ['h1', 'h2']) {
      await publishJson(fake, topics.hostStatus(h), { v: 1, hostId: h, state: 'online', since: '2026-11-28T06:00:00.000Z' }, { retain: true });
      const containers = h === 'h1' ? [{ herdId: 'c0ffee000001', name: 'web', hostId: 'h1', dockerId: 'd1', image: 'x', state: 'running' }] : [];
      await publishJson(fake, topics.hostContainers(h), { v: 1, hostId: h, at: new Date().toISOString(), containers }, { retain: true });
    }
    let ended = false;
    const source = await connectBroker({ url, clientId: computeClientId('h1'), reconnectPeriodMs: 200 });
    clients.push(source);
    await serveCommands(source, 'h1', computeClientId('h1'), {
      'migration.start': () => new Promise(() => undefined),
      'migration.status': async (cmd) => (ended ? { migrationId: cmd.args.migrationId, hostId: 'h1', role: 'source', state: 'done', result } : { migrationId: cmd.args.migrationId, hostId: 'h1', role: 'source', state: 'in-flight', phase: 'transfer' }),
    }, silentLogger);

    // The CLI's session: reconnecting before any subscription (as openSession does).
    const clientId = operatorClientId(undefined, 'herd-cli', 'localhost');
    const client = await connectBroker({ url, clientId, reconnectPeriodMs: 200 });
    clients.push(client);
    const session = { client, rpc: await CommandClient.create(client, clientId, silentLogger), view: await watchCluster(client, silentLogger) };
    const lines: string[] = [];
    const done = migrateOnce(session, 'web', 'h2', 'diff', () => undefined, (l) => lines.push(l), { migrationId: 'm-restart', pollEveryMs: 1000 });
    done.catch(() => undefined);

    await new Promise((r) => setTimeout(r, 300));
    await broker.close(); // away over the first poll (1 s after the start; it waits 5 s for the broker)
    broker = undefined;
    await new Promise((r) => setTimeout(r, 6500));
    expect(lines.some((l) => l.includes('the MQTT broker is unreachable') && l.includes('migration m-restart goes on on its hosts'))).toBe(true);
    ended = true;
    broker = await startEmbeddedBroker({ host: '127.0.0.1', port }, silentLogger);
    await expect(done).resolves.toEqual(result); // asked again once both clients are back
    expect(lines.at(-1)).toBe('broker reachable again: still following migration m-restart');
    expect(unhandled).toEqual([]);
  }, 30_000);
});
