import { describe, expect, it } from 'vitest';
import { SerialQueue } from './serial-queue.ts';

describe('SerialQueue', () => {
  it('runs jobs one at a time, in order, whatever their durations', async () => {
    const queue = new SerialQueue();
    const log: string[] = [];
    const job = (name: string, ms: number) => () =>
      new Promise<string>((resolve) => {
        log.push(`start ${name}`);
        setTimeout(() => {
          log.push(`end ${name}`);
          resolve(name);
        }, ms);
      });
    const results = await Promise.all([queue.run(job('a', 30)), queue.run(job('b', 1)), queue.run(job('c', 10))]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('goes on after a failed job', async () => {
    const queue = new SerialQueue();
    const failed = queue.run(() => Promise.reject(new Error('boom')));
    const next = queue.run(() => Promise.resolve(2));
    await expect(failed).rejects.toThrow('boom');
    await expect(next).resolves.toBe(2);
  });

  it('gives up on a hung job after its timeout and runs the next one', async () => {
    const queue = new SerialQueue();
    let killed = false;
    const hung = queue.run(() => new Promise<never>(() => undefined), { timeoutMs: 20, onTimeout: () => (killed = true) });
    const next = queue.run(() => Promise.resolve('next'));
    await expect(hung).rejects.toThrow(/still running after 20 ms/);
    expect(killed).toBe(true);
    await expect(next).resolves.toBe('next');
  });
});
