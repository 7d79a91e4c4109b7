import { describe, expect, it } from 'vitest';
import { clusterSnapshotSchema, type ClusterSnapshot, type Plan } from '../../policies/model.ts';
import { safetyRulesSchema } from '../../policies/safety/safety.ts';
import { compareScenario } from './compare.ts';
import { generateScenarios } from './generate.ts';
import { migrationCost } from './migration-cost.ts';
import { parseScenario, type ScenarioInput } from './scenario.ts';
import { simulate, type EvaluationRecord } from './simulator.ts';

const MiB = 2 ** 20;
const off = { ...safetyRulesSchema.parse({}), enabled: false };

/** Two 1-core hosts; a and b (one thread, one core of demand each) share h1; h2 is idle. */
function pair(extra: Partial<ScenarioInput> = {}, migration?: { downtimeSeconds: number; totalSeconds: number }, cores = 1): ReturnType<typeof parseScenario> {
  const c = (id: string) => ({ herdId: id, host: 'h1', threads: 1, memoryBytes: 16 * MiB, opsPerCoreSecond: 1000, ...(migration === undefined ? {} : { migration }), demand: [{ atSeconds: 0, cpuCores: 1 }] });
  return parseScenario({ name: 'pair', durationSeconds: 100, hosts: [{ id: 'h1', cores }, { id: 'h2', cores }], containers: [c('a'), c('b')], control: { initialDelaySeconds: 30, evaluationIntervalSeconds: 5, reactive: { enabled: false } }, ...extra }, 'test');
}

/** A planner that moves b to h2 at the first evaluation and nothing else. */
const moveBOnce = (): ((s: ClusterSnapshot) => Plan) => {
  let done = false;
  return (s) => {
    const moves = done ? [] : [{ herdId: 'b', name: 'b', from: 'h1', to: 'h2', policy: 'test', reasonCode: 'TEST', reason: 'test', expectedGain: 1 }];
    done = true;
    return { snapshotVersion: s.version, policy: 'test', moves, annotations: [] };
  };
};

describe('simulate', () => {
  it('control: two one-core containers on one core get half a core each', () => {
    const r = simulate(pair());
    expect(r.totalOps).toBeCloseTo(100 * 1000);
    expect(r.hostCpuUtil).toBeCloseTo(0.5); // h1 busy, h2 idle
    expect(r.containerCpuUtil).toBeCloseTo(0.5);
    expect(r.migrations).toBe(0);
    expect(r.evaluations).toBe(0);
  });

  it('a migration costs its downtime: no work while frozen, then the target host', () => {
    const s = pair({}, { downtimeSeconds: 4, totalSeconds: 10 });
    const evals: EvaluationRecord[] = [];
    const r = simulate(s, { chain: [{ policy: 'cpu-greedy', args: {} }], plan: moveBOnce(), safety: off, onEvaluation: (e) => evals.push(e) });
    // [0, 36): a and b share h1 (1000 ops/s in all); [36, 40): b frozen, a alone on h1 (1000);
    // [40, 100): a on h1 and b on h2 (2000).
    expect(r.totalOps).toBeCloseTo(36 * 1000 + 4 * 1000 + 60 * 2000, 6);
    expect(r.migrations).toBe(1);
    expect(r.migrationLog[0]).toMatchObject({ herdId: 'b', from: 'h1', to: 'h2', startSeconds: 30, downtimeSeconds: 4, totalSeconds: 10 });
    expect(r.migrationLog[0]?.opsLost).toBeCloseTo(4 * 500); // it ran at half a core when it froze
    expect(r.finalPlacement).toEqual({ a: 'h1', b: 'h2' });
    // In flight (on its source host) until the end of the migration, then on the target with fresh samples.
    const at35 = evals.find((e) => e.atSeconds === 35)?.snapshot;
    expect(at35?.containers.find((c) => c.herdId === 'b')).toMatchObject({ hostId: 'h1', migrating: true });
    expect(at35?.inFlight).toMatchObject([{ herdId: 'b', sourceHost: 'h1', targetHost: 'h2', manual: false, startedAtMs: 30_000 }]);
    // At 50 s the window (20, 50] holds its samples ending 22..36 on h1 (at half a core), none at 38 (frozen),
    // one without figures at 40 (just restored: a first reading, no rate yet) and 42..50 on h2 (a whole core):
    // 14 samples of the 14 expected (30 s / 2 s − 1), 13 with figures.
    const at50 = evals.find((e) => e.atSeconds === 50)?.snapshot;
    const b50 = at50?.containers.find((c) => c.herdId === 'b');
    expect(b50).toMatchObject({ hostId: 'h2', migrating: false, sampleCount: 14, missingRatio: 0 });
    expect(b50?.cpuCores).toBeCloseTo((8 * 0.5 + 5 * 1) / 13);
    expect(b50?.cpuCoresMax).toBeCloseTo(1);
    expect(at50?.inFlight).toEqual([]);
  });

  it('the same migration with a zero cost would do more work: the difference is the downtime and the slower pre-freeze phase', () => {
    const slow = simulate(pair({}, { downtimeSeconds: 4, totalSeconds: 10 }), { chain: [{ policy: 'cpu-greedy', args: {} }], plan: moveBOnce(), safety: off });
    const free = simulate(pair({}, { downtimeSeconds: 0, totalSeconds: 0 }), { chain: [{ policy: 'cpu-greedy', args: {} }], plan: moveBOnce(), safety: off });
    expect(free.totalOps - slow.totalOps).toBeCloseTo(10 * 1000, 6);
  });

  it('records the end of a migration in the safety state: the cooldown then holds the container back', () => {
    // Two-core hosts, so that the last look (recheckMove) always finds room on the target.
    const s = pair({ durationSeconds: 300, control: { initialDelaySeconds: 30, evaluationIntervalSeconds: 5, reactive: { enabled: false }, safety: { hysteresisEvaluations: 1, cooldownSeconds: 600 } } }, { downtimeSeconds: 1, totalSeconds: 2 }, 2);
    let n = 0;
    // Proposes moving b every evaluation, back and forth.
    const pingPong = (snap: ClusterSnapshot): Plan => {
      const b = snap.containers.find((c) => c.herdId === 'b');
      const from = b?.hostId ?? 'h1';
      n++;
      return { snapshotVersion: snap.version, policy: 'test', moves: [{ herdId: 'b', name: 'b', from, to: from === 'h1' ? 'h2' : 'h1', policy: 'test', reasonCode: 'TEST', reason: 'test', expectedGain: 1 }], annotations: [] };
    };
    const on = simulate(s, { chain: [{ policy: 'cpu-greedy', args: {} }], plan: pingPong });
    expect(n).toBeGreaterThan(50);
    expect(on.migrations).toBe(1);
    expect(on.migrationLog[0]?.startSeconds).toBe(30);
    expect(on.vetoes.COOLDOWN).toBeGreaterThan(0);
    const without = simulate(s, { chain: [{ policy: 'cpu-greedy', args: {} }], plan: pingPong, safety: off });
    expect(without.migrations).toBeGreaterThan(5);
  });

  it('builds snapshots that satisfy the snapshot contract', () => {
    const s = generateScenarios({ count: 3 })[2];
    if (s === undefined) throw new Error('no scenario');
    let seen = 0;
    simulate(s, {
      chain: [{ policy: 'oltp-disk', args: {} }],
      onEvaluation: (e) => {
        clusterSnapshotSchema.parse(e.snapshot);
        seen++;
      },
    });
    expect(seen).toBeGreaterThan(10);
  });

  it('is deterministic: the same scenario gives the same result', () => {
    const [s] = generateScenarios({ count: 1 });
    if (s === undefined) throw new Error('no scenario');
    const a = compareScenario(s);
    const b = compareScenario(structuredClone(s));
    expect(b).toEqual(a);
    expect(a.rows.some((r) => r.result.migrations > 0)).toBe(true);
  });
});

