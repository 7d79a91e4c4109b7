import { describe, expect, it } from 'vitest';
import { container, host, snapshot } from '../testing/builders.ts';
import type { ClusterSnapshot } from '../model.ts';
import { oltpDisk, oltpDiskArgsSchema } from './policy.ts';

// The published policy's conditions (a)-(g); (h) has its own tests.
const args = oltpDiskArgsSchema.parse({ minGapReduction: 0 });

/** db on h1 (busy disk), h2 quiet: every condition holds. Each case moves one figure across one threshold. */
function base(o: { h1?: object; h2?: object; db?: object } = {}): ClusterSnapshot {
  return snapshot(
    [host('h1', { diskOpsPerSec: 1000, diskActiveRatio: 0.6, ...o.h1 }), host('h2', { diskOpsPerSec: 100, diskActiveRatio: 0.1, ...o.h2 })],
    [container('db', 'h1', { diskOpsPerSec: 900, cpuCores: 0.3, ...o.db }), container('web', 'h1', { diskOpsPerSec: 10, cpuCores: 0.1 })],
  );
}

const moved = (s: ClusterSnapshot) => oltpDisk.plan(s, args).moves.filter((m) => m.policy === 'oltp-disk').map((m) => `${m.name}:${m.from}->${m.to}`);

