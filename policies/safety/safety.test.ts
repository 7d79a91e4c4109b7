import { describe, expect, it } from 'vitest';
import type { Move, Plan } from '../model.ts';
import { container, host, snapshot } from '../testing/builders.ts';
import { applySafety, emptySafetyState, recheckMove, safetyRulesSchema, type SafetyState } from './safety.ts';

const rules = safetyRulesSchema.parse({ hysteresisEvaluations: 1 });
const move = (name: string, from = 'h1', to = 'h2'): Move => ({ herdId: `id-${name}`, name, from, to, policy: 'test', reasonCode: 'X', reason: 'test', expectedGain: 1 });
const plan = (...moves: Move[]): Plan => ({ snapshotVersion: 's1', policy: 'test', moves, annotations: [] });
const s = snapshot([host('h1'), host('h2'), host('h3'), host('h4')], ['a', 'b', 'c'].map((n) => container(n, 'h1', { cpuCores: 0.3 })));
const vetoes = (p: Plan) => p.annotations.filter((a) => a.level === 'veto').map((a) => a.code);

describe('safety layer', () => {
  it('passes a move that breaks no rule', () => {
    expect(applySafety(plan(move('a')), s, emptySafetyState(), rules).plan.moves).toHaveLength(1);
  });

  it('cooldown: a container moved recently stays, until the cooldown has passed', () => {
    const state: SafetyState = { ...emptySafetyState(), lastMovedAtMs: { 'id-a': s.nowMs - 10_000 } };
    const r = applySafety(plan(move('a')), s, state, { ...rules, cooldownSeconds: 60 });
    expect(r.plan.moves).toEqual([]);
    expect(vetoes(r.plan)).toEqual(['COOLDOWN']);
    expect(applySafety(plan(move('a')), s, state, { ...rules, cooldownSeconds: 9 }).plan.moves).toHaveLength(1);
  });

  it('no immediate retry after a failed move', () => {
    const state: SafetyState = { ...emptySafetyState(), lastFailedAtMs: { 'id-a': s.nowMs - 5_000 } };
    expect(vetoes(applySafety(plan(move('a')), s, state, rules).plan)).toEqual(['RECENT_FAILURE']);
  });

  it('hysteresis: a source must be out of balance in N consecutive evaluations', () => {
    const h = { ...rules, hysteresisEvaluations: 3 };
    let state = emptySafetyState();
    for (let i = 1; i <= 2; i++) {
      const r = applySafety(plan(move('a')), s, state, h);
      expect(r.plan.moves, `evaluation ${i}`).toEqual([]);
      expect(vetoes(r.plan)).toEqual(['HYSTERESIS']);
      state = r.state;
    }
    expect(applySafety(plan(move('a')), s, state, h).plan.moves).toHaveLength(1);
    // A balanced evaluation in between starts the count again.
    const reset = applySafety(plan(), s, state, h).state;
    expect(reset.imbalanceStreak).toEqual({});
  });

  it('caps moves per evaluation, migrations in flight in total and per host', () => {
    expect(applySafety(plan(move('a', 'h1', 'h2'), move('b', 'h3', 'h4')), s, emptySafetyState(), { ...rules, maxMovesPerEvaluation: 1, maxInFlightPerHost: 5 }).plan.moves).toHaveLength(1);
    const total = applySafety(plan(move('a', 'h1', 'h2'), move('b', 'h3', 'h4')), s, emptySafetyState(), { ...rules, maxMovesPerEvaluation: 5, maxInFlightTotal: 1 });
    expect(vetoes(total.plan)).toEqual(['CAP_IN_FLIGHT']);
    const perHost = applySafety(plan(move('a', 'h1', 'h2'), move('b', 'h1', 'h3')), s, emptySafetyState(), { ...rules, maxMovesPerEvaluation: 5, maxInFlightPerHost: 1 });
    expect(perHost.plan.moves.map((m) => m.name)).toEqual(['a']);
    expect(vetoes(perHost.plan)).toEqual(['CAP_PER_HOST']);
  });

  it('manual migrations in flight count against the caps, and their container is not moved', () => {
    const busy = { ...s, inFlight: [{ migrationId: 'm1', herdId: 'id-c', sourceHost: 'h1', targetHost: 'h3', manual: true, startedAtMs: s.nowMs - 1000 }] };
    const r = applySafety(plan(move('c', 'h1', 'h2'), move('a', 'h1', 'h2')), busy, emptySafetyState(), { ...rules, maxMovesPerEvaluation: 5, maxInFlightPerHost: 1 });
    expect(r.plan.moves).toEqual([]);
    expect(vetoes(r.plan)).toEqual(['IN_FLIGHT', 'CAP_PER_HOST']);
  });

  it('disabled, it passes everything (the simulator\'s "without safety")', () => {
    const state: SafetyState = { ...emptySafetyState(), lastMovedAtMs: { 'id-a': s.nowMs } };
    expect(applySafety(plan(move('a'), move('b')), s, state, { ...rules, enabled: false, maxMovesPerEvaluation: 0 }).plan.moves).toHaveLength(2);
  });

  it('re-checks a move against fresh state just before it is sent', () => {
    const m = move('a');
    expect(recheckMove(m, s, emptySafetyState(), rules)).toBeUndefined();
    const moved = { ...s, containers: s.containers.map((c) => (c.name === 'a' ? { ...c, hostId: 'h3' } : c)) };
    expect(recheckMove(m, moved, emptySafetyState(), rules)?.code).toBe('MOVED');
    expect(recheckMove(m, { ...s, containers: s.containers.filter((c) => c.name !== 'a') }, emptySafetyState(), rules)?.code).toBe('GONE');
    expect(recheckMove(m, { ...s, hosts: s.hosts.map((h) => (h.hostId === 'h2' ? { ...h, online: false } : h)) }, emptySafetyState(), rules)?.code).toBe('HOST_OFFLINE');
    expect(recheckMove(m, { ...s, containers: s.containers.map((c) => (c.name === 'a' ? { ...c, migrating: true } : c)) }, emptySafetyState(), rules)?.code).toBe('IN_FLIGHT');
    expect(recheckMove(m, { ...s, hosts: s.hosts.map((h) => (h.hostId === 'h2' ? { ...h, cpuUtil: 0.95 } : h)) }, emptySafetyState(), rules)?.code).toBe('TARGET_FULL');
  });

  it('re-check: a target drained since the plan takes nothing', () => {
    const drained = { ...s, hosts: s.hosts.map((h) => (h.hostId === 'h2' ? { ...h, draining: true } : h)) };
    expect(recheckMove(move('a'), drained, emptySafetyState(), rules)).toEqual({ code: 'HOST_DRAINING', message: 'host h2 is being drained: it takes no containers' });
  });

  it('re-check: the in-flight caps, recounted with the migrations started since the plan (manual ones too)', () => {
    const manual = (id: string, from: string, to: string) => ({ migrationId: id, herdId: `other-${id}`, sourceHost: from, targetHost: to, manual: true, startedAtMs: s.nowMs - 1000 });
    const total = { ...s, inFlight: [manual('m1', 'h3', 'h4'), manual('m2', 'h4', 'h3')] };
    expect(recheckMove(move('a'), total, emptySafetyState(), { ...rules, maxInFlightTotal: 2, maxInFlightPerHost: 5 })?.code).toBe('CAP_IN_FLIGHT');
    const perHost = { ...s, inFlight: [manual('m1', 'h3', 'h2')] };
    expect(recheckMove(move('a'), perHost, emptySafetyState(), { ...rules, maxInFlightPerHost: 1 })).toEqual({ code: 'CAP_PER_HOST', message: 'h2 already takes part in 1 migration(s), at most 1' });
    expect(recheckMove(move('a'), perHost, emptySafetyState(), { ...rules, maxInFlightPerHost: 2 })).toBeUndefined();
    // The simulator's "without safety": no caps.
    expect(recheckMove(move('a'), total, emptySafetyState(), { ...rules, enabled: false, maxInFlightTotal: 1 })).toBeUndefined();
  });

  it('re-check: the container must fit in the target\'s free memory now', () => {
    const MiB = 2 ** 20;
    const big = snapshot([host('h1'), host('h2', { memoryAvailableBytes: 1000 * MiB })], [container('a', 'h1', { cpuCores: 0.3, memoryBytes: 1600 * MiB })]);
    const why = recheckMove(move('a'), big, emptySafetyState(), rules);
    expect(why?.code).toBe('NOT_ENOUGH_MEMORY');
    expect(why?.message).toMatch(/a needs ~1600 MiB of memory, h2 has 1000 MiB available/);
    expect(recheckMove(move('a'), { ...big, hosts: big.hosts.map((h) => (h.hostId === 'h2' ? { ...h, memoryAvailableBytes: 2000 * MiB } : h)) }, emptySafetyState(), rules)).toBeUndefined();
  });
});

