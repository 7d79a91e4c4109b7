import { describe, expect, it } from 'vitest';
import { container, host, snapshot } from '../testing/builders.ts';
import { greedyArgsSchema } from './greedy.ts';
import { cpuGreedy } from './policy.ts';
import { cpuGreedyMultithread } from '../cpu-greedy-multithread/policy.ts';

const args = greedyArgsSchema.parse({});
const codes = (p: { annotations: { code: string }[] }) => p.annotations.map((a) => a.code);

describe('cpu-greedy', () => {
  it('moves one of three CPU-bound containers off a saturated host to an idle one, with its reason', () => {
    const s = snapshot([host('h1'), host('h2')], ['a', 'b', 'c'].map((n) => container(n, 'h1', { cpuCores: 0.33 })));
    const p = cpuGreedy.plan(s, args);
    expect(p.snapshotVersion).toBe('s1');
    expect(p.moves).toHaveLength(1);
    expect(p.moves[0]).toMatchObject({ from: 'h1', to: 'h2', reasonCode: 'CPU_OVERLOAD', policy: 'cpu-greedy' });
    expect(p.moves[0]?.expectedGain).toBeCloseTo(1);
    expect(p.moves[0]?.reason).toMatch(/h1 demands 3\.00 of 1 core/);
  });

  it('says the cluster is balanced when no host is over its cores', () => {
    const p = cpuGreedy.plan(snapshot([host('h1'), host('h2')], [container('a', 'h1', { cpuCores: 0.5 }), container('b', 'h2', { cpuCores: 0.4 })]), args);
    expect(p.moves).toEqual([]);
    expect(codes(p)).toEqual(['BALANCED']);
  });

  it('does not move when every other host is full', () => {
    const s = snapshot([host('h1'), host('h2')], [container('a', 'h1', { cpuCores: 0.5 }), container('b', 'h1', { cpuCores: 0.5 }), container('c', 'h2', { cpuCores: 1 })]);
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toEqual([]);
    expect(codes(p)).toContain('NO_TARGET_CAPACITY');
  });

  it('holds back a move whose gain is below the reward threshold', () => {
    // h1 is over by 0.05 core: moving a ~1-core container gains only 0.05.
    const s = snapshot([host('h1', { cpuUtil: 1 }), host('h2')], [container('a', 'h1', { cpuCores: 0.96 }), container('b', 'h1', { cpuCores: 0.04, threadCount: 1 })]);
    const p = cpuGreedy.plan(s, { ...args, saturationUtil: 1.0 });
    expect(p.moves).toEqual([]);
  });

  it('skips containers with too few samples or too many missing, and says so', () => {
    const s = snapshot([host('h1'), host('h2')], [container('a', 'h1', { cpuCores: 0.5, sampleCount: 1 }), container('b', 'h1', { cpuCores: 0.5, missingRatio: 0.5 })]);
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toEqual([]);
    expect(codes(p)).toContain('NOT_ENOUGH_SAMPLES');
  });

  it('never moves a container that is migrating', () => {
    const s = snapshot([host('h1'), host('h2')], [container('a', 'h1', { cpuCores: 0.5, migrating: true }), container('b', 'h1', { cpuCores: 0.5, migrating: true })]);
    expect(cpuGreedy.plan(s, args).moves).toEqual([]);
  });

  it('counts CPU that no container explains (another host sharing the cores) as load on the target', () => {
    // h3 shares h1's core: busy although it runs nothing of Herd's.
    const s = snapshot([host('h1'), host('h2', { cpuUtil: 0.05 }), host('h3', { cpuUtil: 1 })], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5 })));
    const p = cpuGreedy.plan(s, args);
    expect(p.moves.map((m) => m.to)).toEqual(['h2']);
  });

  it('ignores offline hosts', () => {
    const s = snapshot([host('h1'), host('h2', { online: false })], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5 })));
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toEqual([]);
    expect(codes(p)).toEqual(['TOO_FEW_HOSTS']);
  });

  it('respects free memory on the target', () => {
    const s = snapshot([host('h1'), host('h2', { memoryAvailableBytes: 100 })], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5, memoryBytes: 1000 })));
    expect(cpuGreedy.plan(s, args).moves).toEqual([]);
  });

  it('says that no container is eligible when none is (not that no host has room)', () => {
    const s = snapshot([host('h1'), host('h2')], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5, sampleCount: 1 })));
    const why = cpuGreedy.plan(s, args).annotations.find((a) => a.code === 'NO_TARGET_CAPACITY');
    expect(why?.message).toBe('h1 demands 2.00 of 1 core(s); none of its containers is eligible to move (each is migrating, held by the safety layer or has too few samples)');
  });

  it('a host whose core count is unknown is neither a source nor a target', () => {
    const { cores: _, ...unknown } = host('h1');
    const asSource = snapshot([{ ...unknown, cpuUtil: undefined }, host('h2'), host('h3')], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5 })));
    expect(cpuGreedy.plan(asSource, args).moves).toEqual([]);
    const asTarget = snapshot([host('h1'), { ...unknown, hostId: 'h2', cpuUtil: undefined }], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5 })));
    const p = cpuGreedy.plan(asTarget, args);
    expect(p.moves).toEqual([]);
    expect(codes(p)).toEqual(['TOO_FEW_HOSTS']);
  });

  it('a source whose window is too thin is not acted on, and says so', () => {
    // Its containers' own windows are full (two saturated containers: ~1 core each on 1), the host's is not.
    const s = snapshot([host('h1', { sampleCount: 1 }), host('h2')], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5 })));
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toEqual([]);
    expect(p.annotations).toEqual([expect.objectContaining({ code: 'NOT_ENOUGH_SAMPLES', message: 'h1 demands 2.00 of 1 core(s) but its window is too thin to act on (1 sample(s) in the window, fewer than 3)' })]);
    expect(cpuGreedy.plan(snapshot([host('h1', { missingRatio: 0.5 }), host('h2')], s.containers), args).moves).toEqual([]);
  });

  it('a window that restarted after a migration is explained as awaited, not missing; a full one is acted on', () => {
    const restarted = { windowRestartedAtMs: 1_000 };
    const s = snapshot([host('h1', { missingRatio: 0.5, ...restarted }), host('h2', restarted)], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5, sampleCount: 2, missingRatio: 0.6, ...restarted })));
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toEqual([]);
    expect(p.annotations.map((a) => a.message).join('\n')).toContain('its window restarted after a migration on its host: 2 sample(s) since, waiting for a full window');
    expect(p.annotations.map((a) => a.message).join('\n')).not.toContain('missing');
    // Full again (the restart still within the window): nothing to explain, the plan goes on.
    const full = snapshot([host('h1', restarted), host('h2', restarted)], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5, ...restarted })));
    expect(cpuGreedy.plan(full, args).moves).toHaveLength(1);
  });

  it('a container created within the window is explained as awaited, not missing; after a migration on its host, the restart explains it', () => {
    const young = container('a', 'h1', { cpuCores: 0.9, sampleCount: 1, missingRatio: 0.9, createdAtMs: 8_000 });
    const s = snapshot([host('h1'), host('h2')], [young, container('b', 'h1', { cpuCores: 0.9 })], { nowMs: 10_000 });
    const messages = cpuGreedy.plan(s, args).annotations.map((a) => a.message).join('\n');
    expect(messages).toContain('a (it was created 2 s ago, within the window: 1 sample(s) since, waiting for a full window)');
    expect(messages).not.toContain('missing');
    const moved = snapshot([host('h1', { windowRestartedAtMs: 9_000 }), host('h2')], [{ ...young, windowRestartedAtMs: 9_000 }, container('b', 'h1', { cpuCores: 0.9 })], { nowMs: 10_000 });
    expect(cpuGreedy.plan(moved, args).annotations.map((a) => a.message).join('\n')).toContain('its window restarted after a migration on its host: 1 sample(s) since');
  });

  it('counts a migration in flight on its target even when its source went offline', () => {
    // x is on its way from h3 (offline now) to h2: h2 is full with it, nothing else goes there.
    const s = snapshot([host('h1'), host('h2'), host('h3', { online: false })], [...['a', 'b', 'c'].map((n) => container(n, 'h1', { cpuCores: 0.33 })), container('x', 'h3', { cpuCores: 0.9, migrating: true })], {
      inFlight: [{ migrationId: 'm1', herdId: 'id-x', sourceHost: 'h3', targetHost: 'h2', manual: true, startedAtMs: 0 }],
    });
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toEqual([]);
    expect(codes(p)).toContain('NO_TARGET_CAPACITY');
  });
});

