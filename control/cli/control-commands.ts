/**
 * Operator commands of the control loop: `herd plan`, `herd status`, `herd events`,
 * `herd history`, `herd drain`, `herd control pause|resume|evaluate`. Each talks to the
 * control daemon through its command topic (found by its retained status), prints a table
 * or `--json`. `herd plan --snapshot FILE` works offline on a saved snapshot.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { decode, describeIssues } from '../../protocol/codec.ts';
import { HerdError } from '../../protocol/errors.ts';
import { controlEventSchema, controlStatusSchema, MAX_EVENTS_LIMIT, MAX_HISTORY_LIMIT, type ControlEvent, type ControlStatus, type CommandArgsInput, type CommandType } from '../../protocol/messages.ts';
import { parseTopic, topics } from '../../protocol/topics.ts';
import { clusterSnapshotSchema, type ClusterSnapshot, type Plan } from '../../policies/model.ts';
import { POLICY_NAMES, type PolicyName } from '../../policies/registry.ts';
import { chainFor, configuredStep, decide, loopStep } from '../../policies/pipeline.ts';
import { emptySafetyState } from '../../policies/safety/safety.ts';
import type { MigrationRecord } from '../loop/history-store.ts';
import { loadConfig } from '../../protocol/config.ts';
import { loopSectionSchema, resolveControlConfigFiles } from '../config.ts';
import { localClock } from '../migrations/migration-client.ts';
import { brokerUrl, checkOutputFile, printJson, table, withBrokerOption, withSession, writeOutputFile, type Session } from './context.ts';

const CONTROL_HELP = 'control daemon node id (default: the one online)';



function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** A --limit parser: 1 to `max` (what the control daemon returns at most). */
export function limitOption(max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`must be an integer from 1 to ${max}`);
    return n;
  };
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of seconds');
  return n;
}

/** The control daemon to talk to: --control, else the only one whose retained status says online. */
/** The node id of the control daemon to ask: `wanted`, or the only one online. */
export async function findControl(session: Session, wanted: string | undefined): Promise<string> {
  return (await findControlStatus(session, wanted)).nodeId;
}

/** The retained status of the control daemon to ask (with its dashboard's URL). */
export async function findControlStatus(session: Session, wanted: string | undefined): Promise<ControlStatus> {
  const statuses = new Map<string, ControlStatus>();
  const onMessage = (topic: string, payload: Buffer) => {
    const parsed = parseTopic(topic);
    if (parsed?.kind !== 'controlStatus' || payload.length === 0) return;
    try {
      statuses.set(parsed.id, decode(controlStatusSchema, payload, 'control status'));
    } catch {
      // not ours to judge
    }
  };
  session.client.on('message', onMessage);
  await session.client.subscribeAsync(topics.allControlStatus, { qos: 1 });
  await new Promise((r) => setTimeout(r, 300));
  session.client.off('message', onMessage);
  await session.client.unsubscribeAsync(topics.allControlStatus).catch(() => undefined);
  const online = [...statuses.values()].filter((s) => s.state === 'online');
  if (wanted !== undefined) {
    const s = statuses.get(wanted);
    if (s === undefined) throw new HerdError('UNKNOWN_HOST', `no control daemon "${wanted}" has reported (known: ${[...statuses.keys()].join(', ') || 'none'})`);
    if (s.state !== 'online') throw new HerdError('HOST_OFFLINE', `control daemon "${wanted}" is offline since ${s.since}`);
    return s;
  }
  if (online.length === 0) throw new HerdError('HOST_OFFLINE', 'no control daemon is online: start one (herd control, or herd lab up)');
  if (online.length > 1) throw new HerdError('BAD_USAGE', `${online.length} control daemons are online (${online.map((s) => s.nodeId).join(', ')}): choose one with --control`);
  return online[0] as ControlStatus;
}

export async function askControl<R, T extends CommandType>(session: Session, nodeId: string, type: T, args: CommandArgsInput<T>, timeoutMs = 60_000): Promise<R> {
  return session.rpc.request<R, T>(nodeId, type, args, { topic: topics.controlCommands(nodeId), timeoutMs });
}

function withControl(cmd: Command): Command {
  return withBrokerOption(cmd).option('--control <nodeId>', CONTROL_HELP);
}

type ControlOpts = { control?: string; json?: boolean };

const pct = (v: number | undefined) => (v === undefined ? '-' : `${(v * 100).toFixed(0)} %`);
const num = (v: number | undefined, d = 2) => (v === undefined ? '-' : v.toFixed(d));

