/**
 * Fault injection on the lab (real Docker, CRIU, broker, SSH): a counter container is
 * migrated back and forth between h1 and h2 while one fault is injected at a random point
 * of each migration. After each, the round checks that the container runs exactly once,
 * that its counter never went back (an observer reads it from the running copy's log every
 * 200 ms throughout), and that no migration record, checkpoint, stray container, runc job,
 * tar process or restore temp dir is left. Used by the CI round (test/e2e/exactly-once.test.ts)
 * and by `npm run soak`.
 *
 * Faults (FAULT_KINDS): kill -9 or graceful stop of the source's or the target's compute
 * daemon, then start it again; kill -9 of the source's or the target's dockerd, then start
 * it again (live-restore keeps containers running); the target's link down for 2-6 s; the
 * broker killed (in the lab it is embedded in the control daemon: kill -9) or the control
 * daemon restarted gracefully; the restore's reply dropped or delayed 30 s; the target's
 * disk full where the checkpoint is received. Nothing is simulated: each fault happens to
 * the real process, link or file system (compute/migration/faults.ts for the last three).
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import Docker from 'dockerode';
import type { LabLayout } from '../../control/lab/layout.ts';
import { mulberry32 } from '../../control/sim/generate.ts';
import { demuxDockerStream, leftovers, placements } from '../support/containers.ts';
import { herd, herdOk, HERD_BIN } from '../support/herd-cli.ts';
import { dockerOf, setFaults } from '../support/lab.ts';

export const FAULT_KINDS = [
  'kill-source-compute',
  'kill-target-compute',
  'stop-source-compute',
  'stop-target-compute',
  'kill-source-dockerd',
  'kill-target-dockerd',
  'link-down',
  'kill-broker',
  'restart-control',
  'drop-restore-reply',
  'delay-restore-reply',
  'target-disk-full',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Where in the migration a fault strikes: when the CLI prints that phase's start, plus a random delay. */
const POINTS = ['accepted', 'prepare', 'checkpoint', 'transfer', 'restore', 'cleanup'] as const;

export const COUNTER_NAME = 'xo-counter';
const COUNTER_CMD = ['sh', '-c', 'head -c 4000000 /dev/urandom > /data/ballast; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'];

export interface FaultResult {
  index: number;
  kind: FaultKind;
  point: string;
  delayMs: number;
  from: string;
  to: string;
  migrationId?: string;
  /** How the migration ended, from its source's record: done, rolled-back, restarted, in-doubt... */
  outcome: string;
  /** True when it ended through resolution (the restore's outcome was unknown at first). */
  resolved: boolean;
  cliExit: number | null;
  running: number;
  counterWentBack?: string;
  duplicateSeen: boolean;
  leftovers: string[];
  settleMs: number;
  problems: string[];
}

export interface RoundTotals {
  seed: number;
  injected: Record<string, number>;
  completed: number;
  rolledBack: number;
  rolledForward: number;
  restarted: number;
  lost: number;
  duplicated: number;
  counterWentBack: number;
  withLeftovers: number;
  failures: FaultResult[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pidOf(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

async function waitUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(probe()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Reads the counter's latest value from every running copy's log, all the time. */
class CounterObserver {
  private timer: NodeJS.Timeout | undefined;
  max = 0;
  maxHost = '';
  wentBack: string | undefined;
  duplicateSeen = false;
  private busy = false;

  constructor(private readonly layout: LabLayout) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), 200);
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    while (this.busy) await sleep(20);
  }

  resetFlags(): void {
    this.wentBack = undefined;
    this.duplicateSeen = false;
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const running: { host: string; value: number }[] = [];
      for (const host of this.layout.hosts) {
        const docker = new Docker({ socketPath: host.dockerSocket, timeout: 2000 });
        const rows = await docker.listContainers({ filters: { name: [`^/${COUNTER_NAME}$`] } }).catch(() => []);
        for (const row of rows) {
          if (row.State !== 'running') continue;
          const raw = await docker.getContainer(row.Id).logs({ stdout: true, tail: 3 }).catch(() => undefined);
          const lines = raw === undefined ? [] : demuxDockerStream(raw as unknown as Buffer).trim().split('\n');
          const value = Number(lines[lines.length - 1]);
          if (Number.isFinite(value) && value > 0) running.push({ host: host.id, value });
        }
      }
      if (running.length > 1) this.duplicateSeen = true;
      for (const r of running) {
        if (r.value < this.max && this.wentBack === undefined) this.wentBack = `${r.host} at ${r.value} after ${this.maxHost} at ${this.max}`;
        if (r.value > this.max) [this.max, this.maxHost] = [r.value, r.host];
      }
    } finally {
      this.busy = false;
    }
  }
}

