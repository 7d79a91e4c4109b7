/**
 * `npm run bench:lab-policy`: the control loop on the real lab, measured by its workloads.
 *
 * The same scenario runs three times for the same duration: sysbench CPU containers (two
 * single-threaded, one two-threaded) all started on h1 while h2 is empty —
 *   A. migration off (the control loop paused),
 *   B. the control loop with its periodic evaluation and the reactive trigger,
 *   C. the control loop with the periodic evaluation only.
 * Each container runs `sysbench cpu --time=<seconds>` and prints its total number of events
 * when it ends (read from its log as the monitor recorded it, across migrations); a
 * migration's downtime costs events, as it would. B and C use a 60 s evaluation interval
 * (and initial delay) so that the reactive trigger's effect shows: "relieved" is the time
 * from the start to the end of the first migration off h1.
 * Prints a table, then `target ...: MET|MISSED` lines. Needs the lab up (bin/herd lab up).
 *   npm run bench:lab-policy [-- --seconds 150]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { labLayout, type LabLayout } from '../../control/lab/layout.ts';
import { readLabState } from '../../control/lab/state.ts';
import type { MigrationRecord } from '../../control/loop/history-store.ts';
import { herd, herdOk } from '../support/herd-cli.ts';
import { sleep, useControl } from './lab-control.ts';
import { benchProgress } from './report.ts';

const WORKLOADS = [
  { name: 'benchloop-1', threads: 1 },
  { name: 'benchloop-2', threads: 1 },
  { name: 'benchloop-mt', threads: 2 },
];
const TARGET_GAIN = 0.15;

interface PhaseResult {
  phase: string;
  events: Map<string, number>;
  total: number;
  migrations: MigrationRecord[];
  relievedAfterSeconds: number | undefined;
}

function argSeconds(): number {
  const i = process.argv.indexOf('--seconds');
  const v = i < 0 ? 150 : Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 30) throw new Error('--seconds must be a number >= 30');
  return v;
}

async function removeWorkloads(): Promise<void> {
  for (const w of WORKLOADS) await herd(['rm', w.name, '--force']);
}

async function totalEvents(name: string): Promise<number | undefined> {
  const r = await herd(['logs', name]);
  const m = /total number of events:\s+(\d+)/.exec(r.stdout);
  return m === null ? undefined : Number(m[1]);
}

const bench = benchProgress('bench:lab-policy');

async function runPhase(phase: string, seconds: number, active: boolean): Promise<PhaseResult> {
  await removeWorkloads();
  if (!active) await herdOk(['control', 'pause', '--reason', 'bench:lab-policy: migration off']);
  const t0 = Date.now();
  for (const w of WORKLOADS) await herdOk(['run', '--host', 'h1', '--name', w.name, 'herd/sysbench', 'sysbench', 'cpu', `--threads=${w.threads}`, `--time=${seconds}`, 'run']);
  process.stdout.write(`  ${phase}: ${WORKLOADS.length} containers started on h1 at ${new Date(t0).toISOString().slice(11, 19)}; running ${seconds} s\n`);
  for (let s = 1; s <= seconds; s++) {
    await sleep(t0 + s * 1000 - Date.now());
    bench.advance(`${phase.slice(0, 24)} s`, s, seconds);
  }
  bench.end();
  const events = new Map<string, number>();
  for (let i = 0; i < 60 && events.size < WORKLOADS.length; i++) {
    for (const w of WORKLOADS) {
      if (events.has(w.name)) continue;
      const n = await totalEvents(w.name);
      if (n !== undefined) events.set(w.name, n);
    }
    if (events.size < WORKLOADS.length) await sleep(2000);
  }
  if (events.size < WORKLOADS.length) throw new Error(`${phase}: no sysbench total in the logs of ${WORKLOADS.filter((w) => !events.has(w.name)).map((w) => w.name).join(', ')}`);
  const history = active ? (JSON.parse(await herdOk(['history', '--json', '--limit', '1000'])) as MigrationRecord[]) : [];
  const migrations = history.filter((r) => WORKLOADS.some((w) => w.name === r.name) && Date.parse(r.startedAt) >= t0);
  const firstDone = migrations.filter((r) => r.outcome === 'done' && r.endedAt !== undefined).map((r) => Date.parse(r.endedAt as string)).sort((a, b) => a - b)[0];
  await removeWorkloads();
  return { phase, events, total: [...events.values()].reduce((a, b) => a + b, 0), migrations, relievedAfterSeconds: firstDone === undefined ? undefined : (firstDone - t0) / 1000 };
}

async function main(): Promise<void> {
  const seconds = argSeconds();
  const state = readLabState();
  if (state === undefined) throw new Error('the lab is not up: run bin/herd lab up (as root) first');
  const layout = labLayout({ hosts: state.hosts, cpuCount: availableParallelism() });
  if (layout.hosts.length < 2) throw new Error('the benchmark needs a lab of at least 2 hosts');
  const dir = mkdtempSync(join(tmpdir(), 'herd-bench-loop-'));
  const periodic = { evaluationIntervalSeconds: 60, initialDelaySeconds: 60 };
  process.stdout.write(`bench:lab-policy: ${WORKLOADS.map((w) => `${w.name} (${w.threads} thread${w.threads > 1 ? 's' : ''})`).join(', ')} on h1 of ${layout.hosts.length} one-core hosts, ${seconds} s per phase\n`);
  const results: PhaseResult[] = [];
  try {
    await useControl(layout, { ...periodic }, dir);
    results.push(await runPhase('A. migration off', seconds, false));
    await useControl(layout, { ...periodic, reactive: { enabled: true, consecutiveSamples: 3, minIntervalSeconds: 20 } }, dir);
    results.push(await runPhase('B. control loop, periodic + reactive', seconds, true));
    await useControl(layout, { ...periodic, reactive: { enabled: false } }, dir);
    results.push(await runPhase('C. control loop, periodic only', seconds, true));
  } finally {
    await removeWorkloads();
    await useControl(layout, undefined, dir).catch((err: unknown) => process.stderr.write(`could not restore the lab's control daemon: ${String(err)}\n`));
    await herd(['control', 'pause', '--reason', 'bench:lab-policy done']);
    const log = (() => {
      try {
        return readFileSync(join(dir, 'control.log'), 'utf8');
      } catch {
        return '';
      }
    })();
    if (process.env.HERD_BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
    else process.stdout.write(`kept ${dir} (${log.length} bytes of control log)\n`);
  }

  const off = results[0] as PhaseResult;
  const pad = (s: string, n: number) => s.padEnd(n);
  process.stdout.write(`\n${pad('phase', 40)}${pad('events', 12)}${pad('vs off', 10)}${pad('migrations', 12)}${pad('downtimes', 22)}relieved after\n`);
  for (const r of results) {
    const gain = r === off ? '-' : `${(((r.total - off.total) / off.total) * 100).toFixed(1)} %`;
    const downs = r.migrations.map((m) => (m.timings === undefined ? m.outcome : `${m.timings.downtimeMs.toFixed(0)} ms`)).join(', ') || '-';
    process.stdout.write(`${pad(r.phase, 40)}${pad(String(r.total), 12)}${pad(gain, 10)}${pad(String(r.migrations.length), 12)}${pad(downs, 22)}${r.relievedAfterSeconds === undefined ? '-' : `${r.relievedAfterSeconds.toFixed(1)} s`}\n`);
  }
  process.stdout.write(`per container (A / B / C): ${WORKLOADS.map((w) => `${w.name} ${results.map((r) => r.events.get(w.name) ?? 0).join(' / ')}`).join('; ')}\n`);
  for (const r of results.slice(1)) for (const m of r.migrations) process.stdout.write(`  ${r.phase.slice(0, 2)} ${m.name} ${m.from} -> ${m.to} ${m.outcome ?? 'in flight'}: ${m.reason ?? ''}\n`);
  const b = results[1] as PhaseResult;
  const c = results[2] as PhaseResult;
  const gainB = (b.total - off.total) / off.total;
  process.stdout.write(`\ntarget lab events with the control loop (B) vs migration off (A): +${(gainB * 100).toFixed(1)} % vs >= +${TARGET_GAIN * 100} %: ${gainB >= TARGET_GAIN ? 'MET' : 'MISSED'}\n`);
  const rb = b.relievedAfterSeconds;
  const rc = c.relievedAfterSeconds;
  const sooner = rb !== undefined && (rc === undefined || rb < rc);
  process.stdout.write(`target overload relieved sooner with the reactive trigger (B) than periodic only (C): ${rb === undefined ? 'never' : `${rb.toFixed(1)} s`} vs ${rc === undefined ? 'never' : `${rc.toFixed(1)} s`}${rb !== undefined && rc !== undefined ? ` (${(rc - rb).toFixed(1)} s sooner)` : ''}: ${sooner ? 'MET' : 'MISSED'}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:lab-policy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