export function renderPlan(plan: Plan, allowed?: Plan): string {
  const lines = [`policy ${plan.policy} on snapshot ${plan.snapshotVersion}: ${plan.moves.length} move(s) proposed${allowed === undefined ? '' : `, ${allowed.moves.length} allowed by the safety layer`}`];
  for (const m of plan.moves) {
    const held = allowed !== undefined && !allowed.moves.some((a) => a.herdId === m.herdId);
    lines.push(`  ${held ? 'HELD ' : 'MOVE '} ${m.name} ${m.from} -> ${m.to}  [${m.reasonCode}] ${m.reason}`);
  }
  const notes = (allowed ?? plan).annotations;
  if (notes.length > 0) lines.push('why:');
  for (const a of notes) lines.push(`  ${a.level.padEnd(5)} [${a.code}]${a.policy === undefined ? '' : ` ${a.policy}:`} ${a.message}`);
  return `${lines.join('\n')}\n`;
}

export function renderSnapshot(s: ClusterSnapshot): string {
  const hosts = table(
    ['HOST', 'STATE', 'CORES', 'CPU', 'CPU MAX', 'DISK OPS/S', 'DISK ACTIVE', 'CPU PSI', 'SAMPLES', 'CONTAINERS'],
    s.hosts.map((h) => [h.hostId, h.online ? (h.draining === true ? 'draining' : 'online') : 'offline', h.cores === undefined ? '-' : String(h.cores), pct(h.cpuUtil), pct(h.cpuUtilMax), num(h.diskOpsPerSec, 0), pct(h.diskActiveRatio), h.cpuPressurePct === undefined ? '-' : `${h.cpuPressurePct.toFixed(0)} %`, String(h.sampleCount), String(s.containers.filter((c) => c.hostId === h.hostId).length)]),
  );
  const containers = table(
    ['CONTAINER', 'HOST', 'CPU CORES', 'LIMIT', 'THREADS', 'DISK OPS/S', 'SAMPLES', 'MISSING', 'MIGRATING'],
    [...s.containers].sort((a, b) => a.hostId.localeCompare(b.hostId) || a.name.localeCompare(b.name)).map((c) => [c.name, c.hostId, num(c.cpuCores), num(c.cpuLimitCores), c.threadCount === undefined ? '-' : String(c.threadCount), num(c.diskOpsPerSec, 0), String(c.sampleCount), pct(c.missingRatio), c.migrating ? 'yes' : '']),
  );
  return `${hosts}\n\n${containers}\n`;
}

/** One line per event; the time is local (HH:MM:SS.mmm), as the dashboard shows it (--json keeps the ISO UTC time). */
export function describeControlEvent(e: ControlEvent): string {
  return `${localClock(e.at)}  ${e.kind.padEnd(10)} ${e.code === undefined ? '' : `[${e.code}] `}${e.message}`;
}

