import { describe, expect, it } from 'vitest';
import { wireErrorSchema } from './messages.ts';
import { ERROR_CATALOGUE, ERROR_CODES, HerdError, isErrorCode, toHerdError, type ErrorCode } from './errors.ts';

describe('HerdError', () => {
  it.each(ERROR_CODES)('%s takes its retryable default from the catalogue and round-trips the wire', (code) => {
    const err = new HerdError(code, `something about ${code}`);
    expect(err.retryable).toBe(ERROR_CATALOGUE[code].retryable);
    const wire = err.toWire();
    expect(wire).toEqual({ code, message: `something about ${code}`, retryable: ERROR_CATALOGUE[code].retryable });
    expect(wireErrorSchema.parse(wire)).toEqual(wire);
    const back = HerdError.fromWire(JSON.parse(JSON.stringify(wire)));
    expect(back).toBeInstanceOf(HerdError);
    expect(back).toBeInstanceOf(Error);
    expect(back.toWire()).toEqual(wire);
    expect(back.name).toBe('HerdError');
  });

  it('keeps an explicit retryable over the catalogue default, through the wire', () => {
    const err = new HerdError('TIMEOUT', 'gave up', { retryable: false });
    expect(err.retryable).toBe(false);
    expect(HerdError.fromWire(err.toWire()).retryable).toBe(false);
  });

  it('keeps its cause (not sent on the wire)', () => {
    const cause = new Error('ECONNREFUSED');
    const err = new HerdError('BROKER_UNAVAILABLE', 'no broker', { cause });
    expect(err.cause).toBe(cause);
    expect(Object.keys(err.toWire()).sort()).toEqual(['code', 'message', 'retryable']);
  });
});

describe('toHerdError', () => {
  const herd = new HerdError('CONFLICT', 'name in use');
  it.each<{ name: string; thrown: unknown; fallback?: ErrorCode; code: ErrorCode; message: string; same?: boolean }>([
    { name: 'a HerdError stays itself', thrown: herd, code: 'CONFLICT', message: 'name in use', same: true },
    { name: 'a HerdError ignores the fallback', thrown: herd, fallback: 'BAD_MESSAGE', code: 'CONFLICT', message: 'name in use', same: true },
    { name: 'an Error becomes INTERNAL', thrown: new TypeError('x is undefined'), code: 'INTERNAL', message: 'x is undefined' },
    { name: 'an Error takes the fallback', thrown: new Error('bad'), fallback: 'BAD_MESSAGE', code: 'BAD_MESSAGE', message: 'bad' },
    { name: 'a string', thrown: 'boom', code: 'INTERNAL', message: 'boom' },
    { name: 'undefined', thrown: undefined, code: 'INTERNAL', message: 'undefined' },
  ])('$name', ({ thrown, fallback, code, message, same }) => {
    const err = toHerdError(thrown, fallback);
    expect(err).toBeInstanceOf(HerdError);
    expect(err.code).toBe(code);
    expect(err.message).toBe(message);
    if (same === true) expect(err).toBe(thrown);
    else expect(err.cause).toBe(thrown);
  });
});

describe('the catalogue', () => {
  it('isErrorCode knows exactly the catalogued codes', () => {
    for (const code of ERROR_CODES) expect(isErrorCode(code)).toBe(true);
    for (const v of ['NOPE', 'bad_message', 'toString', '', 42, undefined]) expect(isErrorCode(v)).toBe(false);
  });

  it('codes are SCREAMING_SNAKE_CASE and every summary is a sentence', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
      expect(code).toMatch(/^[A-Z][A-Z_]*[A-Z]$/);
      expect(entry.summary, code).toMatch(/^[A-Z].*\.$/);
    }
  });
});
