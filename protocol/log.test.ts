import { afterEach, describe, expect, it } from 'vitest';
import { HerdError } from './errors.ts';
import { logLevelFromEnv, withLogLevelFromEnv } from './log.ts';

describe('HERD_LOG_LEVEL', () => {
  const saved = process.env.HERD_LOG_LEVEL;
  afterEach(() => {
    if (saved === undefined) delete process.env.HERD_LOG_LEVEL;
    else process.env.HERD_LOG_LEVEL = saved;
  });

  it('names a level, or nothing when unset or empty', () => {
    expect(logLevelFromEnv({ HERD_LOG_LEVEL: 'debug' })).toBe('debug');
    expect(logLevelFromEnv({})).toBeUndefined();
    expect(logLevelFromEnv({ HERD_LOG_LEVEL: '' })).toBeUndefined();
  });

  it('fails with BAD_CONFIG naming the variable and the levels when it names no level', () => {
    let thrown: unknown;
    try {
      logLevelFromEnv({ HERD_LOG_LEVEL: 'loud' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(HerdError);
    expect((thrown as HerdError).code).toBe('BAD_CONFIG');
    expect((thrown as HerdError).message).toBe('HERD_LOG_LEVEL is "loud": expected one of trace, debug, info, warn, error');
  });

  it("overrides a daemon config's logLevel, but not a flag's", () => {
    process.env.HERD_LOG_LEVEL = 'debug';
    expect(withLogLevelFromEnv({ hostId: 'h1' })).toEqual({ hostId: 'h1', logLevel: 'debug' });
    expect(withLogLevelFromEnv()).toEqual({ logLevel: 'debug' });
    expect(withLogLevelFromEnv({ logLevel: 'warn' })).toEqual({ logLevel: 'warn' });
    delete process.env.HERD_LOG_LEVEL;
    expect(withLogLevelFromEnv({ hostId: 'h1' })).toEqual({ hostId: 'h1' });
  });
});
