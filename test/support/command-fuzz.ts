/**
 * Fuzzing of Herd's command topics: messages that can never be valid commands (random bytes,
 * random JSON, well-formed envelopes with one defect, commands with bad arguments). None
 * claims another sender, which the broker would drop (the broker tests cover that).
 */
import fc from 'fast-check';
import type { MqttClient } from '../../protocol/mqtt.ts';

const json = fc.jsonValue({ maxDepth: 3 });
const types = fc.constantFrom('host.info', 'container.run', 'container.stop', 'container.remove', 'migration.start', 'migration.prepare', 'migration.abort', 'control.pause', 'control.drain', 'no.such', '', 42, null);

const message = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ payload: Buffer.from(b) as unknown, addressed: false })),
  json.map((j) => ({ payload: JSON.stringify(j) as unknown, addressed: false })),
  // A well-formed envelope with exactly one defect.
  fc.record({ type: types, container: json, defect: fc.constantFrom('version', 'sentAt', 'extra', 'type', 'args') }).map((m) => ({
    payload: {
      v: m.defect === 'version' ? 2 : 1,
      type: m.defect === 'type' ? 'no.such' : m.type,
      args: m.defect === 'args' ? [m.container] : { container: m.container },
      sentAt: m.defect === 'sentAt' ? 'yesterday' : new Date().toISOString(),
      ...(m.defect === 'extra' ? { colour: 'red' } : {}),
    } as unknown,
    addressed: true,
  })),
  // A known command whose arguments are wrong (`force` is never a string).
  fc.record({ type: fc.constantFrom('container.stop', 'container.remove', 'container.run', 'migration.start', 'control.drain'), args: fc.dictionary(fc.string({ maxLength: 8 }), json, { maxKeys: 4 }) }).map((m) => ({
    payload: { v: 1, type: m.type, args: { ...m.args, force: 'yes' }, sentAt: new Date().toISOString() } as unknown,
    addressed: true,
  })),
);

/**
 * Publishes `count` fuzzed messages round-robin to `targets` as `clientId`. Addressed ones
 * carry the id `fz-<n>` and `from: clientId`, so each must get an error reply; returns
 * how many were addressed.
 */
export async function fuzzCommandTopics(client: MqttClient, clientId: string, targets: readonly string[], count: number, seed = 20261126): Promise<number> {
  let addressed = 0;
  for (const [i, m] of fc.sample(message, { numRuns: count, seed }).entries()) {
    let payload: string | Buffer;
    if (m.addressed) {
      payload = JSON.stringify({ ...(m.payload as object), id: `fz-${i}`, from: clientId });
      addressed++;
    } else payload = m.payload as string | Buffer;
    await client.publishAsync(targets[i % targets.length] as string, payload, { qos: 1 });
  }
  return addressed;
}

/** The replies to fuzzed messages that are not a well-formed error (should be none). */
export function badFuzzReplies(replies: readonly { text: string; json?: any }[]): string[] {
  return replies.filter((r) => String(r.json?.id).startsWith('fz-') && !(r.json.ok === false && typeof r.json.error?.code === 'string' && r.json.error.message.length > 0)).map((r) => r.text);
}
