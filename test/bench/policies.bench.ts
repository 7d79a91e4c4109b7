/**
 * `npm run bench:policies`: Herd's policies in the cluster simulator (control/sim).
 *
 * 1. For each generated scenario (seeded, control/sim/generate.ts) one table: control (no
 *    migration), ideal (best static placement by exhaustive search), and each policy with
 *    and without the safety layer; then the averages over the scenarios.
 * 2. Scale: the plan time of each policy (forecast-greedy too, with a model trained on the lab
 *    recording) on synthetic snapshots of 10, 100 and 1,000 hosts with 30 containers each
 *    (median of 5 runs, one thread).
 * 3. The target lines (`target <what>: <figure> vs <goal>: MET|MISSED`).
 * Every figure is computed in the run. Options: --seed N, --scenarios N.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseTrainOptions, runTrain } from '../../control/cli/forecast-command.ts';
import { cliProgress } from '../../control/cli/progress.ts';
import { columns, compareScenario, COMPARED_POLICIES, formatComparison, renderTable, type Comparison } from '../../control/sim/compare.ts';
import { DEFAULT_SEED, generateScenarios } from '../../control/sim/generate.ts';
import { MEASURED_MIGRATIONS } from '../../control/sim/migration-cost.ts';
import { syntheticSnapshot, timePlan, type PlanTiming } from '../../control/sim/scale.ts';
import type { ClusterSnapshot } from '../../policies/model.ts';
import type { PolicyName } from '../../policies/registry.ts';
import { REPO_ROOT } from '../support/herd-cli.ts';

const out = (s = '') => process.stdout.write(`${s}\n`);
/** Timed at scale: the compared policies and forecast-greedy (which the simulator does not compare: it needs a model of real workloads). */
const SCALE_POLICIES: PolicyName[] = [...COMPARED_POLICIES, 'forecast-greedy'];

