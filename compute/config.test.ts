import { describe, expect, it } from 'vitest';
import { loadConfig } from '../protocol/config.ts';
import { computeConfigSchema } from './config.ts';

const load = (overrides: Record<string, unknown>) => loadConfig(computeConfigSchema, { overrides: { hostId: 'h1', ...overrides }, what: 'compute config' });

describe('compute config', () => {
  it.each(['reconcileIntervalSeconds', 'containersIntervalSeconds', 'shutdownGraceSeconds'])('caps %s where Node timers would overflow (they would fire at once)', (field) => {
    expect(load({ [field]: 2_147_483 })[field as 'reconcileIntervalSeconds']).toBe(2_147_483);
    expect(() => load({ [field]: 30 * 86_400 })).toThrow(new RegExp(`field \`${field}\`: at most 2147483 s`));
  });
});