/** Processes a migration may leave behind: runc checkpoint/restore jobs, tar senders and receivers. */
export function strayProcesses(): string[] {
  const found: string[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    const line = args.join(' ');
    if (/(^|\/)runc .*\b(checkpoint|restore)\b/.test(line) || /^tar -[cx] --numeric-owner/.test(line)) found.push(`pid ${name}: ${line.slice(0, 120)}`);
  }
  return found;
}

export function restoreTempDirs(): string[] {
  return readdirSync(tmpdir()).filter((n) => n.startsWith('ctrd-checkpoint') || n.startsWith('herd-criu-'));
}

/** Hosts' in-flight migration records (tombstones do not count). */
function activeRecords(layout: LabLayout): string[] {
  return layout.hosts.flatMap((h) => {
    const dir = `${h.computeStateDir}/migrations`;
    return existsSync(dir) ? readdirSync(dir).filter((n) => /\.(source|target)\.json$/.test(n)).map((n) => `${h.id}: ${n}`) : [];
  });
}

async function labUp(): Promise<void> {
  await herdOk(['lab', 'up'], { timeoutMs: 300_000 });
}

async function ensureCounter(layout: LabLayout): Promise<void> {
  const where = await placements(layout, COUNTER_NAME);
  if (where.filter((p) => p.running).length === 1) return;
  for (const p of where) await dockerOf(layout, p.hostId).getContainer(p.dockerId).remove({ force: true });
  await herdOk(['run', '--host', 'h1', '--name', COUNTER_NAME, 'herd/busybox', ...COUNTER_CMD]);
  await waitUntil('the counter to count', 30_000, async () => ((await placements(layout, COUNTER_NAME)).some((p) => p.running) ? true : undefined));
  await sleep(1500);
}

interface Injection {
  /** Called when the trigger point is reached. */
  strike(): Promise<void>;
  /** Puts things back (start what was stopped, bring the link up, clear fault files). */
  heal(): Promise<void>;
}

function injection(layout: LabLayout, kind: FaultKind, from: string, to: string, random: () => number): { before?: () => Promise<void>; injection: Injection } {
  const host = (id: string) => layout.hosts.find((h) => h.id === id)!;
  const kill = (file: string, signal: NodeJS.Signals) => {
    const pid = pidOf(file);
    if (pid !== undefined) process.kill(pid, signal);
    return pid;
  };
  const waitGone = async (pid: number | undefined, timeoutMs: number) => {
    if (pid === undefined) return;
    await waitUntil(`pid ${pid} to exit`, timeoutMs, () => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    });
  };
  const downFor = () => 500 + Math.floor(random() * 2500);
  switch (kind) {
    case 'kill-source-compute':
    case 'kill-target-compute':
    case 'stop-source-compute':
    case 'stop-target-compute': {
      const h = host(kind.includes('source') ? from : to);
      const signal = kind.startsWith('kill') ? 'SIGKILL' : 'SIGTERM';
      let pid: number | undefined;
      return {
        injection: {
          strike: async () => {
            pid = kill(h.computePidFile, signal);
          },
          heal: async () => {
            await waitGone(pid, 200_000); // a graceful stop first lets its migration end
            await sleep(downFor());
            await labUp();
          },
        },
      };
    }
    case 'kill-source-dockerd':
    case 'kill-target-dockerd': {
      const h = host(kind.includes('source') ? from : to);
      let pid: number | undefined;
      return {
        injection: {
          strike: async () => {
            pid = kill(h.dockerPidFile, 'SIGKILL');
          },
          heal: async () => {
            await waitGone(pid, 30_000);
            await sleep(downFor());
            await labUp();
          },
        },
      };
    }
    case 'link-down': {
      const veth = host(to).vethRoot;
      return {
        before: () => setFaults(layout, from, ['slow-transfer']),
        injection: {
          strike: async () => {
            execFileSync('ip', ['link', 'set', veth, 'down']);
          },
          heal: async () => {
            await sleep(2000 + Math.floor(random() * 4000));
            execFileSync('ip', ['link', 'set', veth, 'up']);
          },
        },
      };
    }
    case 'kill-broker':
    case 'restart-control': {
      let pid: number | undefined;
      return {
        injection: {
          strike: async () => {
            pid = kill(layout.controlPidFile, kind === 'kill-broker' ? 'SIGKILL' : 'SIGTERM');
          },
          heal: async () => {
            await waitGone(pid, 30_000);
            await sleep(downFor());
            await labUp();
          },
        },
      };
    }
    case 'drop-restore-reply':
    case 'delay-restore-reply':
    case 'target-disk-full': {
      const fault = kind === 'target-disk-full' ? 'disk-full' : kind;
      return {
        before: () => setFaults(layout, to, [fault]),
        injection: { strike: async () => undefined, heal: async () => undefined },
      };
    }
  }
}

