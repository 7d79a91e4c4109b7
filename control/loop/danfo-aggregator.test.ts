import { describe, expect, it } from 'vitest';
import { aggregateByKey } from './danfo-aggregator.ts';

/** The same figures computed directly. */
function direct(keys: string[], values: number[]) {
  const out = new Map<string, { mean: number; max: number; count: number }>();
  keys.forEach((k, i) => {
    const v = values[i] as number;
    const e = out.get(k);
    if (e === undefined) out.set(k, { mean: v, max: v, count: 1 });
    else {
      e.mean = (e.mean * e.count + v) / (e.count + 1);
      e.max = Math.max(e.max, v);
      e.count++;
    }
  });
  return out;
}

describe('aggregateByKey (danfojs in a worker thread)', () => {
  it('gives each key its mean, max and count; concurrent calls each get their own answer; more keys than one chunk (1,000), rows of a key spread through the input', async () => {
    const inputs = [0, 1, 2].map((seed) => {
      const distinct = seed === 2 ? 2500 : 97;
      const keys = Array.from({ length: seed === 2 ? 9000 : 3000 }, (_, i) => `c${(i * (seed + 7)) % distinct}\u0000m${i % 3}`);
      const values = keys.map((_, i) => ((i * 37 + seed) % 101) / 7);
      return { keys, values };
    });
    const results = await Promise.all(inputs.map(({ keys, values }) => aggregateByKey(keys, values)));
    results.forEach((rows, i) => {
      const want = direct(inputs[i]!.keys, inputs[i]!.values);
      expect(rows).toHaveLength(want.size);
      for (const r of rows) {
        const w = want.get(r.key)!;
        expect(r.value_count).toBe(w.count);
        expect(r.value_max).toBe(w.max);
        expect(r.value_mean).toBeCloseTo(w.mean, 9);
      }
    });
  });
});
