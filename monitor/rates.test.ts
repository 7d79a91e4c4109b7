import { describe, expect, it } from 'vitest';
import { counterRate, RateTracker, sumRates, type CounterReading } from './rates.ts';

describe('counterRate', () => {
  const r = (value: number, atSeconds: number): CounterReading => ({ value, atSeconds });
  it.each([
    ['first reading', undefined, r(100, 10), { kind: 'first' }],
    ['steady rate', r(100, 10), r(300, 12), { kind: 'rate', perSecond: 100, intervalSeconds: 2 }],
    ['no change', r(100, 10), r(100, 15), { kind: 'rate', perSecond: 0, intervalSeconds: 5 }],
    ['fractional interval from timestamps', r(0, 1.5), r(1, 1.75), { kind: 'rate', perSecond: 4, intervalSeconds: 0.25 }],
    ['counter reset', r(500, 10), r(20, 12), { kind: 'reset', previous: 500, value: 20 }],
    ['same timestamp', r(100, 10), r(200, 10), { kind: 'no-time' }],
    ['time went back', r(100, 10), r(200, 9), { kind: 'no-time' }],
    ['large u64-ish counters', r(2 ** 52, 0), r(2 ** 52 + 1000, 10), { kind: 'rate', perSecond: 100, intervalSeconds: 10 }],
  ] as const)('%s', (_name, previous, current, expected) => {
    expect(counterRate(previous, current)).toEqual(expected);
  });
});

describe('RateTracker', () => {
  it('tracks each key (instance) separately', () => {
    const t = new RateTracker();
    expect(t.rate('h1|cpu|0', 1000, 0)).toBeUndefined();
    expect(t.rate('h1|cpu|1', 5000, 0)).toBeUndefined();
    expect(t.rate('h1|cpu|0', 3000, 2)).toBe(1000);
    expect(t.rate('h1|cpu|1', 5000, 2)).toBe(0);
  });

  it('skips the interval of a reset and uses the new value as the baseline', () => {
    const t = new RateTracker();
    const series: Array<[number, number, number | undefined]> = [
      [100, 0, undefined], // first
      [200, 1, 100],
      [10, 2, undefined], // reset (container restarted)
      [40, 3, 30], // rate again from the new baseline
      [40, 3, undefined], // no time passed: no rate, baseline kept
      [60, 5, 10],
    ];
    for (const [value, at, expected] of series) expect(t.rate('k', value, at), `value ${value} at ${at}`).toBe(expected);
  });

  it('reports why there is no rate', () => {
    const t = new RateTracker();
    expect(t.observe('k', 5, 0).kind).toBe('first');
    expect(t.observe('k', 1, 1).kind).toBe('reset');
  });

  it('forgets keys that are gone', () => {
    const t = new RateTracker();
    t.rate('a|1', 1, 0);
    t.rate('b|1', 1, 0);
    t.retain((k) => k.startsWith('a|'));
    expect(t.size).toBe(1);
    expect(t.rate('b|1', 5, 1)).toBeUndefined();
  });
});

describe('sumRates', () => {
  it.each([
    [[1, 2, 3], 6],
    [[1, undefined], undefined],
    [[], undefined],
  ] as const)('%j → %s', (rates, expected) => {
    expect(sumRates([...rates])).toBe(expected);
  });
});
