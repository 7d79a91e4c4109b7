/**
 * Counter → rate conversion. Pure: the caller passes each reading with its own timestamp
 * (pmproxy's fetch timestamp, or the time a cgroup file was read).
 *
 * Rules:
 * - the first reading of a key gives no rate (there is no interval yet);
 * - a counter that went DOWN gives no rate for that interval. We do not assume the
 *   counter restarted from 0: a cgroup or interface that is recreated (container
 *   restarted, migrated back, pmcd restarted) can come back with any value, and a
 *   made-up rate is worse for forecasting than a one-interval gap. The new value becomes
 *   the baseline, so the next interval has a rate again;
 * - a timestamp that did not advance gives no rate (and keeps the older baseline);
 * - keys are per instance: callers use e.g. `host|metric|instance`.
 */
export interface CounterReading {
  value: number;
  /** Seconds (any epoch, but the same for every reading of the key). */
  atSeconds: number;
}

export type RateResult =
  | { kind: 'rate'; perSecond: number; intervalSeconds: number }
  | { kind: 'first' }
  | { kind: 'reset'; previous: number; value: number }
  | { kind: 'no-time' };

/** The rate between two readings of one counter. */
export function counterRate(previous: CounterReading | undefined, current: CounterReading): RateResult {
  if (previous === undefined) return { kind: 'first' };
  const dt = current.atSeconds - previous.atSeconds;
  if (!(dt > 0)) return { kind: 'no-time' };
  if (current.value < previous.value) return { kind: 'reset', previous: previous.value, value: current.value };
  return { kind: 'rate', perSecond: (current.value - previous.value) / dt, intervalSeconds: dt };
}

/** Remembers the last reading per key and turns each new reading into a rate. */
export class RateTracker {
  private readonly last = new Map<string, CounterReading>();

  /** Records a reading; returns the per-second rate since the previous one, or undefined. */
  rate(key: string, value: number, atSeconds: number): number | undefined {
    const current = { value, atSeconds };
    const result = counterRate(this.last.get(key), current);
    if (result.kind !== 'no-time') this.last.set(key, current);
    return result.kind === 'rate' ? result.perSecond : undefined;
  }

  /** Like rate(), but returns the full result (for callers that want to know why there is none). */
  observe(key: string, value: number, atSeconds: number): RateResult {
    const current = { value, atSeconds };
    const result = counterRate(this.last.get(key), current);
    if (result.kind !== 'no-time') this.last.set(key, current);
    return result;
  }

  /** Forgets one key's baseline: its next reading is a first one. */
  forget(key: string): void {
    this.last.delete(key);
  }

  /** Forgets keys that were not seen in the last `keep` (e.g. removed containers). */
  retain(keep: (key: string) => boolean): void {
    for (const key of this.last.keys()) if (!keep(key)) this.last.delete(key);
  }

  get size(): number {
    return this.last.size;
  }
}

/** Sums per-instance rates; undefined when any instance has none (a partial sum would read as a drop). */
export function sumRates(rates: Array<number | undefined>): number | undefined {
  let total = 0;
  for (const r of rates) {
    if (r === undefined) return undefined;
    total += r;
  }
  return rates.length === 0 ? undefined : total;
}
