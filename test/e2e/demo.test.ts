/**
 * The README's first command ends in `herd demo`: CPU-bound workloads piled on one host,
 * the control loop spreading them by real live migrations, each printed with its reason
 * and downtime, then evaluations that move nothing.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_WORKLOADS } from '../../control/cli/demo-command.ts';
import { placements } from '../support/containers.ts';
import { herd, herdOk } from '../support/herd-cli.ts';
import { readyLab } from '../support/lab.ts';
import type { LabLayout } from '../../control/lab/layout.ts';

describe('herd demo (lab)', () => {
  let layout: LabLayout;
  beforeAll(async () => {
    layout = await readyLab(2);
  });

  it('piles the workloads on h1 and the control loop rebalances them by live migrations, then holds still', { timeout: 700_000 }, async () => {
    const r = await herd(['demo'], { timeoutMs: 600_000 });
    await herdOk(['control', 'pause', '--reason', 'demo test done']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('started 6 workloads on h1');
    expect(r.stdout).toMatch(/MOVE demo-(cpu|mt)-\d h1 -> h2: h1 demands [\d.]+ of 1 core\(s\)/);
    expect(r.stdout).toMatch(/DONE demo-(cpu|mt)-\d h1 -> h2 done: downtime \d+ ms/);
    expect(r.stdout).toMatch(/[1-9]\d* migration\(s\) by the control loop, 0 failed; median downtime \d+ ms; stable: \d+ evaluations in a row without a move/);
    // Every workload runs exactly once (the --oltp ones were not asked for); the idle services were left where they were.
    for (const w of DEMO_WORKLOADS.filter((w) => w.oltp !== true)) {
      const where = await placements(layout, w.name);
      expect(where.filter((p) => p.running), w.name).toHaveLength(1);
      expect(where, w.name).toHaveLength(1);
    }
    for (const idle of ['demo-counter', 'demo-web']) expect((await placements(layout, idle))[0]?.hostId).toBe('h1');
  });
});
