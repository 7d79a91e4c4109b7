import { describe, expect, it } from 'vitest';
import { decode, decodeCommand, encode, salvageReplyAddress } from './codec.ts';
import { HerdError, type ErrorCode } from './errors.ts';
import { hostStatusSchema } from './messages.ts';

const SENT_AT = '2026-03-02T09:20:00.000Z';
/** A valid command envelope; override any field (undefined removes it). */
function envelope(over: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = { v: 1, id: 'cmd-1', type: 'host.info', from: 'herd-cli-test-1', sentAt: SENT_AT, args: {} };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}
const wire = (over: Record<string, unknown> = {}) => JSON.stringify(envelope(over));

function decodeError(payload: string | Buffer): HerdError {
  try {
    decodeCommand(payload);
  } catch (err) {
    expect(err).toBeInstanceOf(HerdError);
    return err as HerdError;
  }
  throw new Error('decodeCommand accepted a bad command');
}

describe('decodeCommand accepts valid commands', () => {
  it.each([
    { type: 'host.info', args: {} },
    { type: 'container.list', args: {} },
    { type: 'container.run', args: { name: 'web', image: 'nginx:1.27', env: ['A=1'], cpuLimitCores: 0.5, network: { network: 'herd-lan', ip: '10.77.1.20' } } },
    { type: 'container.stop', args: { container: 'web', timeoutSeconds: 0 } },
    { type: 'container.remove', args: { container: 'web', force: true } },
    { type: 'container.checkpoint', args: { container: 'web' } },
    { type: 'migration.start', args: { migrationId: 'm1', container: 'web', targetHost: 'node-b', fsMode: 'full' } },
    { type: 'migration.prepare', args: { migrationId: 'm1', sourceHost: 'node-a', spec: { herdId: 'abc', name: 'web', image: 'nginx' }, fsMode: 'none', checkpointId: 'cp1' } },
    { type: 'migration.abort', args: { migrationId: 'm1' } },
  ])('$type', ({ type, args }) => {
    const command = decodeCommand(wire({ type, args }));
    expect(command).toMatchObject({ v: 1, id: 'cmd-1', type, from: 'herd-cli-test-1', sentAt: SENT_AT, args });
  });

  it('accepts a Buffer payload', () => {
    expect(decodeCommand(Buffer.from(wire())).type).toBe('host.info');
  });

  it('fills defaults of the args schema (migration.start fsMode → diff)', () => {
    const command = decodeCommand(wire({ type: 'migration.start', args: { migrationId: 'm1', container: 'web', targetHost: 'node-b' } }));
    expect(command.args).toEqual({ migrationId: 'm1', container: 'web', targetHost: 'node-b', fsMode: 'diff' });
  });
});

