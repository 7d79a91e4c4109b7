/**
 * A maximum MQTT packet size for the embedded broker. aedes has no such option and its
 * parser buffers a packet until it is complete, so an oversized PUBLISH would be held in
 * memory whole: this meter reads each packet's fixed header (type byte + variable-length
 * "remaining length", MQTT 3.1.1 §2.2.3) as bytes arrive and says "too large" before the
 * body is buffered.
 */
export class PacketSizeMeter {
  /** Bytes of the current packet's body still to skip. */
  private remaining = 0;
  /** Reading the length: its value so far, the multiplier, and how many length bytes were read. */
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private state: 'type' | 'length' | 'body' = 'type';

  /** The limit applies to packets whose header arrives after it is set (the broker raises it once a client is authenticated). */
  constructor(public maxBytes: number) {}

  /** Feeds received bytes; returns the size of the first packet over the limit, or undefined. */
  feed(buf: Buffer): number | undefined {
    let i = 0;
    while (i < buf.length) {
      if (this.state === 'body') {
        const skip = Math.min(this.remaining, buf.length - i);
        this.remaining -= skip;
        i += skip;
        if (this.remaining === 0) this.state = 'type';
        continue;
      }
      const byte = buf[i++] as number;
      if (this.state === 'type') {
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        continue;
      }
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if ((byte & 0x80) !== 0 && this.lengthBytes < 4) continue;
      const total = 1 + this.lengthBytes + this.length;
      if (total > this.maxBytes) return total;
      this.remaining = this.length;
      this.state = this.remaining === 0 ? 'type' : 'body';
    }
    return undefined;
  }
}