function argValue(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} needs a positive integer`);
  return v;
}

const mean = (xs: number[]): number | undefined => (xs.length === 0 ? undefined : xs.reduce((s, x) => s + x, 0) / xs.length);
const f1 = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(1));

async function main(): Promise<void> {
  const started = performance.now();
  const seed = argValue('--seed', DEFAULT_SEED);
  const count = argValue('--scenarios', 12);
  out('Herd policy benchmark (cluster simulator, control/sim)');
  out(`machine: ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), node ${process.version}; everything below runs on one thread`);
  out(`scenarios: ${count} generated with seed ${seed} (control/sim/generate.ts); migration cost interpolated from docs/benchmark-migration.md (herd diff medians: ${MEASURED_MIGRATIONS.map((m) => `${m.memoryMiB} MiB mem x ${m.diffMiB} MiB diff ${(m.downtimeMs / 1000).toFixed(2)} s down`).join(', ')})`);
  out('columns: host CPU % = mean over hosts of the busy share of their cores; container CPU % = mean over containers of CPU got / CPU wanted (want = min(threads, limit, demand));');
  out('         ops/s = workload operations per second of the cluster over the run; ops lost = downtime x the ops/s a container had when it froze;');
  out('         % of ideal from 300 s = the same ratio once the piled-up start is over (the ideal starts from its best placement, the others from the pile)');

  const scenarios = generateScenarios({ seed, count });
  const comparisons: Comparison[] = [];
  for (const s of scenarios) {
    out('');
    if (s.description !== undefined) out(`# ${s.description}`);
    const c = compareScenario(s);
    comparisons.push(c);
    out(formatComparison(c));
  }

  // Averages over the scenarios, row by row.
  out('');
  out(`== average over ${comparisons.length} scenarios (% of ideal over the ${comparisons.filter((c) => c.ideal.status === 'ok').length} with an ideal; migrations and ops lost are totals)`);
  const labels = comparisons[0]?.rows.map((r) => r.label) ?? [];
  const settleSeconds = comparisons[0]?.settleSeconds;
  const avgRows = labels.map((label) => {
    const rows = comparisons.map((c) => c.rows.find((r) => r.label === label)).filter((r) => r !== undefined);
    return [
      label,
      f1(mean(rows.map((r) => r.result.hostCpuUtil * 100))),
      f1(mean(rows.map((r) => r.result.containerCpuUtil * 100))),
      (mean(rows.map((r) => r.result.opsPerSec)) ?? 0).toFixed(0),
      f1(mean(rows.flatMap((r) => (r.pctOfIdeal === undefined ? [] : [r.pctOfIdeal])))),
      ((x) => (x === undefined ? '-' : `${x >= 0 ? '+' : ''}${x.toFixed(1)}`))(mean(rows.flatMap((r) => (r.pctOverControl === undefined ? [] : [r.pctOverControl])))),
      String(rows.reduce((s, r) => s + r.result.migrations, 0)),
      rows.reduce((s, r) => s + r.result.opsLostToDowntime, 0).toFixed(0),
      ...(settleSeconds === undefined ? [] : [f1(mean(rows.flatMap((r) => (r.pctOfIdealSettled === undefined ? [] : [r.pctOfIdealSettled]))))]),
    ];
  });
  out(renderTable(columns(settleSeconds), avgRows));

  // Where the migrations went: held-back moves by code, summed over the scenarios.
  out('');
  out('moves held back (summed over the scenarios): safety layer and last look (recheckMove)');
  for (const label of labels.filter((l) => l.includes('+ safety') || l.includes('(no safety)'))) {
    const vetoes: Record<string, number> = {};
    let proposed = 0;
    for (const c of comparisons) {
      const r = c.rows.find((x) => x.label === label);
      if (r === undefined) continue;
      proposed += r.result.proposedMoves;
      for (const [k, v] of Object.entries(r.result.vetoes)) vetoes[k] = (vetoes[k] ?? 0) + v;
    }
    const list = Object.entries(vetoes).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    out(`  ${label.padEnd(36)} proposed ${String(proposed).padStart(4)}  held back: ${list.length === 0 ? 'none' : list.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }

  // Scale.
  out('');
  out('== scale: plan time of one evaluation (runPolicy, arguments validated) on synthetic snapshots, 30 containers per host, median of 5 runs after a warm-up');
  const sizes = [10, 100, 1000];
  const timings = new Map<string, PlanTiming[]>();
  const snapshots = sizes.map((h) => syntheticSnapshot(h, 30));
  // forecast-greedy with a model as `herd forecast train` makes it (100 trees, depth 6) from the lab
  // recording; outOfRange: allow, so that its pairs go all the way to moves (the cost is the same).
  const modelFile = join(mkdtempSync(join(tmpdir(), 'herd-bench-')), 'model.json');
  await runTrain(parseTrainOptions({ data: `${REPO_ROOT}/monitor/dataset/recordings/lab-forecast.csv.gz`, model: modelFile }), cliProgress(true, {}, { stdout: process.stdout, stderr: { write: () => true } }));
  const argsOf = (policy: PolicyName): Record<string, unknown> => (policy === 'forecast-greedy' ? { model: JSON.parse(readFileSync(modelFile, 'utf8')) as unknown, outOfRange: 'allow' } : {});
  for (const policy of SCALE_POLICIES) for (let i = 0; i < 3; i++) timePlan(snapshots[1] as ClusterSnapshot, { policy, args: argsOf(policy) }, 1); // JIT warm-up
  for (const policy of SCALE_POLICIES) {
    const args = argsOf(policy);
    timings.set(policy, snapshots.map((s) => timePlan(s, { policy, args }, 5)));
  }
  const scaleHead = ['policy', ...sizes.map((h) => `${h} hosts x ${h * 30} ms`), 'moves at 1000', 'growth per 10x hosts (linear: x10)'];
  out(
    renderTable(
      scaleHead,
      SCALE_POLICIES.map((p) => {
        const ts = timings.get(p) as PlanTiming[];
        const last = ts[ts.length - 1] as PlanTiming;
        const steps = ts.slice(1).map((t, i) => `x${(t.medianMs / (ts[i] as PlanTiming).medianMs).toFixed(1)} (${(ts[i] as PlanTiming).hosts}->${t.hosts})`);
        return [p, ...ts.map((t) => t.medianMs.toFixed(2)), String(last.moves), steps.join(', ')];
      }),
    ),
  );

  // Targets.
  out('');
  out('== targets');
  for (const policy of COMPARED_POLICIES) {
    const pcts = comparisons.flatMap((c) => {
      const r = c.rows.find((x) => x.policy === policy && x.safety === true);
      return r?.pctOfIdeal === undefined ? [] : [r.pctOfIdeal];
    });
    const m = mean(pcts);
    out(`target ${policy} ops vs ideal (safety on, mean over scenarios): ${m === undefined ? 'n/a' : `${m.toFixed(1)} %`} vs >= 98 %: ${m !== undefined && m >= 98 ? 'MET' : 'MISSED'}`);
  }
  for (const policy of COMPARED_POLICIES) {
    const sum = (safety: boolean) => comparisons.reduce((s, c) => s + (c.rows.find((x) => x.policy === policy && x.safety === safety)?.result.migrations ?? 0), 0);
    const on = sum(true);
    const offCount = sum(false);
    out(`target migrations with safety < without (${policy}): ${on} vs ${offCount}: ${on < offCount ? 'MET' : 'MISSED'}`);
  }
  for (const policy of SCALE_POLICIES) {
    const t = (timings.get(policy) as PlanTiming[])[sizes.length - 1] as PlanTiming;
    const s = t.medianMs / 1000;
    out(`target plan time at ${t.hosts} hosts x ${t.containers} containers (${policy}): ${s.toFixed(3)} s vs < 1 s: ${s < 1 ? 'MET' : 'MISSED'}`);
  }
  for (const policy of COMPARED_POLICIES) {
    const pcts = comparisons.flatMap((c) => {
      const r = c.rows.find((x) => x.policy === policy && x.safety === true);
      return r?.pctOfIdealSettled === undefined ? [] : [r.pctOfIdealSettled];
    });
    const m = mean(pcts);
    if (m !== undefined && settleSeconds !== undefined) out(`(not a target) ${policy} ops vs ideal from ${settleSeconds} s on (safety on, mean over scenarios): ${m.toFixed(1)} %`);
  }
  const mt = comparisons.map((c) => c.rows.find((x) => x.policy === 'cpu-greedy-multithread' && x.safety === true)).filter((r) => r !== undefined);
  out('');
  out(`published Herd figures (multi-thread greedy): +15.4 % ops over control, 100.3 % of ideal; here (safety on, mean over scenarios): ${((x) => (x === undefined ? 'n/a' : `${x >= 0 ? '+' : ''}${x.toFixed(1)} %`))(mean(mt.flatMap((r) => (r.pctOverControl === undefined ? [] : [r.pctOverControl]))))} over control, ${f1(mean(mt.flatMap((r) => (r.pctOfIdeal === undefined ? [] : [r.pctOfIdeal]))))} % of ideal`);
  out(`(bench time ${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

await main();