describe('decodeCommand rejects bad commands with an error naming the problem', () => {
  const CASES: Array<{ name: string; payload: string; code: ErrorCode; message: RegExp }> = [
    { name: 'not JSON', payload: '{"v":1,"id":', code: 'BAD_MESSAGE', message: /command is not valid JSON/ },
    { name: 'plain text', payload: 'hello', code: 'BAD_MESSAGE', message: /not valid JSON.*"hello"/ },
    { name: 'over 8 MiB', payload: wire({ args: { pad: 'x'.repeat(8 * 1024 * 1024) } }), code: 'BAD_MESSAGE', message: /command of \d+ bytes is larger than the 8388608 bytes Herd reads/ },
    { name: 'a JSON array', payload: '[1,2]', code: 'BAD_MESSAGE', message: /command is invalid: .*expected object/ },
    { name: 'JSON null', payload: 'null', code: 'BAD_MESSAGE', message: /command is invalid/ },
    { name: 'missing id', payload: wire({ id: undefined }), code: 'BAD_MESSAGE', message: /field `id`/ },
    { name: 'an id with a slash', payload: wire({ id: 'a/b' }), code: 'BAD_MESSAGE', message: /field `id`: must be 1-64 characters/ },
    { name: 'wrong v', payload: wire({ v: 2 }), code: 'BAD_MESSAGE', message: /field `v`/ },
    { name: 'bad sentAt', payload: wire({ sentAt: 'yesterday' }), code: 'BAD_MESSAGE', message: /field `sentAt`/ },
    { name: 'args not an object', payload: wire({ args: 'x' }), code: 'BAD_MESSAGE', message: /field `args`/ },
    { name: 'unknown type', payload: wire({ type: 'container.explode' }), code: 'UNKNOWN_COMMAND', message: /command type "container.explode" is unknown; known types: host.info, / },
    { name: 'missing arg', payload: wire({ type: 'container.run', args: { name: 'web' } }), code: 'BAD_MESSAGE', message: /command "container.run" is invalid: field `args.image`/ },
    { name: 'wrongly typed arg', payload: wire({ type: 'container.run', args: { name: 'web', image: 42 } }), code: 'BAD_MESSAGE', message: /field `args.image`: .*expected string/ },
    { name: 'nested bad arg', payload: wire({ type: 'container.run', args: { name: 'web', image: 'x', network: { network: 'lan', ip: '999.1.1.1' } } }), code: 'BAD_MESSAGE', message: /field `args.network.ip`/ },
    { name: 'bad env entry', payload: wire({ type: 'container.run', args: { name: 'web', image: 'x', env: ['OK=1', 'NOPE'] } }), code: 'BAD_MESSAGE', message: /field `args.env.1`: must be NAME=value/ },
    { name: 'bad enum arg', payload: wire({ type: 'migration.start', args: { migrationId: 'm1', container: 'web', targetHost: 'b', fsMode: 'fast' } }), code: 'BAD_MESSAGE', message: /field `args.fsMode`/ },
    { name: 'unknown envelope field', payload: wire({ colour: 'red' }), code: 'BAD_MESSAGE', message: /unknown field\(s\) `colour`/ },
    { name: 'unknown arg field', payload: wire({ type: 'container.stop', args: { container: 'web', signal: 'KILL' } }), code: 'BAD_MESSAGE', message: /field `args`: unknown field\(s\) `signal`/ },
  ];

  it.each(CASES)('$name → $code', ({ payload, code, message }) => {
    const err = decodeError(payload);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
  });

  it('reports every bad field at once', () => {
    const err = decodeError(wire({ type: 'container.run', args: { name: 'a/b', image: '', memoryLimitBytes: -1 } }));
    expect(err.message).toMatch(/`args.name`.*`args.image`.*`args.memoryLimitBytes`/);
  });
});

describe('salvageReplyAddress', () => {
  it.each([
    { name: 'a valid command', payload: wire(), expected: { id: 'cmd-1', from: 'herd-cli-test-1' } },
    { name: 'an invalid command with a good envelope address', payload: wire({ type: 'nope', v: 7 }), expected: { id: 'cmd-1', from: 'herd-cli-test-1' } },
    { name: 'truncated JSON', payload: '{"v":1,"id":"cmd-9","type":"host.info","from":"cli-2","args":{', expected: { id: 'cmd-9', from: 'cli-2' } },
    { name: 'plain text', payload: 'hello', expected: undefined },
    { name: 'a JSON array', payload: '["id","from"]', expected: undefined },
    { name: 'JSON null', payload: 'null', expected: undefined },
    { name: 'a missing from', payload: wire({ from: undefined }), expected: undefined },
    { name: 'a from that is not topic-safe', payload: wire({ from: 'a/#' }), expected: undefined },
    { name: 'a numeric id', payload: wire({ id: 7 }), expected: undefined },
  ])('$name', ({ payload, expected }) => {
    expect(salvageReplyAddress(payload)).toEqual(expected);
    expect(salvageReplyAddress(Buffer.from(payload))).toEqual(expected);
  });
});

describe('decode/encode', () => {
  it('round-trips a message', () => {
    const status = { v: 1, hostId: 'node-a', state: 'online', since: SENT_AT } as const;
    expect(decode(hostStatusSchema, encode(status), 'status')).toEqual(status);
  });

  it('names what was decoded in the error', () => {
    expect(() => decode(hostStatusSchema, '{"v":1}', 'status of host node-a')).toThrow(/^status of host node-a is invalid: field `hostId`/);
  });
});
