/**
 * A deterministic, trace-driven simulator of a Herd cluster (see control/sim/README.md).
 *
 * Time is integer milliseconds and advances from event to event (a demand step, a
 * migration's freeze or end, a sample boundary, an evaluation): between two events nothing
 * changes, so every integral (CPU time, ops, disk ops) is exact, with no time step to pick.
 * On each host the running containers share the cores (and disk) fairly (fair-share.ts);
 * a container completes `opsPerCoreSecond` workload operations per second of CPU time it
 * gets.
 *
 * The control loop is the daemon's (control/loop/control-loop.ts): the monitors' samples
 * (hosts every `hostIntervalSeconds`, containers every `containerIntervalSeconds`) fill
 * the windows; evaluations run at `initialDelaySeconds`, then every
 * `evaluationIntervalSeconds`, and at once when the reactive trigger fires (a host at or
 * over `reactive.cpuUtil` in `reactive.consecutiveSamples` samples in a row, at most one
 * per `reactive.minIntervalSeconds`, not before a window has passed). Each builds the
 * ClusterSnapshot the daemon builds from the last window (as control/loop/windows.ts and
 * snapshot-builder.ts do), runs the policy chain (`runChain`, each policy's
 * `maxMissingRatio` defaulting to `missingSamplesThreshold`), the safety layer
 * (`applySafety`; the "without safety" runs pass rules with `enabled: false`) and, for
 * each move it lets through, `recheckMove` against a fresh snapshot before starting the
 * migration.
 *
 * A migration of cost (downtime D, total T) started at t: the container keeps running on
 * its source until t + T − D, is frozen (no work, no CPU, no samples) until t + T, then
 * runs on the target. It is `migrating` and listed in `inFlight` from t to t + T, on its
 * source host until t + T. When it ends the safety state records it
 * (`lastMovedAtMs[herdId] = t + T`). Migrations do not fail in the simulator.
 */
import type { ClusterSnapshot, ContainerSnapshot, HostSnapshot, MigrationInFlight, Move, Plan } from '../../policies/model.ts';
import type { PolicyName } from '../../policies/registry.ts';
import { chainFor, decide } from '../../policies/pipeline.ts';
import { emptySafetyState, recheckMove, safetyRulesSchema, type SafetyRules, type SafetyState } from '../../policies/safety/safety.ts';
import { shareHost } from './fair-share.ts';
import { migrationCost, type MigrationCost } from './migration-cost.ts';
import { type Scenario, type SimContainer, type SimHost } from './scenario.ts';

export interface SimOptions {
  /** The policy chain of the control loop (as configured: `missingSamplesThreshold` is filled in); absent: no control loop (the "control" run). */
  chain?: readonly { policy: string; args: Record<string, unknown> }[];
  /** Safety rules (default: the scenario's); `enabled: false` for the runs without safety. */
  safety?: SafetyRules;
  /** Start placement (herdId → hostId) instead of the scenario's hosts. */
  placement?: Readonly<Record<string, string>>;
  /** Replaces `runChain(snapshot, chain)` (to try a policy variant offline); needs `chain` set to run the loop. */
  plan?: (snapshot: ClusterSnapshot) => Plan;
  /** Also measure ops/s from this time on (`opsPerSecFrom`), e.g. after an unbalanced start has settled. */
  settleSeconds?: number;
  /** Called after each evaluation. */
  onEvaluation?: (e: EvaluationRecord) => void;
}

export interface EvaluationRecord {
  atSeconds: number;
  trigger: 'periodic' | 'reactive';
  snapshot: ClusterSnapshot;
  proposed: Move[];
  started: Move[];
  vetoes: { herdId?: string; code: string; message: string }[];
}

export interface MigrationRecord extends Pick<Move, 'herdId' | 'name' | 'from' | 'to' | 'policy' | 'reasonCode'> {
  startSeconds: number;
  downtimeSeconds: number;
  totalSeconds: number;
  /** Downtime × the ops/s the container had just before it froze (an estimate). */
  opsLost: number;
}

