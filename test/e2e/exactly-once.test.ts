/**
 * Exactly once under faults, end to end on the lab: a short fault-injection round (every
 * fault kind at least once, at random points of real migrations; seed printed, set
 * HERD_FAULT_SEED to repeat one). `npm run soak` runs the long round.
 */
import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, formatTotals, runFaultRound } from '../faults/fault-round.ts';
import { readyLab } from '../support/lab.ts';

describe('exactly once under faults (lab, real daemons, Docker, CRIU, links)', () => {
  it(`survives ${FAULT_KINDS.length} faults of every kind: never lost, never duplicated, the state never goes back, nothing left behind`, async () => {
    const layout = await readyLab(2);
    const seed = Number(process.env.HERD_FAULT_SEED ?? Math.floor(Math.random() * 1e9));
    const lines: string[] = [];
    const totals = await runFaultRound(layout, { seed, count: FAULT_KINDS.length, log: (l) => (lines.push(l), process.stdout.write(`${l}\n`)) });
    process.stdout.write(`${formatTotals(totals)}\n`);
    expect(Object.keys(totals.injected).sort()).toEqual([...FAULT_KINDS].sort());
    expect(totals.lost, lines.join('\n')).toBe(0);
    expect(totals.duplicated, lines.join('\n')).toBe(0);
    expect(totals.counterWentBack, lines.join('\n')).toBe(0);
    expect(totals.failures.map((f) => `#${f.index} ${f.kind} at ${f.point}: ${f.problems.join(' | ')}`), `seed ${seed}`).toEqual([]);
    // Both ways of ending must have happened in the round: the faults really struck mid-migration.
    expect(totals.completed + totals.rolledForward, lines.join('\n')).toBeGreaterThan(0);
    expect(totals.rolledBack, lines.join('\n')).toBeGreaterThan(0);
  }, 90 * 60_000);
});
