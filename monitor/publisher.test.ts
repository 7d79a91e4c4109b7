import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../protocol/log.ts';
import type { MqttClient } from '../protocol/mqtt.ts';
import { BufferedPublisher } from './publisher.ts';

/** Just what the publisher uses of an mqtt.js client. */
function fakeClient() {
  const sent: string[] = [];
  const client = Object.assign(new EventEmitter(), {
    connected: false,
    publish(_topic: string, payload: string) {
      sent.push(JSON.parse(payload) as string);
    },
  });
  return { client, sent, asMqtt: client as unknown as MqttClient };
}

describe('BufferedPublisher', () => {
  it('keeps at most `capacity` samples while offline, dropping the oldest, and flushes in order on connect', () => {
    const { client, sent, asMqtt } = fakeClient();
    const p = new BufferedPublisher(3, silentLogger);
    p.attach(asMqtt);
    for (const s of ['a', 'b', 'c', 'd', 'e']) p.publish('t', JSON.stringify(s));
    expect(p.stats()).toEqual({ published: 0, buffered: 3, dropped: 2 });
    client.connected = true;
    client.emit('connect');
    expect(sent).toEqual(['c', 'd', 'e']);
    p.publish('t', JSON.stringify('f'));
    expect(sent).toEqual(['c', 'd', 'e', 'f']);
    expect(p.stats()).toEqual({ published: 4, buffered: 0, dropped: 2 });
  });

  it('buffers before any client is attached (broker down at start)', () => {
    const p = new BufferedPublisher(10, silentLogger);
    p.publish('t', JSON.stringify('x'));
    const { client, sent, asMqtt } = fakeClient();
    client.connected = true;
    p.attach(asMqtt);
    expect(sent).toEqual(['x']);
  });

  it('counts a batch as the samples it carries, dropping whole older messages to make room', () => {
    const { client, sent, asMqtt } = fakeClient();
    const p = new BufferedPublisher(5, silentLogger);
    p.attach(asMqtt);
    p.publish('t', '"a"', 2);
    p.publish('t', '"b"', 2);
    p.publish('t', '"c"', 2); // 6 > 5: 'a' goes
    expect(p.stats()).toEqual({ published: 0, buffered: 4, dropped: 2 });
    p.publish('t', '"huge"', 6); // larger than the whole buffer: only it is dropped
    expect(p.stats()).toEqual({ published: 0, buffered: 4, dropped: 8 });
    p.publish('t', '"d"', 3); // 7 > 5: 'b' goes
    client.connected = true;
    client.emit('connect');
    expect(sent).toEqual(['c', 'd']);
    expect(p.stats()).toEqual({ published: 5, buffered: 0, dropped: 10 });
  });
});
