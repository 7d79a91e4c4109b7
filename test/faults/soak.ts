/**
 * `npm run soak [-- --faults N --seed S]`: the long fault-injection round on the lab (default
 * 200 faults, every kind in turn, at random points of real migrations). Prints each fault and
 * its outcome, then the totals, then one target line per promise.
 */
import { parseArgs } from 'node:util';
import { formatTotals, runFaultRound } from './fault-round.ts';
import { readyLab } from '../support/lab.ts';

const { values } = parseArgs({ options: { faults: { type: 'string', default: '200' }, seed: { type: 'string' } } });
const count = Number(values.faults);
if (!Number.isInteger(count) || count < 1) {
  process.stderr.write(`--faults must be a positive integer, not ${JSON.stringify(values.faults)}\n`);
  process.exit(2);
}
const seed = values.seed === undefined ? Math.floor(Math.random() * 1e9) : Number(values.seed);
if (!Number.isInteger(seed)) {
  process.stderr.write(`--seed must be an integer, not ${JSON.stringify(values.seed)}\n`);
  process.exit(2);
}
const started = Date.now();
const layout = await readyLab(2);
const totals = await runFaultRound(layout, { seed, count });
const injected = Object.values(totals.injected).reduce((a, b) => a + b, 0);
process.stdout.write(`\n${formatTotals(totals)}\nran ${((Date.now() - started) / 60_000).toFixed(1)} min\n`);
for (const f of totals.failures) process.stdout.write(`FAILED #${f.index} ${f.kind} at ${f.point}+${f.delayMs}ms ${f.from}->${f.to} ${f.migrationId ?? ''}: ${f.problems.join(' | ')}\n`);
const target = (what: string, figure: number, goal: string, met: boolean) => process.stdout.write(`target ${what}: ${figure} vs ${goal}: ${met ? 'MET' : 'MISSED'}\n`);
target('faults injected', injected, `>= ${count}`, injected >= count);
target('containers lost', totals.lost, '0', totals.lost === 0);
target('containers duplicated', totals.duplicated, '0', totals.duplicated === 0);
target('counter went back (state lost)', totals.counterWentBack, '0', totals.counterWentBack === 0);
target('faults with anything left behind or stuck', totals.failures.length, '0', totals.failures.length === 0);
process.exit(totals.failures.length === 0 ? 0 : 1);