describe('the control loop of the simulator', () => {
  it('fires the reactive trigger like the daemon: 3 hot host samples in a row, not before a window, at most one per 30 s', () => {
    // h1 saturated from the start; periodic evaluations only at 150 s and 300 s.
    const s = pair({ durationSeconds: 200, control: {} });
    const evals: EvaluationRecord[] = [];
    simulate(s, { chain: [{ policy: 'cpu-greedy', args: {} }], plan: (snap) => ({ snapshotVersion: snap.version, policy: 'none', moves: [], annotations: [] }), onEvaluation: (e) => evals.push(e) });
    expect(evals.map((e) => `${e.atSeconds}:${e.trigger}`)).toEqual(['30:reactive', '60:reactive', '90:reactive', '120:reactive', '150:periodic', '180:reactive']);
  });

  it('gives each policy the loop\'s missing-samples threshold unless its args set one', () => {
    const s = pair({ control: { initialDelaySeconds: 30, reactive: { enabled: false }, missingSamplesThreshold: 0.5 } });
    const seen: number[] = [];
    simulate(s, { chain: [{ policy: 'cpu-greedy', args: {} }], onEvaluation: (e) => seen.push(e.atSeconds) });
    expect(seen).toEqual([30]);
  });
});

describe('migrationCost', () => {
  it('uses the measured figures of docs/benchmark-migration.md: downtime by memory alone (the diff is pre-copied), total by both', () => {
    expect(migrationCost(16 * MiB, MiB)).toEqual({ downtimeMs: 879, totalMs: 992 });
    expect(migrationCost(16 * MiB, 100 * MiB)).toEqual({ downtimeMs: 879, totalMs: 2160 });
    expect(migrationCost(256 * MiB, MiB)).toEqual({ downtimeMs: 2569, totalMs: 2735 });
    expect(migrationCost(256 * MiB, 100 * MiB)).toEqual({ downtimeMs: 2569, totalMs: 3716 });
    expect(migrationCost(136 * MiB, MiB).downtimeMs).toBe(Math.round((879 + 2569) / 2));
    expect(migrationCost(136 * MiB, MiB).totalMs).toBe(Math.round((992 + 2735) / 2));
    expect(migrationCost(1 * MiB, 0)).toEqual({ downtimeMs: 879, totalMs: 992 });
    expect(migrationCost(512 * MiB).downtimeMs).toBeGreaterThan(2569);
    expect(migrationCost(16 * MiB, 1000 * MiB).totalMs).toBeGreaterThan(2160);
  });
});