/** An ISO time as local date and time with its offset ("2026-11-28 07:00:00 +01:00"): unambiguous wherever it is read. */
export function localDateTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const offset = -d.getTimezoneOffset();
  const sign = offset < 0 ? '-' : '+';
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${sign}${p(Math.floor(Math.abs(offset) / 60))}:${p(Math.abs(offset) % 60)}`;
}

/** How `herd status --watch` and `herd events -f` name a lost broker. */
function brokerLostMessage(url: string): string {
  return `lost the MQTT broker ${url}`;
}

function readSnapshotFile(file: string): ClusterSnapshot {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `cannot read snapshot ${file}: ${(err as Error).message}`, { cause: err });
  }
  // `herd plan --json` output holds the snapshot under "snapshot": take either.
  const candidate = json !== null && typeof json === 'object' && 'snapshot' in json ? (json as { snapshot: unknown }).snapshot : json;
  const r = clusterSnapshotSchema.safeParse(candidate);
  if (!r.success) throw new HerdError('BAD_CONFIG', `snapshot ${file} is not a valid cluster snapshot: ${describeIssues(r.error.issues)}`);
  return r.data;
}

export function registerControlCommands(program: Command, control: Command): void {
  withControl(program.command('plan'))
    .description('what the control loop would move now and why (or why nothing moves), without acting')
    .addOption(new Option('--policy <name>', "one policy instead of the configured chain (with its arguments there when the chain has it, such as forecast-greedy's model)").choices(POLICY_NAMES))
    .option('--snapshot <file>', 'plan offline on a saved snapshot (JSON; e.g. from --save or --json)')
    .option('-c, --config <file>', 'with --snapshot: take the policy chain from this control config (default: the default chain)')
    .option('--save <file>', 'also save the snapshot the control daemon planned on (not with --snapshot)')
    .option('--json', 'print { snapshot, plan, allowed } as JSON')
    .action(async (opts: ControlOpts & { policy?: PolicyName; snapshot?: string; save?: string; config?: string }, cmd: Command) => {
      // Said, not ignored: an operator who asked for either would otherwise believe it was done.
      if (opts.snapshot !== undefined && opts.save !== undefined) throw new HerdError('BAD_USAGE', '--save saves the snapshot the control daemon planned on; with --snapshot there is none (the plan is made on the file given): drop one of them');
      if (opts.snapshot === undefined && opts.config !== undefined) throw new HerdError('BAD_USAGE', '-c/--config takes the policy chain for --snapshot only; without it the control daemon plans with its own config: add --snapshot FILE or drop -c');
      if (opts.snapshot !== undefined) {
        // The loop's decision on a saved snapshot: the same chain, thresholds and safety rules (with no history).
        const snapshot = readSnapshotFile(opts.snapshot);
        // Only the loop: section counts offline (the broker's rules are the daemon's business).
        const loop = loadConfig(loopSectionSchema, { ...(opts.config === undefined ? {} : { file: opts.config }), what: 'control config', resolveFiles: resolveControlConfigFiles }).loop;
        const options = { missingSamplesThreshold: loop.missingSamplesThreshold, draining: snapshot.hosts.some((h) => h.draining === true) };
        // One policy: with its arguments in the config's chain (forecast-greedy's model), else its defaults.
        const chain = opts.policy !== undefined ? [loopStep(configuredStep(loop.policies, opts.policy), loop.missingSamplesThreshold)] : chainFor(loop.policies, options);
        const d = decide(snapshot, chain, emptySafetyState(), loop.safety);
        if (opts.json === true) return printJson({ snapshot, plan: d.plan, allowed: d.allowed });
        process.stdout.write(renderPlan(d.plan, d.allowed));
        return;
      }
      if (opts.save !== undefined) checkOutputFile(opts.save, '--save');
      await withSession(cmd, async (session) => {
        const nodeId = await findControl(session, opts.control);
        const r = await askControl<{ snapshot: ClusterSnapshot; plan: Plan; allowed: Plan }, 'control.plan'>(session, nodeId, 'control.plan', opts.policy === undefined ? {} : { policy: opts.policy });
        if (opts.save !== undefined) writeOutputFile(opts.save, `${JSON.stringify(r.snapshot, null, 2)}\n`, '--save');
        if (opts.json === true) return printJson(r);
        process.stdout.write(renderPlan(r.plan, r.allowed));
      });
    });

  withControl(program.command('status'))
    .description('the control loop, hosts with their current metrics, containers with placement, CPU and disk')
    .option('--json', 'print JSON (with --watch: one object per line and refresh)')
    .option('-w, --watch [seconds]', 'refresh every N seconds (default 2) until interrupted; on a terminal the screen is redrawn', positiveNumber)
    .option('--count <n>', 'with --watch: stop after n refreshes', positiveInt)
    .action(async (opts: ControlOpts & { watch?: number | true; count?: number }, cmd: Command) => {
      if (opts.count !== undefined && opts.watch === undefined) throw new HerdError('BAD_USAGE', '--count needs --watch');
      const everyMs = opts.watch === undefined ? undefined : (opts.watch === true ? 2 : opts.watch) * 1000;
      const redraw = everyMs !== undefined && opts.json !== true && process.stdout.isTTY === true;
      await withSession(
        cmd,
        async (session) => {
          const nodeId = await findControl(session, opts.control);
          /** Whether the broker or the daemon was found away in the previous round (said once per outage). */
          let away = false;
          for (let round = 1; ; round++) {
            try {
              // Watching outlives a broker restart (the session reconnects): a round while it is
              // away says so on stderr and the next one tries again; one-shot status fails.
              if (everyMs !== undefined && !session.client.connected) throw new HerdError('BROKER_UNAVAILABLE', `${brokerLostMessage(brokerUrl(cmd))}: reconnecting`);
              const status = await askControl<Record<string, unknown> & { mode: string; paused: boolean; draining: string[]; nextEvaluationAt?: string; lastEvaluationAt?: string; inFlight: unknown[]; policies: string[] }, 'control.status'>(session, nodeId, 'control.status', {});
              const { snapshot } = await askControl<{ snapshot: ClusterSnapshot }, 'control.plan'>(session, nodeId, 'control.plan', {});
              away = false;
              if (opts.json === true) {
                const value = { control: { nodeId, ...status }, snapshot };
                if (everyMs === undefined) printJson(value);
                else process.stdout.write(`${JSON.stringify({ at: new Date().toISOString(), ...value })}\n`);
              } else {
                const state = status.paused ? `paused${typeof status.pausedReason === 'string' ? ` (${status.pausedReason})` : ''}` : status.mode === 'recommend' ? 'recommend-only' : 'acting';
                const text = `control ${nodeId}: ${state}; policies ${status.policies.join(' > ')}; ${status.inFlight.length} migration(s) in flight${status.draining.length > 0 ? `; draining ${status.draining.join(', ')}` : ''}; last evaluation ${status.lastEvaluationAt ?? 'none yet'}, next ${status.nextEvaluationAt ?? '-'}\n\n${renderSnapshot(snapshot)}`;
                // A terminal is redrawn in place; a pipe or file gets each refresh after a dated separator.
                if (redraw) process.stdout.write(`\x1b[H\x1b[2J${text}\n(every ${everyMs / 1000} s; Ctrl-C to stop)\n`);
                else process.stdout.write(everyMs === undefined ? text : `--- ${new Date().toISOString()}\n${text}`);
              }
            } catch (err) {
              // Only "no answer" (broker or daemon away) is worth waiting out; the last round of --count reports it as the exit.
              if (everyMs === undefined || !(err instanceof HerdError && (err.code === 'BROKER_UNAVAILABLE' || err.code === 'TIMEOUT')) || round === opts.count) throw err;
              if (!away) process.stderr.write(`herd: ${new Date().toISOString()} [${(err as HerdError).code}] ${(err as HerdError).message}; trying again every ${everyMs / 1000} s (Ctrl-C to stop)\n`);
              away = true;
            }
            if (everyMs === undefined || round === opts.count) return;
            await new Promise((r) => setTimeout(r, everyMs));
          }
        },
        { reconnect: everyMs !== undefined },
      );
    });

  withControl(program.command('events'))
    .description('decisions, annotations and migrations of the control loop (-f: as they happen)')
    .option('-f, --follow', 'keep printing new events until interrupted')
    .option('--limit <n>', `recent events to print first (at most ${MAX_EVENTS_LIMIT}: what the daemon keeps)`, limitOption(MAX_EVENTS_LIMIT), 50)
    .option('--json', 'one JSON object per line')
    .action(async (opts: ControlOpts & { follow?: boolean; limit: number }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const nodeId = await findControl(session, opts.control);
        const print = (e: ControlEvent) => process.stdout.write(opts.json === true ? `${JSON.stringify(e)}\n` : `${describeControlEvent(e)}\n`);
        const seen = new Set<string>();
        const key = (e: ControlEvent) => `${e.at}|${e.kind}|${e.message}`;
        const live: ControlEvent[] = [];
        let replayed = false;
        const onMessage = (topic: string, payload: Buffer) => {
          if (topic !== topics.controlEvents(nodeId)) return;
          try {
            const e = decode(controlEventSchema, payload, 'control event');
            if (!replayed) live.push(e);
            else if (!seen.has(key(e))) print(e);
          } catch {
            // a malformed event is not ours to print
          }
        };
        if (opts.follow === true) {
          session.client.on('message', onMessage);
          await session.client.subscribeAsync(topics.controlEvents(nodeId), { qos: 1 });
        }
        const { events } = await askControl<{ events: ControlEvent[] }, 'control.events'>(session, nodeId, 'control.events', { limit: opts.limit });
        for (const e of events) {
          seen.add(key(e));
          print(e);
        }
        if (opts.follow !== true) return;
        replayed = true;
        for (const e of live) if (!seen.has(key(e))) print(e);
        // Only a signal ends following with success. The session does not reconnect: a lost
        // broker ends it with an error, or a script would take the silence for "no more events".
        const ended = await new Promise<'signal' | 'closed'>((resolve) => {
          const onSignal = () => done('signal');
          const onClose = () => done('closed');
          const done = (how: 'signal' | 'closed') => {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
            session.client.off('close', onClose);
            resolve(how);
          };
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          session.client.once('close', onClose);
        });
        session.client.off('message', onMessage);
        if (ended === 'closed') throw new HerdError('BROKER_UNAVAILABLE', `${brokerLostMessage(brokerUrl(cmd))}: no more events from control ${nodeId}; run herd events -f again once it is back (events meanwhile: herd events --limit N)`);
      });
    });

  withControl(program.command('history'))
    .description('past migrations (the loop\'s and manual ones) with outcome, reason and timings')
    .option('--limit <n>', `how many (newest; at most ${MAX_HISTORY_LIMIT})`, limitOption(MAX_HISTORY_LIMIT), 50)
    .option('--container <name>', 'only this container (name or Herd id)')
    .option('--json', 'print JSON')
    .action(async (opts: ControlOpts & { limit: number; container?: string }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const nodeId = await findControl(session, opts.control);
        const { records, truncated } = await askControl<{ records: MigrationRecord[]; truncated?: boolean }, 'control.history'>(session, nodeId, 'control.history', { limit: opts.limit, ...(opts.container === undefined ? {} : { container: opts.container }) });
        // The daemon cuts a reply that would exceed the broker's message size (the newest records stay).
        if (truncated === true) process.stderr.write(`herd: only the newest ${records.length} of the ${opts.limit} record(s) asked fit in one reply (the broker's message size); ask fewer with --limit, or one container with --container\n`);
        if (opts.json === true) return printJson(records);
        const ms = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(0)} ms`);
        process.stdout.write(
          `${table(
            ['STARTED', 'CONTAINER', 'FROM', 'TO', 'OUTCOME', 'DOWNTIME', 'TOTAL', 'BY', 'REASON'],
            records.map((r) => [localDateTime(r.startedAt), r.name, r.from, r.to, r.outcome ?? 'in flight', ms(r.timings?.downtimeMs), ms(r.timings?.totalMs), r.manual ? 'manual' : (r.policy ?? 'loop'), r.error === undefined ? (r.reason ?? '') : `[${r.error.code}] ${r.error.message}`]),
          )}\n`,
        );
      });
    });

  withControl(program.command('drain'))
    .description('evacuate a host for maintenance: its containers leave (within the safety caps), none arrive')
    .argument('<host>', 'compute host')
    .option('--cancel', 'end the drain: the host takes containers again')
    .option('--json', 'print JSON')
    .action(async (host: string, opts: ControlOpts & { cancel?: boolean }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const nodeId = await findControl(session, opts.control);
        const r = await askControl<{ draining: string[] }, 'control.drain'>(session, nodeId, 'control.drain', { host, ...(opts.cancel === true ? { cancel: true } : {}) });
        if (opts.json === true) return printJson(r);
        process.stdout.write(opts.cancel === true ? `${host} takes containers again; draining: ${r.draining.join(', ') || 'none'}\n` : `draining ${host}: follow with "herd events -f"; draining: ${r.draining.join(', ')}\n`);
      });
    });

  const simple = (name: 'pause' | 'resume' | 'evaluate', description: string) =>
    withControl(control.command(name)).description(description).option('--json', 'print JSON');
  simple('pause', 'stop sending moves (evaluations go on and report what they would do)')
    .option('--reason <text>', 'why (shown in status and events)')
    .action(async (opts: ControlOpts & { reason?: string }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const nodeId = await findControl(session, opts.control);
        const r = await askControl<unknown, 'control.pause'>(session, nodeId, 'control.pause', opts.reason === undefined ? {} : { reason: opts.reason });
        if (opts.json === true) return printJson(r);
        process.stdout.write(`control ${nodeId} paused\n`);
      });
    });
  simple('resume', 'send moves again').action(async (opts: ControlOpts, cmd: Command) => {
    await withSession(cmd, async (session) => {
      const nodeId = await findControl(session, opts.control);
      const r = await askControl<unknown, 'control.resume'>(session, nodeId, 'control.resume', {});
      if (opts.json === true) return printJson(r);
      process.stdout.write(`control ${nodeId} resumed\n`);
    });
  });
  simple('evaluate', 'run an evaluation now (acts unless paused or recommend-only)').action(async (opts: ControlOpts, cmd: Command) => {
    await withSession(cmd, async (session) => {
      const nodeId = await findControl(session, opts.control);
      const r = await askControl<{ evaluationId: string; policy: string; proposed: number; sent: number; allowed: unknown[]; annotations: { level: string; code: string; message: string }[] }, 'control.evaluate'>(session, nodeId, 'control.evaluate', {});
      if (opts.json === true) return printJson(r);
      process.stdout.write(`${r.evaluationId}: ${r.policy} proposed ${r.proposed}, ${r.allowed.length} allowed, ${r.sent} sent\n${r.annotations.map((a) => `  ${a.level.padEnd(5)} [${a.code}] ${a.message}`).join('\n')}\n`);
    });
  });
}
