/**
 * `npm run dataset:record [-- --minutes 40 --seed 7 --out FILE]`: records the lab dataset
 * that `bench:forecast` trains on (issue "Forecasting", data (a)). Needs the lab up
 * (`bin/herd lab up --hosts 3` gives the most varied host contexts: h3 shares h1's CPU).
 *
 * What runs: sysbench CPU workloads (1 or 2 threads) and memory workloads under CPU limits
 * from 0.05 to 0.4 cores, and two MariaDB servers (herd/mariadb) each under a sysbench
 * OLTP client container (oltp_read_write, oltp_read_only) — about 48 labelled containers
 * spread unevenly over the hosts. Every 20 s (seeded) one thing changes: a workload is
 * replaced by a new one with other parameters on a random host, a workload is live-migrated
 * to another host, or nothing. Starting the containers takes about 4 min and is recorded
 * too; --minutes counts from when all run (40 min: about 110,000 rows). So a container's ops/s moves with its own limits and with
 * what its host runs: the relation the model learns.
 *
 * A second monitor (the lab's own configuration, 1 s sampling, its own dataset directory)
 * records the run; at the end the training table is built on a 1 s grid (monitor/dataset,
 * label: sysbench's 1 s reports — tps, eps or MiB/sec) and written as gzipped CSV, by
 * default to monitor/dataset/recordings/lab-forecast.csv.gz. The raw samples are removed
 * unless --keep.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { sysbenchOltpClient } from '../../control/lab/debian-images.ts';
import { labLayout } from '../../control/lab/layout.ts';
import { seededRng } from '../../policies/forecast/gbdt/index.ts';
import { buildTableFromDir, tableToCsv } from '../../monitor/dataset/index.ts';
import { herd, herdOk, HERD_BIN, REPO_ROOT } from '../support/herd-cli.ts';

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '40' },
    seed: { type: 'string', default: '7' },
    out: { type: 'string', default: `${REPO_ROOT}/monitor/dataset/recordings/lab-forecast.csv.gz` },
    keep: { type: 'boolean', default: false },
  },
});
const MINUTES = Number(opts.minutes);
if (!(MINUTES > 0)) throw new Error('--minutes must be positive');
const rng = seededRng(Number(opts.seed));
const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)] as T;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const say = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${line}\n`);

interface Workload {
  name: string;
  kind: 'cpu' | 'memory' | 'oltp' | 'db';
  host: string;
  args: string[];
}

const LIMITS = ['0.05', '0.1', '0.15', '0.2', '0.3', '0.4'];
const DB_IPS = ['10.213.0.221', '10.213.0.222'];
const CLIENT_IPS = ['10.213.0.223', '10.213.0.224'];
let serial = 0;

function cpuOrMemory(kind: 'cpu' | 'memory', host: string): Workload {
  const name = `fc-${kind}-${++serial}`;
  const threads = pick(['1', '1', '2']);
  const test = kind === 'cpu' ? ['cpu', `--cpu-max-prime=${pick(['5000', '10000', '20000'])}`] : ['memory', `--memory-block-size=${pick(['1K', '4K', '64K'])}`, '--memory-total-size=0'];
  return { name, kind, host, args: ['--host', host, '--name', name, '--cpus', pick(LIMITS), 'herd/sysbench', 'sysbench', ...test, `--threads=${threads}`, '--time=0', '--report-interval=1', 'run'] };
}

function oltpPair(i: number, host: string, clientHost: string): Workload[] {
  const db = `fc-db-${i}`;
  const client = sysbenchOltpClient(DB_IPS[i] as string, { script: i === 0 ? 'oltp_read_write' : 'oltp_read_only' });
  return [
    { name: db, kind: 'db', host, args: ['--host', host, '--name', db, '--cpus', '0.5', '--network', 'herd-lan', '--ip', DB_IPS[i] as string, 'herd/mariadb'] },
    { name: `fc-oltp-${i}`, kind: 'oltp', host: clientHost, args: ['--host', clientHost, '--name', `fc-oltp-${i}`, '--cpus', '0.3', '--network', 'herd-lan', '--ip', CLIENT_IPS[i] as string, 'herd/sysbench', ...client] },
  ];
}

async function start(w: Workload): Promise<void> {
  await herdOk(['run', ...w.args], { timeoutMs: 120_000 });
}

async function main(): Promise<void> {
  const hostList = (JSON.parse(await herdOk(['hosts', '--json'])) as { hostId: string; state: string }[]).filter((h) => h.state === 'online').map((h) => h.hostId).sort();
  if (hostList.length < 2) throw new Error(`the recording needs at least 2 online lab hosts, found ${hostList.length}: run "bin/herd lab up --hosts 3"`);
  await herdOk(['lab', 'image', 'mariadb'], { timeoutMs: 1_200_000 });
  // Leftovers of an interrupted recording would clash with the names used below.
  for (const c of JSON.parse(await herdOk(['containers', '--json'])) as { name: string }[]) if (c.name.startsWith('fc-')) await herd(['rm', c.name, '--force']);

  // A second monitor: the lab's configuration, sampling every second into its own directory.
  const layout = labLayout({ hosts: hostList.length, cpuCount: 1 });
  const dir = `${layout.stateDir}/forecast-recording`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = JSON.parse(readFileSync(layout.monitorConfig, 'utf8')) as Record<string, unknown>;
  writeFileSync(`${dir}/monitor.json`, JSON.stringify({ ...config, datasetDir: `${dir}/metrics`, hostIntervalSeconds: 1, containerIntervalSeconds: 1, metrics: { enabled: false }, clientId: 'herd-monitor-recording' }, null, 2));
  const monitor = spawn(HERD_BIN, ['monitor', '--config', `${dir}/monitor.json`], { stdio: ['ignore', 'ignore', 'inherit'] });
  say(`recording monitor (pid ${monitor.pid}) samples every 1 s into ${dir}/metrics`);

  const since = new Date();
  const running: Workload[] = [];
  // Uneven on purpose: the first host gets the most.
  const weighted = [...hostList, hostList[0] as string, hostList[0] as string];
  try {
    for (const [i, w] of [...oltpPair(0, hostList[0] as string, pick(hostList)), ...oltpPair(1, hostList[1] as string, pick(hostList))].entries()) {
      await start(w);
      running.push(w);
      if (i % 2 === 0) await sleep(2000);
    }
    for (let i = 0; i < 44; i++) {
      const w = cpuOrMemory(i % 5 < 3 ? 'cpu' : 'memory', pick(weighted));
      await start(w);
      running.push(w);
    }
    say(`${running.length} containers running (${running.filter((w) => w.kind !== 'db').length} labelled); recording for ${MINUTES} min`);

    const end = Date.now() + MINUTES * 60_000;
    let moves = 0;
    let replaced = 0;
    let failedMoves = 0;
    while (Date.now() < end) {
      await sleep(Math.min(20_000, end - Date.now()));
      if (Date.now() >= end) break;
      const roll = rng.next();
      const candidates = running.filter((w) => w.kind === 'cpu' || w.kind === 'memory');
      if (roll < 0.45) {
        const old = pick(candidates);
        await herd(['rm', old.name, '--force']);
        running.splice(running.indexOf(old), 1);
        const w = cpuOrMemory(old.kind as 'cpu' | 'memory', pick(weighted));
        await start(w);
        running.push(w);
        replaced++;
        say(`replaced ${old.name} by ${w.name} on ${w.host} (${w.args.slice(4).join(' ')})`);
      } else if (roll < 0.85) {
        const w = pick([...candidates, ...running.filter((x) => x.kind === 'oltp')]);
        const to = pick(hostList.filter((h) => h !== w.host));
        const r = await herd(['migrate', w.name, '--to', to, '--json'], { timeoutMs: 300_000 });
        if (r.code === 0) {
          w.host = to;
          moves++;
          say(`moved ${w.name} to ${to}`);
        } else {
          failedMoves++;
          say(`moving ${w.name} to ${to} failed: ${r.stderr.trim().split('\n').at(-1)}`);
        }
      }
    }
    say(`recording done: ${moves} migrations (${failedMoves} failed), ${replaced} workloads replaced`);
  } finally {
    monitor.kill('SIGTERM');
    await new Promise((r) => monitor.once('exit', r));
    for (const w of running) await herd(['rm', w.name, '--force']);
  }

  const table = await buildTableFromDir(`${dir}/metrics`, { since, to: new Date() }, { stepMs: 1000 });
  const out = resolve(opts.out as string);
  mkdirSync(dirname(out), { recursive: true });
  const csv = tableToCsv(table);
  writeFileSync(out, gzipSync(csv, { level: 9 }));
  const kinds = new Map<string, number>();
  for (const id of table.herdIds) kinds.set(id, (kinds.get(id) ?? 0) + 1);
  say(`training table: ${table.rows} rows from ${kinds.size} containers (${table.dropped.noLabel} grid rows without a label dropped), ${table.names.length} features; ${out} (${(csv.length / 2 ** 20).toFixed(1)} MiB as CSV)`);
  if (!opts.keep) rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