export interface SimResult {
  /** Mean over hosts of the busy share of their cores (0..1). */
  hostCpuUtil: number;
  /** Mean over containers of CPU time got / CPU time wanted (want = min(threads, limit, demand)), 0..1. */
  containerCpuUtil: number;
  /** Workload operations per second of the whole cluster, averaged over the run. */
  opsPerSec: number;
  totalOps: number;
  /** Ops/s over [settleSeconds, end] when `settleSeconds` was given. */
  opsPerSecFrom?: { fromSeconds: number; opsPerSec: number };
  migrations: number;
  opsLostToDowntime: number;
  migrationLog: MigrationRecord[];
  evaluations: number;
  /** Of which triggered by the reactive trigger. */
  reactiveEvaluations: number;
  /** Moves proposed by the policies, and held back by code (safety layer and last look). */
  proposedMoves: number;
  vetoes: Record<string, number>;
  /** Where each container is at the end. */
  finalPlacement: Record<string, string>;
}

interface Sample {
  endMs: number;
  /** Absent in the first sample of a container after a restore: a rate needs two readings. */
  cpu: number | undefined;
  disk: number | undefined;
}

interface HostSample {
  endMs: number;
  util: number;
  disk: number;
  active: number | undefined;
}

interface Migration {
  id: string;
  move: Move;
  from: string;
  to: string;
  startMs: number;
  freezeMs: number;
  endMs: number;
  frozen: boolean;
  downtimeMs: number;
  record: MigrationRecord;
}

interface CState {
  def: SimContainer;
  name: string;
  hostId: string;
  nextStep: number;
  cpuWant: number;
  diskWant: number;
  running: boolean;
  cpuUsed: number;
  diskUsed: number;
  mig: Migration | undefined;
  cost: MigrationCost;
  // the open sample interval
  sValid: boolean;
  sCpu: number;
  sDisk: number;
  samples: Sample[];
  // run totals
  usedInt: number;
  wantInt: number;
  opsInt: number;
}

interface HState {
  def: SimHost;
  busy: number;
  disk: number;
  sBusy: number;
  sDisk: number;
  samples: HostSample[];
  busyInt: number;
}

const ms = (seconds: number): number => Math.round(seconds * 1000);

/** The migration cost of a container: its override, else interpolated from the measured figures. */
export function containerMigrationCost(c: SimContainer): MigrationCost {
  if (c.migration !== undefined) return { downtimeMs: ms(c.migration.downtimeSeconds), totalMs: ms(Math.max(c.migration.totalSeconds, c.migration.downtimeSeconds)) };
  return migrationCost(c.memoryBytes, c.diffBytes);
}

/** Cores a container could use at a demand level: min(threads, limit, demand). */
export function cpuWantOf(c: SimContainer, cpuCores: number): number {
  return Math.min(c.threads, c.cpuLimitCores ?? Infinity, cpuCores);
}

