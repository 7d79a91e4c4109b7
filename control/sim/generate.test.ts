import { describe, expect, it } from 'vitest';
import { generateScenarios, mulberry32 } from './generate.ts';

describe('mulberry32', () => {
  it('is seeded: the same seed gives the same floats in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(mulberry32(43)()).not.toBe(xs[0]);
  });
});

describe('generateScenarios', () => {
  const set = generateScenarios();

  it('is deterministic', () => {
    expect(generateScenarios()).toEqual(set);
    expect(generateScenarios({ seed: 7 })).not.toEqual(set);
  });

  it('has 2- and 4-core hosts, 1-thread, multi-thread and disk-heavy containers, piled up at the start, small enough for the ideal', () => {
    expect(set).toHaveLength(12);
    for (const s of set) {
      expect(new Set(s.hosts.map((h) => h.cores))).toEqual(new Set([2, 4]));
      const used = new Set(s.containers.map((c) => c.host));
      expect(used.size).toBeLessThanOrEqual(2);
      expect(used.size).toBeLessThan(s.hosts.length);
      expect(s.hosts.length ** s.containers.length).toBeLessThanOrEqual(4 ** 10);
    }
    const all = set.flatMap((s) => s.containers);
    expect(all.some((c) => c.threads === 1 && c.demand.every((d) => d.diskOpsPerSec <= 20))).toBe(true);
    expect(all.some((c) => c.threads > 1 && c.demand.some((d) => d.cpuCores > 1))).toBe(true);
    expect(all.some((c) => c.demand.some((d) => d.diskOpsPerSec >= 1000))).toBe(true);
    expect(all.every((c) => c.demand.length > 1)).toBe(true);
  });
});