describe('cpu-greedy-multithread', () => {
  // h1 (2 cores) holds a 2-thread container and two 1-thread ones; h2 (2 cores) is idle.
  const s = snapshot([host('h1', { cores: 2 }), host('h2', { cores: 2 })], [container('mt', 'h1', { cpuCores: 0.67, threadCount: 2 }), container('s1', 'h1', { cpuCores: 0.67 }), container('s2', 'h1', { cpuCores: 0.67 })]);

  it('moves the multi-threaded container, sized by its threads', () => {
    const p = cpuGreedyMultithread.plan(s, args);
    expect(p.moves.map((m) => m.name)).toEqual(['mt']);
    expect(p.moves[0]?.reason).toMatch(/mt \(~2\.00 cores\)/);
  });

  it('where single-threaded cpu-greedy sees one core per container', () => {
    const p = cpuGreedy.plan(s, args);
    expect(p.moves).toHaveLength(1);
    expect(p.moves[0]?.reason).toMatch(/~1\.00 cores/);
  });

  it('caps a container by its CPU limit', () => {
    const t = snapshot([host('h1', { cores: 2 }), host('h2', { cores: 2 })], [container('mt', 'h1', { cpuCores: 0.5, threadCount: 8, cpuLimitCores: 0.5 }), container('x', 'h1', { cpuCores: 1.5, threadCount: 2 })]);
    const p = cpuGreedyMultithread.plan(t, args);
    expect(p.moves.map((m) => m.name)).toEqual(['x']);
  });

  it('counts a migration in flight on its target: no second container is sent after it, none off its source twice', () => {
    const s = snapshot([host('h1'), host('h2'), host('h3', { cpuUtil: 0.9 })], ['a', 'b', 'c'].map((n) => container(n, 'h1', { cpuCores: 0.33 })), {
      inFlight: [{ migrationId: 'm1', herdId: 'id-a', sourceHost: 'h1', targetHost: 'h2', manual: true, startedAtMs: 0 }],
    });
    s.containers[0] = { ...s.containers[0]!, migrating: true };
    const p = cpuGreedyMultithread.plan(s, args);
    // h1 keeps b and c (2 cores of demand on 1), h2 is full with a: nowhere to go.
    expect(p.moves).toEqual([]);
    expect(p.annotations.map((a) => a.code)).toContain('NO_TARGET_CAPACITY');
  });
});
