/**
 * Properties every registered policy must have, on random snapshots (fast-check):
 * no target over capacity (CPU, memory) or of unknown size, no container moved twice or
 * while in flight, `from` is the container's current host, targets are online and accept
 * containers, same input → same plan, input never mutated, and every empty plan says why.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoryProblem, type ClusterSnapshot } from './model.ts';
import { POLICY_NAMES, runPolicy } from './registry.ts';
import { TINY_MODEL } from './forecast-greedy/tiny-model.ts';

/** Arguments a policy needs beyond its defaults (forecast-greedy: a model). */
const REQUIRED_ARGS: Partial<Record<(typeof POLICY_NAMES)[number], Record<string, unknown>>> = { 'forecast-greedy': { model: TINY_MODEL } };

const MiB = 2 ** 20;

const arbSnapshot: fc.Arbitrary<ClusterSnapshot> = fc
  .record({
    hosts: fc.array(
      fc.record({
        // undefined: its core count is unknown (no status CPUs, no sample yet).
        cores: fc.constantFrom(1, 2, 4, undefined),
        cpuUtil: fc.double({ min: 0, max: 1, noNaN: true }),
        online: fc.constantFrom(true, true, true, true, false),
        draining: fc.boolean(),
        diskOpsPerSec: fc.option(fc.double({ min: 0, max: 5000, noNaN: true }), { nil: undefined }),
        diskActiveRatio: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
        memoryAvailableMiB: fc.option(fc.integer({ min: 0, max: 4000 }), { nil: undefined }),
      }),
      { minLength: 1, maxLength: 6 },
    ),
    containers: fc.array(
      fc.record({
        host: fc.nat(5),
        cpuCores: fc.double({ min: 0, max: 4, noNaN: true }),
        threadCount: fc.integer({ min: 1, max: 8 }),
        diskOpsPerSec: fc.double({ min: 0, max: 3000, noNaN: true }),
        sampleCount: fc.integer({ min: 0, max: 20 }),
        missingRatio: fc.constantFrom(0, 0.01, 0.5),
        migrating: fc.boolean(),
        cpuLimitCores: fc.option(fc.constantFrom(0.5, 1, 2), { nil: undefined }),
        memoryMiB: fc.option(fc.integer({ min: 0, max: 2000 }), { nil: undefined }),
      }),
      { maxLength: 25 },
    ),
  })
  .map(({ hosts, containers }) => ({
    version: 'p1',
    nowMs: 5_000_000,
    windowSeconds: 30,
    hosts: hosts.map((h, i) => ({
      hostId: `h${i + 1}`,
      online: h.online,
      draining: h.draining && i > 0,
      ...(h.cores === undefined ? {} : { cores: h.cores, cpuUtil: h.cpuUtil }),
      diskOpsPerSec: h.diskOpsPerSec,
      diskActiveRatio: h.diskActiveRatio,
      ...(h.memoryAvailableMiB === undefined ? {} : { memoryAvailableBytes: h.memoryAvailableMiB * MiB }),
      sampleCount: 15,
      missingRatio: 0,
    })),
    containers: containers.map((c, i) => ({
      herdId: `c${i}`,
      name: `c${i}`,
      hostId: `h${(c.host % hosts.length) + 1}`,
      cpuCores: c.cpuCores,
      threadCount: c.threadCount,
      diskOpsPerSec: c.diskOpsPerSec,
      sampleCount: c.sampleCount,
      missingRatio: c.missingRatio,
      migrating: c.migrating,
      ...(c.cpuLimitCores === undefined ? {} : { cpuLimitCores: c.cpuLimitCores }),
      ...(c.memoryMiB === undefined ? {} : { memoryBytes: c.memoryMiB * MiB }),
    })),
    inFlight: [],
  }));

describe.each(POLICY_NAMES)('policy %s', (name) => {
  const step = { policy: name, args: REQUIRED_ARGS[name] ?? {} };

  it('moves only containers that are where it says, once each, never while in flight, to an online host that accepts them and is not full', () => {
    fc.assert(
      fc.property(arbSnapshot, (s) => {
        const plan = runPolicy(s, step);
        expect(plan.annotations.filter((a) => a.level === 'error')).toEqual([]);
        const seen = new Set<string>();
        const addedUse = new Map<string, number>();
        const addedMemory = new Map<string, number>();
        for (const m of plan.moves) {
          const c = s.containers.find((x) => x.herdId === m.herdId);
          expect(c, `moved unknown container ${m.herdId}`).toBeDefined();
          expect(m.from).toBe(c?.hostId);
          expect(m.to).not.toBe(m.from);
          expect(c?.migrating).toBe(false);
          expect(seen.has(m.herdId), `${m.herdId} moved twice`).toBe(false);
          seen.add(m.herdId);
          const target = s.hosts.find((h) => h.hostId === m.to);
          expect(target?.online).toBe(true);
          expect(target?.draining).not.toBe(true);
          // Capacity: the target's core count is known and it was not full (by what it measurably used plus what this plan already sent it) when chosen.
          expect(target?.cores, `${m.to} has an unknown core count`).toBeDefined();
          const used = (target?.cpuUtil ?? 0) * (target?.cores ?? 0) + (addedUse.get(m.to) ?? 0);
          expect(used, `${m.to} full before ${m.name} arrived`).toBeLessThan((target?.cores ?? 0) + 1e-9);
          addedUse.set(m.to, (addedUse.get(m.to) ?? 0) + (c?.cpuCores ?? 0));
          // Memory: it fits in what the target had free, less what this plan already sent it.
          const free = target?.memoryAvailableBytes === undefined ? undefined : target.memoryAvailableBytes - (addedMemory.get(m.to) ?? 0);
          expect(c === undefined ? undefined : memoryProblem(c, m.to, free)).toBeUndefined();
          addedMemory.set(m.to, (addedMemory.get(m.to) ?? 0) + (c?.memoryBytes ?? 0));
          expect(m.reason.length).toBeGreaterThan(0);
        }
        if (plan.moves.length === 0 && s.hosts.some((h) => h.online)) expect(plan.annotations.length, 'an empty plan says why').toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it('is deterministic and never mutates its input', () => {
    fc.assert(
      fc.property(arbSnapshot, (s) => {
        const frozen = structuredClone(s);
        const a = runPolicy(s, step);
        const b = runPolicy(structuredClone(s), step);
        expect(b).toEqual(a);
        expect(s).toEqual(frozen);
      }),
      { numRuns: 200 },
    );
  });
});
