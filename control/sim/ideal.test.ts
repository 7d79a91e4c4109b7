import { describe, expect, it } from 'vitest';
import { generateScenario, mulberry32 } from './generate.ts';
import { idealPlacement } from './ideal.ts';
import { parseScenario, type Scenario } from './scenario.ts';
import { simulate } from './simulator.ts';

const MiB = 2 ** 20;

describe('idealPlacement', () => {
  it('finds the known best static placement of a tiny case', () => {
    // x (2 threads) is busy in the first half, y (2 threads) in the second, z (1 thread) all along.
    // Best: x and y share the 2-core host (they never overlap), z has the 1-core host: 3 cores busy all along.
    const s = parseScenario(
      {
        name: 'tiny',
        durationSeconds: 100,
        hosts: [{ id: 'big', cores: 2 }, { id: 'small', cores: 1 }],
        containers: [
          { herdId: 'x', host: 'small', threads: 2, memoryBytes: MiB, opsPerCoreSecond: 1000, demand: [{ atSeconds: 0, cpuCores: 2 }, { atSeconds: 50, cpuCores: 0 }] },
          { herdId: 'y', host: 'small', threads: 2, memoryBytes: MiB, opsPerCoreSecond: 1000, demand: [{ atSeconds: 0, cpuCores: 0 }, { atSeconds: 50, cpuCores: 2 }] },
          { herdId: 'z', host: 'small', threads: 1, memoryBytes: MiB, opsPerCoreSecond: 1000, demand: [{ atSeconds: 0, cpuCores: 1 }] },
        ],
      },
      'test',
    );
    const r = idealPlacement(s);
    expect(r.status).toBe('ok');
    if (r.status !== 'ok') return;
    expect(r.placement).toEqual({ x: 'big', y: 'big', z: 'small' });
    expect(r.totalOps).toBeCloseTo(300 * 1000);
    expect(r.placements).toBe(8);
    expect(simulate(s, { placement: r.placement }).totalOps).toBeCloseTo(r.totalOps, 6);
  });

  it('respects host memory', () => {
    const s = parseScenario(
      {
        name: 'memory',
        durationSeconds: 10,
        hosts: [{ id: 'big', cores: 4, memoryBytes: 100 * MiB }, { id: 'small', cores: 1 }],
        containers: ['a', 'b'].map((id) => ({ herdId: id, host: 'small', threads: 1, memoryBytes: 60 * MiB, opsPerCoreSecond: 1000, demand: [{ atSeconds: 0, cpuCores: 1 }] })),
      },
      'test',
    );
    const r = idealPlacement(s);
    expect(r.status === 'ok' && Object.values(r.placement).sort()).toEqual(['big', 'small']);
  });

  it('is the maximum over every hosts^containers placement (brute force on small random scenarios)', () => {
    for (let seed = 1; seed <= 3; seed++) {
      const raw = generateScenario(seed, 0, 300);
      const rng = mulberry32(seed);
      const s: Scenario = parseScenario({ ...raw, containers: raw.containers.slice(0, 5), hosts: raw.hosts.slice(0, 3).map((h) => ({ ...h, cores: rng() < 0.5 ? 1 : 2 })) }, 'test');
      const r = idealPlacement(s);
      if (r.status !== 'ok') throw new Error(r.reason);
      const H = s.hosts.length;
      const n = s.containers.length;
      let best = -Infinity;
      for (let k = 0; k < H ** n; k++) {
        const placement: Record<string, string> = {};
        let x = k;
        for (const c of s.containers) {
          placement[c.herdId] = (s.hosts[x % H] as { id: string }).id;
          x = Math.floor(x / H);
        }
        best = Math.max(best, simulate(s, { placement }).totalOps);
      }
      expect(r.totalOps).toBeCloseTo(best, 3);
      expect(simulate(s, { placement: r.placement }).totalOps).toBeCloseTo(best, 3);
    }
  });

  it('skips scenarios too large to search, and says why', () => {
    const s = parseScenario(generateScenario(1, 0, 300), 'test');
    const r = idealPlacement(s, 10);
    expect(r.status).toBe('skipped');
    if (r.status === 'skipped') expect(r.reason).toMatch(/hosts \^ \d+ containers = .* placements/);
  });
});