describe('drain', async () => {
  const { drain } = await import('../drain/policy.ts');
  it('moves every container off a draining host, biggest CPU user first, to the hosts with the most room', () => {
    const d = snapshot([host('h1', { draining: true }), host('h2', { cpuUtil: 0.5 }), host('h3', { cpuUtil: 0.1 })], [container('a', 'h1', { cpuCores: 0.2 }), container('b', 'h1', { cpuCores: 0.6 })]);
    const p = drain.plan(d, { maxMoves: 4 });
    expect(p.moves.map((m) => `${m.name}->${m.to}`)).toEqual(['b->h3', 'a->h2']);
    expect(p.moves.every((m) => m.reasonCode === 'DRAIN')).toBe(true);
  });

  it('skips a target without CPU room (NO_TARGET_CAPACITY), so the configured chain runs while nothing can leave', async () => {
    const { runChain } = await import('../registry.ts');
    const { chainFor } = await import('../pipeline.ts');
    // h2 at 2.0 of 2 cores, h3 at 0.9 of 1: room for b (0.1) on h3, none for a (1.5) anywhere.
    const d = snapshot([host('h1', { draining: true, cores: 2 }), host('h2', { cores: 2, cpuUtil: 1 }), host('h3', { cpuUtil: 0.9 })], [container('a', 'h1', { cpuCores: 1.5 }), container('b', 'h1', { cpuCores: 0.1 })]);
    const p = drain.plan(d, { maxMoves: 4 });
    expect(p.moves.map((m) => `${m.name}->${m.to}`)).toEqual(['b->h3']);
    expect(p.annotations).toContainEqual(expect.objectContaining({ code: 'NO_TARGET_CAPACITY', herdId: 'id-a', message: expect.stringMatching(/a \(~1\.50 cores\) stays on h1 for now: no host has room for it \(h3 uses 0\.90 of 1 core\(s\); h2 uses 2\.00 of 2 core\(s\)\)/) }));
    // Nothing can leave (a needs 2.5 cores): drain's plan is empty, and the chain after it plans (cpu-greedy: h2 is over its cores).
    const stuck = snapshot([host('h1', { draining: true, cores: 4 }), host('h2', { cores: 2 }), host('h3', { cores: 2 })], [container('a', 'h1', { cpuCores: 2.5 }), container('x', 'h2', { cpuCores: 1.2 }), container('y', 'h2', { cpuCores: 1.2 })]);
    const p2 = runChain(stuck, chainFor([{ policy: 'cpu-greedy', args: {} }], { missingSamplesThreshold: 0.02, draining: true }));
    expect(p2.annotations.map((a) => a.code)).toContain('NO_TARGET_CAPACITY');
    expect(p2.policy).toBe('cpu-greedy');
    expect(p2.moves.map((m) => `${m.from}->${m.to}`)).toEqual(['h2->h3']);
  });

  it('skips a target without the free memory, and says so', () => {
    const MiB = 2 ** 20;
    const d = snapshot([host('h1', { draining: true }), host('h2', { cpuUtil: 0.1, memoryAvailableBytes: 1000 * MiB }), host('h3', { cpuUtil: 0.5, memoryAvailableBytes: 8000 * MiB })], [container('db', 'h1', { cpuCores: 0.2, memoryBytes: 1600 * MiB })]);
    expect(drain.plan(d, { maxMoves: 4 }).moves.map((m) => `${m.name}->${m.to}`)).toEqual(['db->h3']);
    const none = { ...d, hosts: d.hosts.filter((h) => h.hostId !== 'h3') };
    expect(drain.plan(none, { maxMoves: 4 }).annotations).toEqual([expect.objectContaining({ code: 'NO_TARGET_CAPACITY', message: expect.stringMatching(/db needs ~1600 MiB of memory, h2 has 1000 MiB available/) })]);
  });
});