export function simulate(scenario: Scenario, options: SimOptions = {}): SimResult {
  const ctl = scenario.control;
  const rules: SafetyRules = options.safety ?? safetyRulesSchema.parse(ctl.safety);
  const endMs = ms(scenario.durationSeconds);
  const windowMs = ms(ctl.windowSeconds);
  const hostSampleMs = Math.max(1, ms(ctl.hostIntervalSeconds));
  const contSampleMs = Math.max(1, ms(ctl.containerIntervalSeconds));
  const evalEveryMs = Math.max(1, ms(ctl.evaluationIntervalSeconds));
  const chain = options.chain === undefined ? undefined : chainFor(options.chain as { policy: PolicyName; args: Record<string, unknown> }[], { missingSamplesThreshold: ctl.missingSamplesThreshold, draining: false });
  const reactive = ctl.reactive;
  const overThreshold = new Map<string, number>();
  let lastReactiveMs = -Infinity;

  const hosts = new Map<string, HState>();
  for (const h of scenario.hosts) hosts.set(h.id, { def: h, busy: 0, disk: 0, sBusy: 0, sDisk: 0, samples: [], busyInt: 0 });
  const containers: CState[] = scenario.containers.map((def) => {
    const hostId = options.placement?.[def.herdId] ?? def.host;
    if (!hosts.has(hostId)) throw new Error(`container ${def.herdId}: no host ${hostId}`);
    return {
      def,
      name: def.name ?? def.herdId,
      hostId,
      nextStep: 0,
      cpuWant: 0,
      diskWant: 0,
      running: true,
      cpuUsed: 0,
      diskUsed: 0,
      mig: undefined,
      cost: containerMigrationCost(def),
      sValid: true,
      sCpu: 0,
      sDisk: 0,
      samples: [],
      usedInt: 0,
      wantInt: 0,
      opsInt: 0,
    };
  });
  const byId = new Map(containers.map((c) => [c.def.herdId, c]));

  let state: SafetyState = emptySafetyState();
  const migrations: Migration[] = [];
  const migrationLog: MigrationRecord[] = [];
  const vetoes: Record<string, number> = {};
  let evaluations = 0;
  let reactiveEvaluations = 0;
  let proposedMoves = 0;
  let migrationSeq = 0;
  let nextEvalMs = chain === undefined ? Infinity : ms(ctl.initialDelaySeconds);
  const settleMs = options.settleSeconds === undefined ? undefined : Math.min(endMs, ms(options.settleSeconds));
  let opsAtSettle = 0;

  const applyDemand = (c: CState, t: number): boolean => {
    let changed = false;
    const steps = c.def.demand;
    while (c.nextStep < steps.length && ms((steps[c.nextStep] as (typeof steps)[number]).atSeconds) <= t) {
      const s = steps[c.nextStep] as (typeof steps)[number];
      c.cpuWant = cpuWantOf(c.def, s.cpuCores);
      c.diskWant = s.diskOpsPerSec;
      c.nextStep++;
      changed = true;
    }
    return changed;
  };

  const reallocate = () => {
    for (const h of hosts.values()) {
      const here = containers.filter((c) => c.running && c.hostId === h.def.id);
      const share = shareHost(h.def.cores, h.def.diskOpsCapacity, { cpuWant: here.map((c) => c.cpuWant), diskWant: here.map((c) => c.diskWant) });
      here.forEach((c, i) => {
        c.cpuUsed = share.cpuUsed[i] ?? 0;
        c.diskUsed = share.diskUsed[i] ?? 0;
      });
      h.busy = share.busyCores;
      h.disk = share.diskOps;
    }
    for (const c of containers) {
      if (!c.running) {
        c.cpuUsed = 0;
        c.diskUsed = 0;
      }
    }
  };

  /** Applies the phases of a container's migration that are due at t; true if it changed what runs where. */
  const advanceMigration = (c: CState, t: number): boolean => {
    const m = c.mig;
    if (m === undefined) return false;
    let changed = false;
    if (!m.frozen && m.freezeMs <= t) {
      m.record.opsLost = (m.downtimeMs / 1000) * c.cpuUsed * c.def.opsPerCoreSecond;
      m.frozen = true;
      c.running = false;
      c.sValid = false;
      changed = true;
    }
    if (m.endMs <= t) {
      c.hostId = m.to;
      c.running = true;
      c.sValid = false;
      c.mig = undefined;
      migrations.splice(migrations.indexOf(m), 1);
      state.lastMovedAtMs[c.def.herdId] = m.endMs;
      changed = true;
    }
    return changed;
  };

  const snapshotAt = (t: number): ClusterSnapshot => buildSnapshot(scenario, t, windowMs, hostSampleMs, contSampleMs, hosts, containers, migrations);

  const evaluate = (t: number, trigger: 'periodic' | 'reactive'): boolean => {
    if (chain === undefined) return false;
    evaluations++;
    if (trigger === 'reactive') reactiveEvaluations++;
    // The same decision as the control daemon's (policies/pipeline.ts).
    const decision = options.plan === undefined ? decide(snapshotAt(t), chain, state, rules) : decide(snapshotAt(t), chain, state, rules, options.plan);
    const { snapshot, plan } = decision;
    proposedMoves += plan.moves.length;
    const safe = { plan: decision.allowed };
    state = decision.state;
    const record: EvaluationRecord = { atSeconds: t / 1000, trigger, snapshot, proposed: plan.moves, started: [], vetoes: [] };
    for (const a of safe.plan.annotations) {
      if (a.level !== 'veto') continue;
      vetoes[a.code] = (vetoes[a.code] ?? 0) + 1;
      record.vetoes.push({ ...(a.herdId === undefined ? {} : { herdId: a.herdId }), code: a.code, message: a.message });
    }
    let changed = false;
    for (const m of safe.plan.moves) {
      const fresh = snapshotAt(t);
      const why = recheckMove(m, fresh, state, decision.rules);
      if (why !== undefined) {
        vetoes[why.code] = (vetoes[why.code] ?? 0) + 1;
        record.vetoes.push({ herdId: m.herdId, code: why.code, message: why.message });
        continue;
      }
      const c = byId.get(m.herdId);
      if (c === undefined || !hosts.has(m.to)) continue; // recheckMove already refuses these
      const rec: MigrationRecord = { herdId: c.def.herdId, name: c.name, from: m.from, to: m.to, policy: m.policy, reasonCode: m.reasonCode, startSeconds: t / 1000, downtimeSeconds: c.cost.downtimeMs / 1000, totalSeconds: c.cost.totalMs / 1000, opsLost: 0 };
      const mig: Migration = { id: `sim-${++migrationSeq}`, move: m, from: m.from, to: m.to, startMs: t, freezeMs: t + c.cost.totalMs - c.cost.downtimeMs, endMs: t + c.cost.totalMs, frozen: false, downtimeMs: c.cost.downtimeMs, record: rec };
      c.mig = mig;
      migrations.push(mig);
      migrationLog.push(rec);
      record.started.push(m);
      if (advanceMigration(c, t)) changed = true;
    }
    options.onEvaluation?.(record);
    return changed;
  };

  // t = 0
  let t = 0;
  for (const c of containers) applyDemand(c, 0);
  reallocate();
  let nextHostSample = hostSampleMs;
  let nextContSample = contSampleMs;

  while (t < endMs) {
    let tn = Math.min(endMs, nextHostSample, nextContSample, nextEvalMs, settleMs !== undefined && settleMs > t ? settleMs : Infinity);
    for (const c of containers) {
      const step = c.def.demand[c.nextStep];
      if (step !== undefined) tn = Math.min(tn, ms(step.atSeconds));
      if (c.mig !== undefined) tn = Math.min(tn, c.mig.frozen ? c.mig.endMs : c.mig.freezeMs);
    }
    const dt = (tn - t) / 1000;
    if (dt > 0) {
      for (const c of containers) {
        c.sCpu += c.cpuUsed * dt;
        c.sDisk += c.diskUsed * dt;
        c.usedInt += c.cpuUsed * dt;
        c.wantInt += c.cpuWant * dt;
        c.opsInt += c.cpuUsed * c.def.opsPerCoreSecond * dt;
      }
      for (const h of hosts.values()) {
        h.sBusy += h.busy * dt;
        h.sDisk += h.disk * dt;
        h.busyInt += h.busy * dt;
      }
    }
    t = tn;
    if (t === settleMs) opsAtSettle = containers.reduce((sum, c) => sum + c.opsInt, 0);
    if (t >= endMs) break;

    // A: close the sample intervals ending now (they describe [t − period, t)).
    const contBoundary = t === nextContSample;
    const hostBoundary = t === nextHostSample;
    if (contBoundary && chain !== undefined) {
      const span = contSampleMs / 1000;
      // A running container is sampled; its rates need it to have run on this host since the last boundary.
      for (const c of containers) {
        if (c.running) c.samples.push({ endMs: t, cpu: c.sValid ? c.sCpu / span : undefined, disk: c.sValid ? c.sDisk / span : undefined });
        // Restored right now: the monitor sees the new container (a first reading, no rate yet).
        else if (c.mig !== undefined && c.mig.endMs === t) c.samples.push({ endMs: t, cpu: undefined, disk: undefined });
      }
    }
    let reactiveNow = false;
    if (hostBoundary) {
      const span = hostSampleMs / 1000;
      for (const h of hosts.values()) {
        const disk = h.sDisk / span;
        const util = Math.min(1, h.sBusy / span / h.def.cores);
        h.sBusy = 0;
        h.sDisk = 0;
        if (chain === undefined) continue; // no control loop: nobody reads the samples
        h.samples.push({ endMs: t, util, disk, active: h.def.diskOpsCapacity === undefined ? undefined : Math.min(1, disk / h.def.diskOpsCapacity) });
        // The control loop's reactive trigger, sample by sample (control/loop/control-loop.ts).
        if (!reactive.enabled) continue;
        const n = util >= reactive.cpuUtil ? (overThreshold.get(h.def.id) ?? 0) + 1 : 0;
        overThreshold.set(h.def.id, n);
        if (n < reactive.consecutiveSamples || t - lastReactiveMs < reactive.minIntervalSeconds * 1000 || t < windowMs) continue;
        lastReactiveMs = t;
        overThreshold.set(h.def.id, 0);
        reactiveNow = true;
      }
      nextHostSample += hostSampleMs;
    }
    // B: what changes now.
    let changed = false;
    for (const c of containers) {
      if (advanceMigration(c, t)) changed = true;
      if (applyDemand(c, t)) changed = true;
    }
    // C: open the next container sample interval.
    if (contBoundary) {
      for (const c of containers) {
        c.sValid = c.running;
        c.sCpu = 0;
        c.sDisk = 0;
      }
      nextContSample += contSampleMs;
    }
    if (changed) reallocate();
    // D: the control loop (a periodic and a reactive evaluation at the same time are one).
    if (t === nextEvalMs || reactiveNow) {
      if (evaluate(t, t === nextEvalMs ? 'periodic' : 'reactive')) reallocate();
      if (t === nextEvalMs) nextEvalMs += evalEveryMs;
      const keepFrom = t - windowMs - Math.max(hostSampleMs, contSampleMs);
      for (const c of containers) if (c.samples.length > 64 && (c.samples[0]?.endMs ?? 0) < keepFrom) c.samples = c.samples.filter((s) => s.endMs > keepFrom);
      for (const h of hosts.values()) if (h.samples.length > 64 && (h.samples[0]?.endMs ?? 0) < keepFrom) h.samples = h.samples.filter((s) => s.endMs > keepFrom);
    }
  }

  const seconds = endMs / 1000;
  const hostUtils = [...hosts.values()].map((h) => h.busyInt / (h.def.cores * seconds));
  const contUtils = containers.filter((c) => c.wantInt > 1e-12).map((c) => Math.min(1, c.usedInt / c.wantInt));
  const totalOps = containers.reduce((s, c) => s + c.opsInt, 0);
  const finalPlacement: Record<string, string> = {};
  for (const c of containers) finalPlacement[c.def.herdId] = c.mig === undefined ? c.hostId : c.mig.to;
  return {
    hostCpuUtil: mean(hostUtils),
    containerCpuUtil: contUtils.length === 0 ? 1 : mean(contUtils),
    opsPerSec: seconds > 0 ? totalOps / seconds : 0,
    totalOps,
    ...(settleMs === undefined ? {} : { opsPerSecFrom: { fromSeconds: settleMs / 1000, opsPerSec: endMs > settleMs ? (totalOps - opsAtSettle) / ((endMs - settleMs) / 1000) : 0 } }),
    migrations: migrationLog.length,
    opsLostToDowntime: migrationLog.reduce((s, m) => s + m.opsLost, 0),
    migrationLog,
    evaluations,
    reactiveEvaluations,
    proposedMoves,
    vetoes,
    finalPlacement,
  };
}

