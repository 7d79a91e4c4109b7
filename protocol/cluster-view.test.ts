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
