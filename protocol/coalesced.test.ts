import { describe, expect, it } from 'vitest';
import { coalesced } from './coalesced.ts';

/** A job whose runs the test ends one by one; it records what it read when it started. */
function controlledJob(read: () => number) {
  const runs: { read: number; end: (err?: Error) => void }[] = [];
  const job = () =>
    new Promise<void>((resolve, reject) => {
      runs.push({ read: read(), end: (err) => (err === undefined ? resolve() : reject(err)) });
    });
  return { runs, job };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('coalesced', () => {
  it('runs one job at a time and once more after the one in flight, however often it is asked', async () => {
    let state = 0;
    const { runs, job } = controlledJob(() => state);
    const publish = coalesced(job);
    const first = publish();
    state = 1;
    const second = publish();
    state = 2;
    const third = publish();
    expect(third).toBe(second);
    await tick();
    expect(runs.map((r) => r.read)).toEqual([0]); // the second run waits for the first
    runs[0]!.end();
    await first;
    await tick();
    expect(runs.map((r) => r.read)).toEqual([0, 2]); // one more run, reading the latest state
    runs[1]!.end();
    await Promise.all([second, third]);
    expect(runs).toHaveLength(2);
  });

  it('starts at once when idle, and a failed run neither blocks the next nor leaks into it', async () => {
    const { runs, job } = controlledJob(() => 0);
    const publish = coalesced(job);
    const first = publish();
    const second = publish();
    runs[0]!.end(new Error('broker gone'));
    await expect(first).rejects.toThrow('broker gone');
    await tick();
    expect(runs).toHaveLength(2);
    runs[1]!.end();
    await expect(second).resolves.toBeUndefined();
    const third = publish(); // idle again: a new run starts at once
    await tick();
    expect(runs).toHaveLength(3);
    runs[2]!.end();
    await third;
  });
});
