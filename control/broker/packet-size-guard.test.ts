import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { PacketSizeMeter } from './packet-size-guard.ts';

const publish = (bytes: number) => mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(bytes), qos: 0, retain: false, dup: false });

describe('PacketSizeMeter', () => {
  it('passes packets up to the limit however the bytes are split, and names the first one over it', () => {
    const small = publish(100);
    const large = publish(70_000); // a 3-byte remaining length
    const stream = Buffer.concat([small, small, large, small]);
    for (const chunk of [1, 2, 7, 4096, stream.length]) {
      const meter = new PacketSizeMeter(large.length - 1);
      let over: number | undefined;
      for (let i = 0; i < stream.length && over === undefined; i += chunk) over = meter.feed(stream.subarray(i, i + chunk));
      expect(over, `chunks of ${chunk}`).toBe(large.length);
      const roomy = new PacketSizeMeter(large.length);
      for (let i = 0; i < stream.length; i += chunk) expect(roomy.feed(stream.subarray(i, i + chunk))).toBeUndefined();
    }
  });

  it('says "too large" from the header, before the body arrives', () => {
    const meter = new PacketSizeMeter(1024);
    expect(meter.feed(publish(1_000_000).subarray(0, 5))).toBeGreaterThan(1_000_000);
  });

  it('handles packets without a body (PINGREQ)', () => {
    const meter = new PacketSizeMeter(10);
    const ping = mqttPacket.generate({ cmd: 'pingreq' });
    expect(meter.feed(Buffer.concat([ping, ping, publish(1)]))).toBeUndefined();
  });
});

describe('PacketSizeMeter limit', () => {
  it('applies a raised limit to the packets whose header comes after it (the broker raises it once a client authenticated)', () => {
    const meter = new PacketSizeMeter(64);
    expect(meter.feed(publish(10))).toBeUndefined();
    expect(new PacketSizeMeter(64).feed(publish(1000))).toBeGreaterThan(1000);
    meter.maxBytes = 4096;
    expect(meter.feed(publish(1000))).toBeUndefined();
  });
});
