/**
 * Publishing samples with a bounded buffer. mqtt.js's own offline queue is unbounded (and
 * drops QoS 0 when configured not to queue it), so the monitor keeps its own: while the
 * broker is unreachable at most `capacity` samples wait (a message counts as many samples
 * as it carries: a host sample 1, a container batch its size), the oldest messages are
 * dropped first, and the buffer is flushed in order on (re)connect.
 */
import type { Logger } from 'pino';
import type { MqttClient } from '../protocol/mqtt.ts';

export interface PublisherStats {
  published: number;
  buffered: number;
  dropped: number;
}

export class BufferedPublisher {
  private client: MqttClient | undefined;
  private readonly buffer: Array<{ topic: string; payload: string; samples: number }> = [];
  private head = 0;
  /** Samples in buffer[head..]. */
  private bufferedSamples = 0;
  private published = 0;
  private dropped = 0;
  private readonly onConnect = () => this.flush();

  constructor(private readonly capacity: number, private readonly log: Logger) {}

  attach(client: MqttClient): void {
    this.client?.off('connect', this.onConnect);
    this.client = client;
    client.on('connect', this.onConnect);
    this.flush();
  }

  detach(): MqttClient | undefined {
    const c = this.client;
    c?.off('connect', this.onConnect);
    this.client = undefined;
    return c;
  }

  /** Publishes an encoded message (QoS 0) that carries `samples` samples. */
  publish(topic: string, payload: string, samples = 1): void {
    if (this.client?.connected !== true) this.enqueue(topic, payload, samples);
    else if (this.size() === 0) this.send(topic, payload, samples);
    else {
      this.enqueue(topic, payload, samples);
      this.flush();
    }
  }

  /** Counts in samples. */
  stats(): PublisherStats {
    return { published: this.published, buffered: this.bufferedSamples, dropped: this.dropped };
  }

  private size(): number {
    return this.buffer.length - this.head;
  }

  private enqueue(topic: string, payload: string, samples: number): void {
    const droppedBefore = this.dropped;
    if (samples > this.capacity) {
      // Larger than the whole buffer: it cannot be kept, and older messages stay.
      this.dropped += samples;
    } else {
      while (this.size() > 0 && this.bufferedSamples + samples > this.capacity) {
        const old = this.buffer[this.head++] as { samples: number };
        this.bufferedSamples -= old.samples;
        this.dropped += old.samples;
      }
      this.buffer.push({ topic, payload, samples });
      this.bufferedSamples += samples;
    }
    if (this.dropped > droppedBefore && (droppedBefore === 0 || Math.floor(this.dropped / 1000) > Math.floor(droppedBefore / 1000))) {
      this.log.warn({ dropped: this.dropped, capacity: this.capacity }, 'broker unreachable: publish buffer full, dropping oldest samples');
    }
    // Compact now and then so the array does not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.buffer.length) {
      this.buffer.splice(0, this.head);
      this.head = 0;
    }
  }

  private flush(): void {
    const client = this.client;
    if (client === undefined) return;
    const n = this.size();
    while (this.size() > 0 && client.connected) {
      const item = this.buffer[this.head++] as { topic: string; payload: string; samples: number };
      this.bufferedSamples -= item.samples;
      this.send(item.topic, item.payload, item.samples);
    }
    if (this.size() === 0) {
      this.buffer.length = 0;
      this.head = 0;
      this.bufferedSamples = 0;
    }
    if (n > 0) this.log.info({ flushed: n - this.size() }, 'broker reachable: flushed buffered samples');
  }

  private send(topic: string, payload: string, samples: number): void {
    this.published += samples;
    this.client?.publish(topic, payload, { qos: 0 }, (err) => {
      if (err !== undefined && err !== null) this.log.debug({ err: err.message, topic }, 'publish failed');
    });
  }
}
