/**
 * `npm run bench:lab-oltp [-- --seconds 300 --client-threads 2 --noisy-threads 8]`: the
 * `oltp-disk` policy on the real lab, measured by its databases' transactions (issue 12,
 * item 6). Needs a lab whose hosts' disks have a limited number of operations per second:
 *   bin/herd lab down && bin/herd lab up --disk-iops 1000
 * (control/lab/host-disk.ts: without a limit every lab host shares this machine's one disk,
 * page cache and cores, and a noisy neighbour slows every host alike).
 *
 * Two MariaDB containers (herd/mariadb), each under `sysbench oltp_read_write` from this
 * machine (2 connections each, over the lab's network), share h1 with a disk-heavy
 * neighbour (`sysbench fileio` random writes by 8 threads with an fsync every 16 writes, in
 * a herd/sysbench container). The monitor reports each host's disk figures from its own
 * device. The same scenario runs twice for the same duration, from the same start
 * (containers made afresh, tables prepared afresh):
 *   A. migration off (the control loop paused),
 *   B. the control loop with `oltp-disk` alone (no CPU fallback, so that only disk
 *      decisions move containers), the lab's loop and safety settings otherwise.
 * Prints the transactions per minute of each database per phase, their timeline, the
 * policy's migrations with its reasons, then `target ...: MET|MISSED` lines. Herd's
 * published result is 49 vs 110 transactions per minute for its OLTP server container
 * (2.2x). Builds herd/mariadb (bin/herd lab image mariadb) if the lab lacks it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MARIADB_CREDENTIALS } from '../../control/lab/debian-images.ts';
import { labLayout } from '../../control/lab/layout.ts';
import { runCommand } from '../../control/lab/shell.ts';
import { readLabState } from '../../control/lab/state.ts';
import type { MigrationRecord } from '../../control/loop/history-store.ts';
import { herd, herdOk } from '../support/herd-cli.ts';
import { sleep, useControl } from './lab-control.ts';
import { benchProgress } from './report.ts';

/** Herd's published OLTP result: transactions per minute of its OLTP server container, policy vs migration off. */
const PUBLISHED = { off: 49, policy: 110 };
const REPORT_SECONDS = 10;

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '300' },
    'client-threads': { type: 'string', default: '2' },
    'noisy-threads': { type: 'string', default: '8' },
  },
});
const SECONDS = Number(opts.seconds);
const CLIENT_THREADS = Number(opts['client-threads']);
const NOISY_THREADS = Number(opts['noisy-threads']);
if (!Number.isInteger(SECONDS) || SECONDS < 60) throw new Error('--seconds must be an integer >= 60');
for (const [flag, v] of [['--client-threads', CLIENT_THREADS], ['--noisy-threads', NOISY_THREADS]] as const) if (!Number.isInteger(v) || v < 1 || v > 16) throw new Error(`${flag} must be an integer from 1 to 16`);

/** The databases, at addresses in h1's range (a migrated container keeps its address). */
const DATABASES = [
  { name: 'oltpdb-1', ip: '10.213.0.74' },
  { name: 'oltpdb-2', ip: '10.213.0.75' },
];
const NOISY = 'oltp-noisy';
const NOISY_COMMAND = `cd /tmp && sysbench fileio --file-total-size=1G --file-num=8 prepare >/dev/null && exec sysbench fileio --file-total-size=1G --file-num=8 --file-test-mode=rndwr --file-fsync-freq=16 --threads=${NOISY_THREADS} --time=0 --report-interval=10 run`;

const sysbenchArgs = (ip: string) => ['oltp_read_write', '--db-driver=mysql', `--mysql-host=${ip}`, `--mysql-user=${MARIADB_CREDENTIALS.user}`, `--mysql-password=${MARIADB_CREDENTIALS.password}`, `--mysql-db=${MARIADB_CREDENTIALS.database}`, '--tables=2', '--table-size=20000', '--mysql-ignore-errors=1213'];

interface ClientResult {
  name: string;
  transactions: number;
  /** Deadlocks InnoDB rolled back and sysbench ran again (its "ignored errors"); -1 without a summary. */
  deadlocks: number;
  reconnects: number;
  fatal: boolean;
  /** Transactions per second per report interval, in order. */
  tps: number[];
}

interface PhaseResult {
  phase: string;
  /** When the clients started (ms since the epoch). */
  t0: number;
  clients: ClientResult[];
  migrations: MigrationRecord[];
}