describe('oltp-disk', () => {
  it('moves the container with the most disk ops to the host with the fewest when every condition holds', () => {
    const p = oltpDisk.plan(base(), args);
    expect(p.moves).toHaveLength(1);
    expect(p.moves[0]).toMatchObject({ name: 'db', from: 'h1', to: 'h2', reasonCode: 'DISK_IMBALANCE' });
    expect(p.moves[0]?.reason).toContain('900 disk ops/s');
  });

  // [condition, passes, fails]
  const cases: [string, ClusterSnapshot, ClusterSnapshot][] = [
    ['(a) enough samples', base({ db: { sampleCount: 3 } }), base({ db: { sampleCount: 2 } })],
    ['(a) missing samples', base({ db: { missingRatio: 0.02 } }), base({ db: { missingRatio: 0.03 } })],
    ['(b) disk-ops reward 0.35', base({ h2: { diskOpsPerSec: 650 } }), base({ h2: { diskOpsPerSec: 660 } })],
    ['(c) disk-active 0.15', base({ h1: { diskActiveRatio: 0.15 }, h2: { diskActiveRatio: 0.1 } }), base({ h1: { diskActiveRatio: 0.14 }, h2: { diskActiveRatio: 0.1 } })],
    ['(d) disk-active reward 0.15', base({ h1: { diskActiveRatio: 0.6 }, h2: { diskActiveRatio: 0.5 } }), base({ h1: { diskActiveRatio: 0.6 }, h2: { diskActiveRatio: 0.52 } })],
    ['(e) baseline 0.005 x 8000 = 40 ops/s', base({ db: { diskOpsPerSec: 40 } }), base({ db: { diskOpsPerSec: 39 } })],
    ['(g) CPU room on the target', base({ h2: { cpuUtil: 0.7 } }), base({ h2: { cpuUtil: 0.71 } })],
  ];
  for (const [name, passes, fails] of cases) {
    it(`${name}: moves on one side of the threshold, not on the other`, () => {
      expect(moved(passes)).toEqual(['db:h1->h2']);
      expect(moved(fails)).not.toContain('db:h1->h2');
    });
  }

  it('(f) never moves a container to its own host: the next candidate goes instead', () => {
    const s = snapshot(
      [host('h1', { diskOpsPerSec: 100, diskActiveRatio: 0.1 }), host('h2', { diskOpsPerSec: 1000, diskActiveRatio: 0.6 })],
      [container('quietdb', 'h1', { diskOpsPerSec: 950 }), container('db2', 'h2', { diskOpsPerSec: 500 })],
    );
    expect(moved(s)).toEqual(['db2:h2->h1']);
    expect(oltpDisk.plan(s, args).annotations.map((a) => a.message).join(' ')).toContain('(f) already on h1');
  });

  it('falls back to cpu-greedy-multithread, saying why', () => {
    const s = snapshot([host('h1', { diskOpsPerSec: 10, diskActiveRatio: 0 }), host('h2', { diskOpsPerSec: 10, diskActiveRatio: 0 })], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5 })));
    const p = oltpDisk.plan(s, args);
    expect(p.policy).toBe('oltp-disk>cpu-greedy-multithread');
    expect(p.moves).toHaveLength(1);
    expect(p.moves[0]?.reasonCode).toBe('CPU_OVERLOAD');
    expect(p.annotations[0]).toMatchObject({ code: 'NO_DISK_CANDIDATE' });
    expect(p.annotations[0]?.message).toContain('(b)');
    expect(oltpDisk.plan(s, { ...args, fallback: 'none' }).moves).toEqual([]);
  });

  it('(g) the target must have the free memory for it, and the rejection says so', () => {
    const MiB = 2 ** 20;
    const s = base({ h2: { memoryAvailableBytes: 1000 * MiB }, db: { memoryBytes: 1600 * MiB } });
    expect(moved(s)).toEqual([]);
    expect(oltpDisk.plan(s, args).annotations[0]?.message).toContain('db: (g) db needs ~1600 MiB of memory, h2 has 1000 MiB available');
    expect(moved(base({ h2: { memoryAvailableBytes: 2000 * MiB }, db: { memoryBytes: 1600 * MiB } }))).toEqual(['db:h1->h2']);
  });

  it('its fallback takes its window thresholds (the loop\'s missingSamplesThreshold) unless fallbackArgs sets them', async () => {
    const { runChain } = await import('../registry.ts');
    const { chainFor } = await import('../pipeline.ts');
    // No disk imbalance: the fallback plans; a and b miss 30 % of their samples.
    const s = snapshot([host('h1', { diskOpsPerSec: 10, diskActiveRatio: 0 }), host('h2', { diskOpsPerSec: 10, diskActiveRatio: 0 })], ['a', 'b'].map((n) => container(n, 'h1', { cpuCores: 0.5, missingRatio: 0.3 })));
    const plan = (threshold: number, a: Record<string, unknown> = {}) => runChain(s, chainFor([{ policy: 'oltp-disk', args: a }], { missingSamplesThreshold: threshold, draining: false }));
    expect(plan(0.02).moves).toEqual([]);
    expect(plan(0.5).moves.map((m) => m.policy)).toEqual(['cpu-greedy-multithread']);
    expect(plan(0.5, { fallbackArgs: { maxMissingRatio: 0.02 } }).moves).toEqual([]);
    expect(plan(0.5, { minSamples: 20 }).moves).toEqual([]);
  });

  it('never targets a draining host', () => {
    expect(moved(base({ h2: { draining: true } }))).toEqual([]);
  });

  it('says so when only the busiest host can take containers (it does not compare a host with itself)', () => {
    const p = oltpDisk.plan(base({ h2: { draining: true } }), args);
    expect(p.annotations[0]).toMatchObject({ code: 'NO_DISK_CANDIDATE', message: expect.stringContaining('no host but the busiest, h1, can take containers') });
  });

  it('(h) does not swap a lone database between two hosts, and moves only off the busiest host', () => {
    const withH = oltpDiskArgsSchema.parse({});
    // db alone makes h1 the busiest; moving it makes h2 the busiest by as much: no narrower gap.
    expect(oltpDisk.plan(base(), withH).moves.filter((m) => m.policy === 'oltp-disk')).toEqual([]);
    expect(oltpDisk.plan(base(), withH).annotations.map((a) => a.message).join(' ')).toContain('(h) moving 900 ops/s leaves a gap of');
    // Two databases on h1: moving one narrows the gap.
    const two = snapshot(
      [host('h1', { diskOpsPerSec: 1000, diskActiveRatio: 0.6 }), host('h2', { diskOpsPerSec: 0, diskActiveRatio: 0 })],
      [container('db1', 'h1', { diskOpsPerSec: 500, cpuCores: 0.2 }), container('db2', 'h1', { diskOpsPerSec: 480, cpuCores: 0.2 })],
    );
    expect(oltpDisk.plan(two, withH).moves.map((m) => `${m.name}:${m.from}->${m.to}`)).toEqual(['db1:h1->h2']);
  });
});
