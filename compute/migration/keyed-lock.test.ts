import { describe, expect, it } from 'vitest';
import { KeyedLock } from './keyed-lock.ts';

describe('KeyedLock', () => {
  it('serializes one key, not different keys, and frees the key after a failure', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const slow = (tag: string, ms: number) => async () => {
      order.push(`${tag}+`);
      await new Promise((r) => setTimeout(r, ms));
      order.push(`${tag}-`);
    };
    const a = lock.run('m1', slow('a', 30));
    const b = lock.run('m1', slow('b', 1));
    const c = lock.run('m2', slow('c', 1));
    expect(lock.tryRun('m1', async () => 'x')).toBeUndefined();
    await Promise.all([a, b, c]);
    expect(order.indexOf('a-')).toBeLessThan(order.indexOf('b+'));
    expect(order.indexOf('c-')).toBeLessThan(order.indexOf('a-'));
    await expect(lock.run('m1', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await lock.run('m1', async () => 'after')).toBe('after');
    expect(await lock.idle(1000)).toBe(true);
    expect(lock.held('m1')).toBe(false);
  });
});
