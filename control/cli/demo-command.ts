/**
 * `herd demo`: Herd's main job on a running cluster (the lab by default). It piles CPU-bound
 * sysbench workloads (single- and multi-threaded) and two idle services on one host,
 * resumes the control loop and prints what the loop does about it: each live migration
 * with its reason and downtime, then evaluations that leave the placement alone (stable).
 */
import { localClock } from '../migrations/migration-client.ts';
import { Command, InvalidArgumentError } from 'commander';
import { decode } from '../../protocol/codec.ts';
import { HerdError } from '../../protocol/errors.ts';
import { newHerdId } from '../../protocol/ids.ts';
import { controlEventSchema, type ContainerSpec, type ControlEvent } from '../../protocol/messages.ts';
import { topics } from '../../protocol/topics.ts';
import { sysbenchOltpClient } from '../lab/debian-images.ts';
import { findControlStatus, askControl } from './control-commands.ts';
import { table, withBrokerOption, withSession } from './context.ts';

type DemoWorkload = Omit<ContainerSpec, 'herdId'> & { needsNetwork?: boolean; oltp?: boolean };

/** On the lab's 1-core hosts: four CPU-bound workloads of half a core each (4 x 0.5 on one core), two idle services; with --oltp also MariaDB and its sysbench client. */
export const DEMO_WORKLOADS: DemoWorkload[] = [
  { name: 'demo-cpu-1', image: 'herd/sysbench', cmd: ['sysbench', 'cpu', '--time=0', '--threads=1', 'run'], cpuLimitCores: 0.5 },
  { name: 'demo-cpu-2', image: 'herd/sysbench', cmd: ['sysbench', 'cpu', '--time=0', '--threads=1', 'run'], cpuLimitCores: 0.5 },
  { name: 'demo-mt-1', image: 'herd/sysbench', cmd: ['sysbench', 'cpu', '--time=0', '--threads=2', 'run'], cpuLimitCores: 0.5 },
  { name: 'demo-mt-2', image: 'herd/sysbench', cmd: ['sysbench', 'cpu', '--time=0', '--threads=2', 'run'], cpuLimitCores: 0.5 },
  { name: 'demo-counter', image: 'herd/busybox', cmd: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /data/count; sleep 1; done'] },
  { name: 'demo-web', image: 'herd/busybox', cmd: ['httpd', '-f', '-p', '80', '-h', '/etc'], network: { network: 'herd-lan', ip: '10.213.0.250' }, needsNetwork: true },
  // With --oltp: a real database under a real OLTP client (sysbench in a container, over herd-lan).
  { name: 'demo-db', image: 'herd/mariadb', network: { network: 'herd-lan', ip: '10.213.0.251' }, needsNetwork: true, oltp: true },
  { name: 'demo-oltp', image: 'herd/sysbench', cmd: sysbenchOltpClient('10.213.0.251', { reportSeconds: 10 }), cpuLimitCores: 0.3, network: { network: 'herd-lan', ip: '10.213.0.252' }, needsNetwork: true, oltp: true },
];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const stamp = (e: ControlEvent) => localClock(e.at).slice(0, 8);

export function registerDemoCommand(program: Command): void {
  withBrokerOption(program.command('demo'))
    .description('pile demo workloads on one host and watch the control loop rebalance them by live migrations')
    .option('--host <host>', 'the host to pile the workloads on (default: the first online host)')
    .option('--stable <n>', 'evaluations in a row without a move that count as stable', positiveInt, 3)
    .option('--timeout <seconds>', 'give up after this long', positiveInt, 420)
    .option('--no-network', 'skip the workloads on the herd-lan network (the HTTP server; with --oltp, the database)')
    .option('--oltp', 'also run MariaDB (herd/mariadb: "bin/herd lab image mariadb" first) under a sysbench oltp_read_write client container')
    .option('--control <nodeId>', 'control daemon node id (default: the one online)')
    .action(async (opts: { host?: string; stable: number; timeout: number; network: boolean; oltp?: boolean; control?: string }, cmd: Command) => {
      if (opts.oltp === true && !opts.network) throw new HerdError('BAD_USAGE', '--oltp needs the herd-lan network (its client reaches the database there): drop --no-network');
      await withSession(cmd, async (session) => {
        const online = session.view.hosts().filter((h) => h.state === 'online').map((h) => h.hostId);
        if (online.length < 2) throw new HerdError('HOST_OFFLINE', `the demo needs at least 2 online hosts, found ${online.length} (${online.join(', ') || 'none'}); run "bin/herd lab up" as root`);
        const pile = opts.host ?? (online[0] as string);
        session.view.requireOnline(pile);
        const control = await findControlStatus(session, opts.control);
        const nodeId = control.nodeId;
        const dashboard = control.dashboardUrl === undefined ? '' : ` Watch it live: ${control.dashboardUrl}`;
        const workloads = DEMO_WORKLOADS.filter((w) => (opts.network || w.needsNetwork !== true) && (opts.oltp === true || w.oltp !== true));

        // A fresh start: the demo's own containers from an earlier run go, then all start on one host.
        for (const c of session.view.containers().filter((c) => DEMO_WORKLOADS.some((w) => w.name === c.name))) {
          await session.rpc.request(c.hostId, 'container.remove', { container: c.herdId, force: true }, { timeoutMs: 60_000 });
        }
        for (const w of workloads) {
          const { needsNetwork: _n, oltp: _o, ...spec } = w;
          try {
            await session.rpc.request(pile, 'container.run', { ...spec, herdId: newHerdId() }, { timeoutMs: 60_000 });
          } catch (err) {
            if (w.image === 'herd/mariadb' && /no such image/i.test((err as Error).message)) throw new HerdError('BAD_USAGE', `${pile} has no herd/mariadb image: run "bin/herd lab image mariadb" first (--oltp)`, { cause: err });
            throw err;
          }
        }
        process.stdout.write(`started ${workloads.length} workloads on ${pile}: ${workloads.map((w) => w.name).join(', ')}\n`);
        process.stdout.write(`  4 CPU-bound sysbench containers of 0.5 core each (2 of them 2-threaded) share ${pile}'s one core${opts.oltp === true ? ', with MariaDB under a sysbench OLTP client' : ''}; the control loop (${nodeId}) decides what moves.${dashboard}\n`);

        const events: ControlEvent[] = [];
        let wake: (() => void) | undefined;
        const onMessage = (topic: string, payload: Buffer) => {
          if (topic !== topics.controlEvents(nodeId)) return;
          try {
            events.push(decode(controlEventSchema, payload, 'control event'));
            wake?.();
          } catch {
            // not ours to print
          }
        };
        session.client.on('message', onMessage);
        await session.client.subscribeAsync(topics.controlEvents(nodeId), { qos: 1 });
        await askControl(session, nodeId, 'control.resume', {});
        process.stdout.write(`control loop resumed; waiting for its evaluations (a window of samples first)\n`);

        const deadline = Date.now() + opts.timeout * 1000;
        const downtimes: number[] = [];
        let failed = 0;
        let moved = 0;
        let quiet = 0;
        let inFlight = 0;
        let seen = 0;
        while (Date.now() < deadline && !(moved > 0 && quiet >= opts.stable && inFlight === 0)) {
          if (seen === events.length) {
            await new Promise<void>((r) => {
              wake = r;
              setTimeout(r, 2000);
            });
            continue;
          }
          const e = events[seen++] as ControlEvent;
          if (e.kind === 'evaluation') {
            quiet = e.proposed === 0 ? quiet + 1 : 0;
            process.stdout.write(`${stamp(e)}  ${e.message}\n`);
          } else if (e.kind === 'move') {
            inFlight++;
            process.stdout.write(`${stamp(e)}  MOVE ${e.message}\n`);
          } else if (e.kind === 'migration') {
            inFlight = Math.max(0, inFlight - 1);
            if (e.outcome === 'done') {
              moved++;
              if (e.downtimeMs !== undefined) downtimes.push(e.downtimeMs);
            } else failed++;
            process.stdout.write(`${stamp(e)}  ${e.outcome === 'done' ? 'DONE' : 'FAILED'} ${e.message}\n`);
          } else if (e.kind === 'veto' || e.kind === 'trigger') {
            process.stdout.write(`${stamp(e)}  ${e.kind} [${e.code ?? ''}] ${e.message}\n`);
          } else if (e.kind === 'annotation' && quiet <= 1) {
            process.stdout.write(`${stamp(e)}  why: [${e.code ?? ''}] ${e.message}\n`);
          }
        }
        session.client.off('message', onMessage);

        await new Promise((r) => setTimeout(r, 1500)); // the hosts' retained lists catch up
        const placement = session.view.containers().filter((c) => workloads.some((w) => w.name === c.name) && c.state === 'running');
        process.stdout.write(`\n${table(['CONTAINER', 'HOST'], placement.map((c) => [c.name, c.hostId]))}\n`);
        const sorted = [...downtimes].sort((a, b) => a - b);
        const median = sorted.length === 0 ? 0 : (sorted[Math.floor(sorted.length / 2)] as number);
        const stable = moved > 0 && quiet >= opts.stable;
        process.stdout.write(`${moved} migration(s) by the control loop, ${failed} failed; median downtime ${median.toFixed(0)} ms; ${stable ? `stable: ${quiet} evaluations in a row without a move` : `not stable within ${opts.timeout} s`}. The loop keeps running: "bin/herd events -f", "bin/herd status", "bin/herd history".\n`);
        if (control.dashboardUrl !== undefined) process.stdout.write(`dashboard: ${control.dashboardUrl}\n`);
        if (!stable || failed > 0) process.exitCode = 1;
      });
    });
}