const mean = (xs: number[]): number => (xs.length === 0 ? 0 : xs.reduce((s, x) => s + x, 0) / xs.length);

/**
 * The snapshot the control daemon builds at `t` from the last window (control/loop/
 * windows.ts, snapshot-builder.ts): the samples of (t − window, t], counted per host and
 * per container (by herdId, whichever host sent them) against window / period − 1 expected
 * ones (the daemon's allowance for jitter); each figure is the mean (and max) of the
 * samples that carry it.
 * - host: cpuUtil / cpuUtilMax = busy share of its cores; diskOpsPerSec; diskActiveRatio
 *   = share of its disk capacity in use (only when the scenario gives a capacity);
 *   memoryAvailableBytes = its memory less its containers' and incoming migrations' (only
 *   when given); no PSI figures (see README).
 * - container: a running container is sampled every period; frozen by a migration it is
 *   not, and its first sample after the restore has no CPU or disk figure (a rate needs
 *   two readings of the new container). cpuLimitCores = its limit, else the host's cores
 *   (what the monitor reports); threadCount = its threads; one process; memoryBytes;
 *   migrating while a migration of it is in flight; listed on its source host until the
 *   migration ends.
 * Hosts are always online.
 */
function buildSnapshot(scenario: Scenario, t: number, windowMs: number, hostSampleMs: number, contSampleMs: number, hosts: Map<string, HState>, containers: CState[], migrations: Migration[]): ClusterSnapshot {
  const from = t - windowMs;
  const expectedHost = Math.max(1, Math.floor(windowMs / hostSampleMs) - 1);
  const expectedCont = Math.max(1, Math.floor(windowMs / contSampleMs) - 1);
  const hostSnaps: HostSnapshot[] = [...hosts.values()].map((h) => {
    const ss = h.samples.filter((s) => s.endMs > from && s.endMs <= t);
    const snap: HostSnapshot = { hostId: h.def.id, online: true, cores: h.def.cores, sampleCount: ss.length, missingRatio: Math.max(0, 1 - ss.length / expectedHost) };
    if (ss.length > 0) {
      snap.cpuUtil = clamp01(mean(ss.map((s) => s.util)));
      snap.cpuUtilMax = clamp01(Math.max(...ss.map((s) => s.util)));
      snap.diskOpsPerSec = mean(ss.map((s) => s.disk));
      if (h.def.diskOpsCapacity !== undefined) snap.diskActiveRatio = clamp01(mean(ss.map((s) => s.active ?? 0)));
    }
    if (h.def.memoryBytes !== undefined) {
      const used = containers.filter((c) => c.hostId === h.def.id || c.mig?.to === h.def.id).reduce((s, c) => s + c.def.memoryBytes, 0);
      snap.memoryAvailableBytes = Math.max(0, h.def.memoryBytes - used);
    }
    return snap;
  });
  const contSnaps: ContainerSnapshot[] = containers.map((c) => {
    const ss = c.samples.filter((s) => s.endMs > from && s.endMs <= t);
    const host = hosts.get(c.hostId) as HState;
    const snap: ContainerSnapshot = {
      herdId: c.def.herdId,
      name: c.name,
      hostId: c.hostId,
      cpuLimitCores: c.def.cpuLimitCores ?? host.def.cores,
      processCount: 1,
      threadCount: c.def.threads,
      memoryBytes: c.def.memoryBytes,
      sampleCount: ss.length,
      missingRatio: Math.max(0, 1 - ss.length / expectedCont),
      migrating: c.mig !== undefined,
    };
    const cpu = ss.flatMap((s) => (s.cpu === undefined ? [] : [s.cpu]));
    const disk = ss.flatMap((s) => (s.disk === undefined ? [] : [s.disk]));
    if (cpu.length > 0) {
      snap.cpuCores = mean(cpu);
      snap.cpuCoresMax = Math.max(...cpu);
    }
    if (disk.length > 0) snap.diskOpsPerSec = mean(disk);
    return snap;
  });
  const inFlight: MigrationInFlight[] = migrations.map((m) => ({ migrationId: m.id, herdId: m.move.herdId, sourceHost: m.from, targetHost: m.to, manual: false, startedAtMs: m.startMs }));
  return { version: `${scenario.name}@${t}`, nowMs: t, windowSeconds: windowMs / 1000, hosts: hostSnaps, containers: contSnaps, inFlight };
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));
