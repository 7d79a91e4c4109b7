import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { watchCluster } from './cluster-view.ts';
import { silentLogger } from './log.ts';
import { PROTOCOL_VERSION } from './messages.ts';
import type { MqttClient } from './mqtt.ts';
import { topics } from './topics.ts';

const AT = '2026-11-23T06:00:00.000Z';

/** A client that delivers the given retained messages when subscribed. */
function retained(messages: Array<[string, object]>): MqttClient {
  const client = new EventEmitter() as EventEmitter & { subscribeAsync: () => Promise<void>; unsubscribeAsync: () => Promise<void>; connected: boolean };
  client.connected = true;
  client.subscribeAsync = async () => {
    for (const [topic, body] of messages) client.emit('message', topic, Buffer.from(JSON.stringify(body)));
  };
  client.unsubscribeAsync = async () => undefined;
  return client as unknown as MqttClient;
}

const online = (hostId: string) => [topics.hostStatus(hostId), { v: PROTOCOL_VERSION, hostId, state: 'online', since: AT }] as [string, object];
const copy = (hostId: string, state: string) => ({ herdId: 'busy-1', name: 'busy', hostId, dockerId: `${hostId}${'0'.repeat(62)}`, image: 'herd/busybox', state });

describe('findContainer', () => {
  it("takes the running copy while a migration's prepared target copy is listed too", async () => {
    // h2 (the target, its copy created but not running) is heard of before h1.
    const view = await watchCluster(
      retained([
        online('h2'),
        online('h1'),
        [topics.hostContainers('h2'), { v: PROTOCOL_VERSION, hostId: 'h2', at: AT, containers: [copy('h2', 'created')] }],
        [topics.hostContainers('h1'), { v: PROTOCOL_VERSION, hostId: 'h1', at: AT, containers: [copy('h1', 'running')] }],
      ]),
      silentLogger,
      0,
    );
    expect(view.findContainer('busy').hostId).toBe('h1');
    expect(view.findContainer('busy-1').hostId).toBe('h1');
    expect(() => view.findContainer('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_CONTAINER' }));
    await view.close();
  });
});

describe('a host speaks only for itself', () => {
  it("drops a status or container list naming another host, and entries a host lists for its peers", async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const log = { ...silentLogger, warn: (o: Record<string, unknown>) => warnings.push(o) } as unknown as typeof silentLogger;
    const fake = { ...copy('h2', 'running'), dockerId: 'f'.repeat(64), createdAt: '2030-01-01T00:00:00.000Z' };
    const view = await watchCluster(
      retained([
        online('h1'),
        online('h2'),
        // h1, compromised, on its own topics: a status for h3, h2's list, and a "newer" running copy of h2's container said to be on h2.
        [topics.hostStatus('h1'), { v: PROTOCOL_VERSION, hostId: 'h3', state: 'online', since: AT }],
        [topics.hostContainers('h2'), { v: PROTOCOL_VERSION, hostId: 'h2', at: AT, containers: [copy('h2', 'running')] }],
        [topics.hostContainers('h1'), { v: PROTOCOL_VERSION, hostId: 'h1', at: AT, containers: [fake, { ...copy('h1', 'running'), herdId: 'own-1', name: 'own' }] }],
        [topics.hostContainers('h1'), { v: PROTOCOL_VERSION, hostId: 'h2', at: AT, containers: [fake] }],
      ]),
      log,
      0,
    );
    expect(view.hosts().map((h) => h.hostId)).toEqual(['h1', 'h2']);
    expect(view.host('h1')?.hostId).toBe('h1');
    expect(view.containers().map((c) => `${c.hostId}/${c.name}/${c.dockerId.slice(0, 2)}`)).toEqual(['h2/busy/h2', 'h1/own/h1']);
    expect(warnings.map((w) => w.dropped ?? w.hostId)).toEqual(['h3', 1, 'h2']);
    await view.close();
  });
});
