/**
 * `npm run bench:db-migration`: a real database migrated while clients use it. MariaDB 10.11
 * (herd/mariadb) under `sysbench oltp_read_write` (4 connections, mysql driver, 4 tables of
 * 20,000 rows) from the root namespace over the lab's macvlan network is migrated h1 ⇄ h2 in
 * diff mode several times during one sysbench run. Prints the transactions-per-second
 * timeline around each move (sysbench's 1 s reports), each migration's downtime and bytes,
 * and sysbench's failed transactions (ignored errors) and reconnects, which must be 0.
 * Needs the lab up (bin/herd lab up); builds herd/mariadb on first use.
 *   npm run bench:db-migration [-- --moves 4 --gap 20]
 */
import { spawn } from 'node:child_process';
import { MARIADB_CREDENTIALS } from '../../control/lab/mariadb-image.ts';
import { runCommand } from '../../control/lab/shell.ts';
import type { MigrationResult } from '../../protocol/messages.ts';
import { herd, herdOk } from '../support/herd-cli.ts';

const IP = '10.213.0.242';
const NAME = 'benchdb';
const SYSBENCH = ['oltp_read_write', '--db-driver=mysql', `--mysql-host=${IP}`, `--mysql-user=${MARIADB_CREDENTIALS.user}`, `--mysql-password=${MARIADB_CREDENTIALS.password}`, `--mysql-db=${MARIADB_CREDENTIALS.database}`, '--tables=4', '--table-size=20000'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i < 0 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
}

async function main(): Promise<void> {
  const moves = arg('--moves', 4);
  const gap = arg('--gap', 20);
  await herdOk(['lab', 'image', 'mariadb'], { timeoutMs: 1_200_000 });
  await herd(['rm', NAME, '--force']);
  await herdOk(['run', '--host', 'h1', '--name', NAME, '--network', 'herd-lan', '--ip', IP, 'herd/mariadb']);
  let prepared = await runCommand('sysbench', [...SYSBENCH, 'prepare'], { timeoutMs: 300_000 });
  for (let i = 0; i < 60 && prepared.code !== 0; i++) {
    await sleep(2000);
    prepared = await runCommand('sysbench', [...SYSBENCH, 'prepare'], { timeoutMs: 300_000 });
  }
  if (prepared.code !== 0) throw new Error(`sysbench prepare failed: ${prepared.stderr || prepared.stdout}`);

  const seconds = gap * (moves + 1);
  const t0 = Date.now();
  const load = new Promise<string>((resolve) => {
    const child = spawn('sysbench', [...SYSBENCH, '--threads=4', `--time=${seconds}`, '--report-interval=1', 'run'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', () => resolve(out));
  });
  const results: { at: number; result?: MigrationResult; error?: string }[] = [];
  for (let i = 0; i < moves; i++) {
    await sleep(t0 + gap * (i + 1) * 1000 - Date.now());
    const at = (Date.now() - t0) / 1000;
    const r = await herd(['migrate', NAME, '--to', i % 2 === 0 ? 'h2' : 'h1', '--json'], { timeoutMs: 300_000 });
    results.push(r.code === 0 ? { at, result: JSON.parse(r.stdout) as MigrationResult } : { at, error: r.stderr.trim().split('\n').at(-1) ?? 'failed' });
  }
  const out = await load;
  await herd(['rm', NAME, '--force']);

  const tps = new Map<number, number>();
  for (const m of out.matchAll(/^\[ (\d+)s \] thds: \d+ tps: ([\d.]+)/gm)) tps.set(Number(m[1]), Number(m[2]));
  const steady = [...tps.entries()].filter(([s]) => results.every((r) => Math.abs(s - r.at) > 4)).map(([, v]) => v);
  const median = steady.sort((a, b) => a - b)[Math.floor(steady.length / 2)] ?? 0;
  process.stdout.write(`bench:db-migration: MariaDB 10.11 under sysbench oltp_read_write (4 connections, 4 x 20,000 rows), ${moves} moves h1 <-> h2 (diff), ${seconds} s\n`);
  process.stdout.write(`steady tps (median away from the moves): ${median.toFixed(0)}\n\n`);
  process.stdout.write('move  at (s)  route     downtime  checkpoint  transfer  restore  moved MiB  tps timeline (-3 s .. +12 s)\n');
  for (const [i, r] of results.entries()) {
    const s0 = Math.round(r.at);
    const line = Array.from({ length: 16 }, (_, k) => (tps.get(s0 - 3 + k) ?? 0).toFixed(0).padStart(5)).join('');
    if (r.result === undefined) {
      process.stdout.write(`${String(i + 1).padEnd(6)}${r.at.toFixed(1).padEnd(8)}FAILED: ${r.error}\n`);
      continue;
    }
    const t = r.result.timings;
    const mib = ((t.checkpointBytes + t.filesystemBytes) / 2 ** 20).toFixed(1);
    process.stdout.write(`${String(i + 1).padEnd(6)}${r.at.toFixed(1).padEnd(8)}${`${r.result.sourceHost}->${r.result.targetHost}`.padEnd(10)}${`${t.downtimeMs.toFixed(0)} ms`.padEnd(10)}${`${t.checkpointMs.toFixed(0)} ms`.padEnd(12)}${`${t.transferMs.toFixed(0)} ms`.padEnd(10)}${`${t.restoreMs.toFixed(0)} ms`.padEnd(9)}${mib.padEnd(11)}${line}\n`);
  }
  const transactions = Number(/transactions:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const errors = Number(/ignored errors:\s+(\d+)/.exec(out)?.[1] ?? -1);
  const reconnects = Number(/reconnects:\s+(\d+)/.exec(out)?.[1] ?? -1);
  const fatal = /FATAL|ALERT/.test(out);
  process.stdout.write(`\ntransactions ${transactions}, failed (ignored errors) ${errors}, reconnects ${reconnects}${fatal ? ', sysbench reported a FATAL error' : ''}\n`);
  const done = results.filter((r) => r.result !== undefined);
  const downs = done.map((r) => r.result!.timings.downtimeMs).sort((a, b) => a - b);
  process.stdout.write(`target migrations completed: ${done.length} of ${moves} vs all: ${done.length === moves ? 'MET' : 'MISSED'}\n`);
  process.stdout.write(`target failed transactions: ${errors} vs 0: ${errors === 0 && !fatal ? 'MET' : 'MISSED'}\n`);
  process.stdout.write(`target reconnects: ${reconnects} vs 0: ${reconnects === 0 ? 'MET' : 'MISSED'}\n`);
  process.stdout.write(`(median downtime ${downs.length === 0 ? '-' : `${downs[Math.floor(downs.length / 2)]!.toFixed(0)} ms`})\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:db-migration: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