/** One fault: migrate the counter to the other host, strike at the chosen point, heal, settle, check. */
export async function injectOne(layout: LabLayout, index: number, kind: FaultKind, random: () => number, observer: CounterObserver, log: (line: string) => void): Promise<FaultResult> {
  await ensureCounter(layout);
  const where = (await placements(layout, COUNTER_NAME)).find((p) => p.running)!;
  const from = where.hostId;
  const to = from === 'h1' ? 'h2' : 'h1';
  const presetPoint = kind === 'drop-restore-reply' || kind === 'delay-restore-reply' || kind === 'target-disk-full' ? 'accepted' : kind === 'link-down' ? 'transfer' : undefined;
  const point = presetPoint ?? POINTS[Math.floor(random() * POINTS.length)]!;
  const delayMs = Math.floor(random() * 400);
  const { before, injection: inj } = injection(layout, kind, from, to, random);
  // Half of the faults strike a slow transfer: a wider window for the transfer and restore points.
  if (before !== undefined) await before();
  else if (random() < 0.5) await setFaults(layout, from, ['slow-transfer']);
  observer.resetFlags();
  const started = Date.now();
  const cli = spawn(HERD_BIN, ['migrate', COUNTER_NAME, '--to', to], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
  cli.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let cliExit: number | null | undefined;
  const exited = new Promise<number | null>((res) => cli.on('close', (code) => res((cliExit = code))));
  const trigger = new RegExp(`\\b${point} +started`);
  await waitUntil(`phase ${point}`, 120_000, () => (trigger.test(out) || cliExit !== undefined ? true : undefined), 20).catch(() => undefined);
  await sleep(delayMs);
  const migrationId = /id (m-[\w-]+)/.exec(out)?.[1];
  log(`#${index} ${kind} at ${point}+${delayMs}ms ${from}->${to} ${migrationId ?? ''}${cliExit !== undefined ? ' (migration had already ended)' : ''}`);
  await inj.strike();
  await inj.heal();
  const problems: string[] = [];
  // The CLI must come back with an answer (reconnecting and asking for the outcome when its reply was lost).
  const cliTimeout = sleep(300_000).then(() => 'timeout' as const);
  if ((await Promise.race([exited, cliTimeout])) === 'timeout') {
    problems.push('herd migrate was still waiting 5 min after the fault');
    cli.kill('SIGKILL');
  }
  // Settle: no in-flight record anywhere and one running copy (the reconcilers may take a pass or two).
  await waitUntil('the migration to settle', 240_000, async () => {
    if (activeRecords(layout).length > 0) return undefined;
    const running = (await placements(layout, COUNTER_NAME)).filter((p) => p.running);
    return running.length === 1 ? true : undefined;
  }, 500).catch((err: Error) => problems.push(`${err.message}: records ${activeRecords(layout).join(', ') || 'none'}`));
  await setFaults(layout, from, []);
  await setFaults(layout, to, []);
  // Let the observer see the settled copy count on, and the restore temp-dir sweep run.
  await sleep(4000);
  await observer.sample();
  const settleMs = Date.now() - started;
  const copies = await placements(layout, COUNTER_NAME);
  const running = copies.filter((p) => p.running).length;
  if (running !== 1) problems.push(`${running} running copies: ${copies.map((c) => `${c.hostId}:${c.running ? 'running' : 'stopped'}`).join(', ')}`);
  if (observer.duplicateSeen) problems.push('two running copies were seen at once');
  if (observer.wentBack !== undefined) problems.push(`the counter went back: ${observer.wentBack}`);
  const left = await leftovers(layout);
  const strays = strayProcesses();
  const temps = await waitUntil('restore temp dirs to go', 30_000, () => (restoreTempDirs().length === 0 ? [] : undefined), 1000).catch(() => restoreTempDirs());
  const allLeft = [...left, ...strays, ...temps.map((t) => `temp dir ${t}`)];
  if (allLeft.length > 0) problems.push(`left behind: ${allLeft.join('; ')}`);
  let outcome = 'unknown';
  let resolved = /resolve +started/.test(out);
  if (migrationId !== undefined) {
    const status = await herd(['migrate', '--status', migrationId, '--json']);
    try {
      const rows = JSON.parse(status.stdout) as { role?: string; state: string; detail?: string }[];
      const source = rows.find((r) => r.role === 'source');
      outcome = source?.state ?? rows.map((r) => r.state).join('/');
      if (/resolved|reconciler/.test(source?.detail ?? '')) resolved = true;
    } catch {
      outcome = `no status (${status.stderr.trim().slice(0, 100)})`;
    }
  } else {
    outcome = 'not started';
  }
  const result: FaultResult = {
    index,
    kind,
    point,
    delayMs,
    from,
    to,
    ...(migrationId === undefined ? {} : { migrationId }),
    outcome,
    resolved,
    cliExit: cliExit ?? null,
    running,
    ...(observer.wentBack === undefined ? {} : { counterWentBack: observer.wentBack }),
    duplicateSeen: observer.duplicateSeen,
    leftovers: allLeft,
    settleMs,
    problems,
  };
  log(`   -> ${outcome}${resolved ? ' (resolved)' : ''}, cli exit ${cliExit ?? 'none'}, ${running} running, ${(settleMs / 1000).toFixed(1)} s${problems.length > 0 ? `; PROBLEMS: ${problems.join(' | ')}` : ''}`);
  return result;
}

/** Runs `count` faults of mixed kinds chosen with `seed` (every kind once before any twice). */
export async function runFaultRound(layout: LabLayout, options: { seed: number; count: number; log?: (line: string) => void }): Promise<RoundTotals> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const random = mulberry32(options.seed); // seeded: a failing round can be repeated
  log(`fault round: seed ${options.seed}, ${options.count} faults`);
  const totals: RoundTotals = { seed: options.seed, injected: {}, completed: 0, rolledBack: 0, rolledForward: 0, restarted: 0, lost: 0, duplicated: 0, counterWentBack: 0, withLeftovers: 0, failures: [] };
  const observer = new CounterObserver(layout);
  await ensureCounter(layout);
  observer.start();
  try {
    let bag: FaultKind[] = [];
    for (let i = 1; i <= options.count; i++) {
      if (bag.length === 0) bag = [...FAULT_KINDS].sort(() => random() - 0.5);
      const kind = bag.pop()!;
      totals.injected[kind] = (totals.injected[kind] ?? 0) + 1;
      const r = await injectOne(layout, i, kind, random, observer, log);
      if (r.outcome === 'done') {
        if (r.resolved) totals.rolledForward++;
        else totals.completed++;
      } else if (r.outcome === 'rolled-back') totals.rolledBack++;
      else if (r.outcome === 'restarted') totals.restarted++;
      if (r.running === 0) totals.lost++;
      if (r.running > 1 || r.duplicateSeen) totals.duplicated++;
      if (r.counterWentBack !== undefined) totals.counterWentBack++;
      if (r.leftovers.length > 0) totals.withLeftovers++;
      if (r.problems.length > 0) totals.failures.push(r);
      // A run that lost or duplicated the counter starts the next fault from a clean one.
      if (r.running !== 1) await ensureCounter(layout);
    }
  } finally {
    await observer.stop();
  }
  return totals;
}

export function formatTotals(t: RoundTotals): string {
  const kinds = Object.entries(t.injected)
    .sort()
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return [
    `seed ${t.seed}; faults injected: ${Object.values(t.injected).reduce((a, b) => a + b, 0)} (${kinds})`,
    `migrations completed ${t.completed}, rolled back ${t.rolledBack}, rolled forward ${t.rolledForward}, restarted (state lost) ${t.restarted}`,
    `containers lost ${t.lost}, duplicated ${t.duplicated}, counter went back ${t.counterWentBack}, faults with leftovers ${t.withLeftovers}, faults with any problem ${t.failures.length}`,
  ].join('\n');
}
