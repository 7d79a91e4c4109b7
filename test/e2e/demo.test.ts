/** The README's first command ends in `herd demo`: it must start the workloads and migrate them for real. */
import { beforeAll, describe, expect, it } from 'vitest';
import { placements } from '../support/containers.ts';
import { herd } from '../support/herd-cli.ts';
import { readyLab } from '../support/lab.ts';
import type { LabLayout } from '../../control/lab/layout.ts';

describe('herd demo (lab)', () => {
  let layout: LabLayout;
  beforeAll(async () => {
    layout = await readyLab(2);
  });

  it('starts the demo workloads and migrates each of them every round', async () => {
    const r = await herd(['demo', '--rounds', '2', '--interval', '1'], { timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('6 migration(s) done, 0 failed');
    for (const name of ['demo-counter', 'demo-web', 'demo-cpu']) {
      expect(r.stdout).toMatch(new RegExp(`${name} +h[12] -> h[12] +downtime \\d+ ms`));
      // Two moves bring every workload back to where it started, running exactly once.
      const where = await placements(layout, name);
      expect(where.filter((p) => p.running)).toHaveLength(1);
      expect(where).toHaveLength(1);
    }
  });
});