const bench = benchProgress('bench:lab-oltp');
const out = (line: string) => process.stdout.write(`${line}\n`);

async function removeAll(): Promise<void> {
  for (const n of [...DATABASES.map((d) => d.name), NOISY]) await herd(['rm', n, '--force']);
}

async function prepare(ip: string): Promise<void> {
  for (let i = 0; i < 60; i++) {
    const r = await runCommand('sysbench', [...sysbenchArgs(ip), 'prepare'], { timeoutMs: 300_000 });
    if (r.code === 0) return;
    // The server initialises its data directory first: connections are refused for a while.
    if (i === 59) throw new Error(`sysbench prepare against ${ip} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    await sleep(2000);
  }
}

function runClient(name: string, ip: string): Promise<ClientResult> {
  return new Promise((resolve) => {
    const child = spawn('sysbench', [...sysbenchArgs(ip), `--threads=${CLIENT_THREADS}`, `--time=${SECONDS}`, `--report-interval=${REPORT_SECONDS}`, 'run'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', () =>
      resolve({
        name,
        transactions: Number(/transactions:\s+(\d+)/.exec(text)?.[1] ?? 0),
        deadlocks: Number(/ignored errors:\s+(\d+)/.exec(text)?.[1] ?? -1),
        reconnects: Number(/reconnects:\s+(\d+)/.exec(text)?.[1] ?? -1),
        fatal: /FATAL|ALERT/.test(text),
        tps: [...text.matchAll(/^\[ \d+s \] thds: \d+ tps: ([\d.]+)/gm)].map((m) => Number(m[1])),
      }),
    );
  });
}

async function runPhase(phase: string, active: boolean): Promise<PhaseResult> {
  await removeAll();
  if (!active) await herdOk(['control', 'pause', '--reason', 'bench:lab-oltp: migration off']);
  bench.phase(`${phase}: databases and the disk-heavy neighbour on h1, tables prepared`);
  for (const d of DATABASES) await herdOk(['run', '--host', 'h1', '--name', d.name, '--network', 'herd-lan', '--ip', d.ip, 'herd/mariadb']);
  for (const d of DATABASES) await prepare(d.ip);
  await herdOk(['run', '--host', 'h1', '--name', NOISY, 'herd/sysbench', 'sh', '-c', NOISY_COMMAND]);
  const t0 = Date.now();
  const clients = Promise.all(DATABASES.map((d) => runClient(d.name, d.ip)));
  for (let s = 1; s <= SECONDS; s++) {
    await sleep(t0 + s * 1000 - Date.now());
    bench.advance(`${phase.slice(0, 24)} s`, s, SECONDS);
  }
  const results = await clients;
  bench.end();
  const history = active ? (JSON.parse(await herdOk(['history', '--json', '--limit', '1000'])) as MigrationRecord[]) : [];
  const names = new Set([...DATABASES.map((d) => d.name), NOISY]);
  const migrations = history.filter((r) => names.has(r.name) && Date.parse(r.startedAt) >= t0);
  await removeAll();
  return { phase, t0, clients: results, migrations };
}

const tpm = (c: ClientResult) => (c.transactions / SECONDS) * 60;
/** Transactions per minute per database in a phase. */
const meanTpm = (r: PhaseResult) => r.clients.reduce((a, c) => a + tpm(c), 0) / r.clients.length;

function report(results: PhaseResult[]): void {
  const [off, policy] = results as [PhaseResult, PhaseResult];
  const pad = (s: string, n: number) => s.padEnd(n);
  out(`\n${pad('phase', 36)}${DATABASES.map((d) => pad(`${d.name} tpm`, 16)).join('')}${pad('mean tpm', 12)}${pad('vs off', 10)}migrations`);
  for (const r of results) {
    out(`${pad(r.phase, 36)}${r.clients.map((c) => pad(tpm(c).toFixed(0), 16)).join('')}${pad(meanTpm(r).toFixed(0), 12)}${pad(r === off ? '-' : `${(meanTpm(r) / meanTpm(off)).toFixed(2)}x`, 10)}${r.migrations.length}`);
  }
  out(`\ntransactions per second, every ${REPORT_SECONDS} s:`);
  for (const r of results) for (const c of r.clients) out(`  ${pad(r.phase.slice(0, 2), 4)}${pad(c.name, 10)}${c.tps.map((v) => v.toFixed(0).padStart(5)).join('')}`);
  out('\nmigrations of the policy phase:');
  if (policy.migrations.length === 0) out('  none');
  for (const m of policy.migrations) {
    const at = ((Date.parse(m.startedAt) - policy.t0) / 1000).toFixed(0);
    out(`  at ${at} s: ${m.name} ${m.from} -> ${m.to} ${m.outcome ?? 'in flight'}${m.timings === undefined ? '' : `, downtime ${m.timings.downtimeMs.toFixed(0)} ms`}: ${m.reason ?? ''}`);
  }
  // Only deadlocks (1213) are retried (--mysql-ignore-errors=1213): InnoDB rolls one transaction back, sysbench runs it again. Any other error is FATAL.
  for (const r of results) for (const c of r.clients) out(`${r.phase.slice(0, 2)} ${c.name}: transactions ${c.transactions}, deadlocks run again ${c.deadlocks}, reconnects ${c.reconnects}${c.fatal ? ', sysbench reported a FATAL error' : ''}`);

  const offMean = meanTpm(off);
  const policyMean = meanTpm(policy);
  const ratio = policyMean / offMean;
  const goal = PUBLISHED.policy / PUBLISHED.off;
  out('');
  out(`target OLTP transactions per minute per database, oltp-disk vs migration off: ${policyMean.toFixed(0)} vs ${offMean.toFixed(0)} = ${ratio.toFixed(2)}x vs >= ${goal.toFixed(2)}x (Herd's published ${PUBLISHED.policy} vs ${PUBLISHED.off}): ${ratio >= goal ? 'MET' : 'MISSED'}`);
  // A client that ended with a FATAL error, or without its summary, lost transactions; a reconnect lost a connection.
  const broken = results.flatMap((r) => r.clients).filter((c) => c.fatal || c.reconnects !== 0 || c.deadlocks < 0).length;
  out(`target database clients that ran to the end without a fatal error or reconnect: ${DATABASES.length * results.length - broken} of ${DATABASES.length * results.length} vs all: ${broken === 0 ? 'MET' : 'MISSED'}`);
  const done = policy.migrations.filter((m) => m.outcome === 'done').length;
  out(`target the policy moved containers apart: ${done} completed migration(s) vs >= 1: ${done >= 1 ? 'MET' : 'MISSED'}`);
}

async function main(): Promise<void> {
  const state = readLabState();
  if (state === undefined) throw new Error('the lab is not up: run bin/herd lab up (as root) first');
  const layout = labLayout({ hosts: state.hosts, cpuCount: availableParallelism() });
  if (layout.hosts.length < 2) throw new Error('the benchmark needs a lab of at least 2 hosts');
  if (state.diskIops === undefined) throw new Error('the lab\'s disks have no operations limit, so a noisy neighbour slows every host alike: run bin/herd lab down && bin/herd lab up --disk-iops 1000');
  if ((await runCommand('sysbench', ['--version'])).code !== 0) throw new Error('sysbench is missing on this machine (apt-get install sysbench)');
  await herdOk(['lab', 'image', 'mariadb'], { timeoutMs: 1_200_000 });
  const dir = mkdtempSync(join(tmpdir(), 'herd-bench-oltp-'));
  out(`bench:lab-oltp: ${DATABASES.length} MariaDB containers (sysbench oltp_read_write, ${CLIENT_THREADS} connections each) and a disk-heavy neighbour (sysbench fileio rndwr, ${NOISY_THREADS} threads) on h1 of ${layout.hosts.length} one-core hosts, each with a disk of ${state.diskIops} operations/s; ${SECONDS} s per phase`);
  const results: PhaseResult[] = [];
  // oltp-disk alone: no CPU fallback, so that every move is a disk decision.
  const policies = [{ policy: 'oltp-disk', args: { fallback: 'none' } }];
  try {
    await useControl(layout, { policies }, dir);
    results.push(await runPhase('A. migration off', false));
    await useControl(layout, { policies }, dir);
    results.push(await runPhase('B. control loop, oltp-disk', true));
  } finally {
    await removeAll();
    await useControl(layout, undefined, dir).catch((err: unknown) => process.stderr.write(`could not restore the lab's control daemon: ${String(err)}\n`));
    await herd(['control', 'pause', '--reason', 'bench:lab-oltp done']);
    if (process.env.HERD_BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
    else out(`kept ${dir}`);
  }
  report(results);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:lab-oltp: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
