/**
 * `herd demo`: Herd's main job on a running cluster (the lab by default) — starts demo
 * workloads (a counter writing files, an HTTP server on the shared L2 network, a
 * sysbench CPU burner) and live-migrates them around the hosts, round after round,
 * printing each migration's downtime and a summary.
 */
import { Command, InvalidArgumentError } from 'commander';
import { HerdError } from '../../protocol/errors.ts';
import type { ContainerSpec } from '../../protocol/messages.ts';
import { newHerdId } from '../../protocol/ids.ts';
import { withBrokerOption, withSession } from './context.ts';
import { migrateOnce } from '../migrations/migration-client.ts';

const DEMO_WORKLOADS: (Omit<ContainerSpec, 'herdId'> & { needsNetwork?: boolean })[] = [
  { name: 'demo-counter', image: 'herd/busybox', cmd: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /data/count; sleep 1; done'] },
  { name: 'demo-web', image: 'herd/busybox', cmd: ['httpd', '-f', '-p', '80', '-h', '/etc'], network: { network: 'herd-lan', ip: '10.213.0.250' }, needsNetwork: true },
  { name: 'demo-cpu', image: 'herd/sysbench', cmd: ['sysbench', 'cpu', '--time=0', '--threads=1', 'run'], cpuLimitCores: 0.5 },
];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

export function registerDemoCommand(program: Command): void {
  withBrokerOption(program.command('demo'))
    .description('start demo workloads and live-migrate them between hosts, printing each downtime')
    .option('--rounds <n>', 'rounds of migrations (each moves every workload to the next host)', positiveInt, 3)
    .option('--interval <seconds>', 'pause between rounds', positiveInt, 3)
    .option('--no-network', 'skip the HTTP workload on the herd-lan network')
    .action(async (opts: { rounds: number; interval: number; network: boolean }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const hosts = session.view.hosts().filter((h) => h.state === 'online').map((h) => h.hostId);
        if (hosts.length < 2) throw new HerdError('HOST_OFFLINE', `the demo needs at least 2 online hosts, found ${hosts.length} (${hosts.join(', ') || 'none'}); run "bin/herd lab up" as root`);
        const workloads = DEMO_WORKLOADS.filter((w) => opts.network || w.needsNetwork !== true);
        for (const [i, w] of workloads.entries()) {
          const existing = session.view.containers().find((c) => c.name === w.name && c.state === 'running');
          if (existing !== undefined) {
            process.stdout.write(`${w.name} already runs on ${existing.hostId}\n`);
            continue;
          }
          const { needsNetwork: _n, ...spec } = w;
          const host = hosts[i % hosts.length] as string;
          await session.rpc.request(host, 'container.run', { ...spec, herdId: newHerdId() }, { timeoutMs: 60_000 });
          process.stdout.write(`started ${w.name} on ${host}\n`);
        }
        await new Promise((r) => setTimeout(r, 1500)); // let the retained container lists update
        const downtimes: number[] = [];
        let failures = 0;
        for (let round = 1; round <= opts.rounds; round++) {
          process.stdout.write(`-- round ${round}/${opts.rounds}\n`);
          for (const w of workloads) {
            const where = session.view.containers().find((c) => c.name === w.name)?.hostId;
            const to = hosts[(hosts.indexOf(where ?? hosts[0]!) + 1) % hosts.length] as string;
            try {
              const r = await migrateOnce(session, w.name, to, 'diff', () => undefined);
              downtimes.push(r.timings.downtimeMs);
              process.stdout.write(`${w.name.padEnd(13)} ${r.sourceHost} -> ${r.targetHost}  downtime ${r.timings.downtimeMs.toFixed(0)} ms  total ${r.timings.totalMs.toFixed(0)} ms  moved ${((r.timings.checkpointBytes + r.timings.filesystemBytes) / 2 ** 20).toFixed(2)} MiB\n`);
            } catch (err) {
              failures++;
              process.stdout.write(`${w.name.padEnd(13)} -> ${to}  FAILED: ${(err as Error).message}\n`);
            }
            await new Promise((r) => setTimeout(r, 700)); // let the retained container lists catch up
          }
          if (round < opts.rounds) await new Promise((r) => setTimeout(r, opts.interval * 1000));
        }
        const sorted = [...downtimes].sort((a, b) => a - b);
        const median = sorted.length === 0 ? 0 : (sorted[Math.floor(sorted.length / 2)] as number);
        process.stdout.write(`${downtimes.length} migration(s) done, ${failures} failed; median downtime ${median.toFixed(0)} ms. The workloads keep running: see "bin/herd containers".\n`);
        if (failures > 0) process.exitCode = 1;
      });
    });
}
