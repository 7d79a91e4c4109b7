/**
 * The safety layer: ONE place that limits what any policy's plan may do (like the
 * descheduler's eviction limits). Pure: plan, snapshot and state in; the moves allowed,
 * a veto annotation for each move held back, and the next state out.
 *
 * Rules: a cooldown per container after a move; no retry soon after a failed or
 * rolled-back move; hysteresis (a source host must have been out of balance for N
 * consecutive evaluations); caps on moves per evaluation and on migrations in flight in
 * total and per host (manual migrations count); nothing that is already migrating.
 * `recheckMove` repeats the checks that can change against fresh state just before a move
 * is sent (the executor's last look, like Nomad's plan applier).
 */
import { z } from 'zod';
import { acceptsContainers, fmt, memoryProblem, type Annotation, type ClusterSnapshot, type ContainerSnapshot, type HostSnapshot, type Move, type Plan } from '../model.ts';

export const safetyRulesSchema = z.strictObject({
  /** Off only for comparisons (the simulator's "without safety" column). */
  enabled: z.boolean().default(true),
  /** A container is not moved again within this many seconds of its last move. */
  cooldownSeconds: z.number().min(0).default(300),
  /** …nor within this many seconds of a failed or rolled-back move of it. */
  retryBackoffSeconds: z.number().min(0).default(900),
  /** A host must be a policy's source in this many consecutive evaluations before a move off it is sent. */
  hysteresisEvaluations: z.number().int().min(1).default(1),
  maxMovesPerEvaluation: z.number().int().min(0).default(2),
  maxInFlightTotal: z.number().int().min(1).default(4),
  /** Migrations a host may take part in at once (as source or target). */
  maxInFlightPerHost: z.number().int().min(1).default(2),
});
export type SafetyRules = z.infer<typeof safetyRulesSchema>;

/** What the safety layer remembers between evaluations (rebuilt from the history after a restart). */
export interface SafetyState {
  /** herdId → when its last move ended (ms). */
  lastMovedAtMs: Record<string, number>;
  /** herdId → when its last failed or rolled-back move ended (ms). */
  lastFailedAtMs: Record<string, number>;
  /** hostId → consecutive evaluations in which it was a source of proposed moves. */
  imbalanceStreak: Record<string, number>;
}

/** The last re-check refuses a target whose CPU use plus the container's would pass its cores by more than this. */
export const TARGET_FULL_RATIO = 1.05;

/** Would the last re-check let container `c` onto a target of `cores` that uses `usedCores` (what is arriving included)? Policies never propose what it refuses. */
export function fitsTargetCpu(c: ContainerSnapshot, usedCores: number, cores: number): boolean {
  return c.cpuCores === undefined || usedCores + c.cpuCores <= cores * TARGET_FULL_RATIO;
}

/** Migrations in flight per host, as source or target (manual ones count). */
function inFlightPerHost(snapshot: ClusterSnapshot): Map<string, number> {
  const perHost = new Map<string, number>();
  for (const f of snapshot.inFlight) {
    perHost.set(f.sourceHost, (perHost.get(f.sourceHost) ?? 0) + 1);
    perHost.set(f.targetHost, (perHost.get(f.targetHost) ?? 0) + 1);
  }
  return perHost;
}

/** The in-flight caps for one more move, with `inFlight` in total and `perHost`: undefined when it fits, else why not. */
function capVeto(m: Move, inFlight: number, perHost: ReadonlyMap<string, number>, rules: SafetyRules): { code: string; message: string } | undefined {
  if (inFlight >= rules.maxInFlightTotal) return { code: 'CAP_IN_FLIGHT', message: `${inFlight} migration(s) in flight, at most ${rules.maxInFlightTotal}` };
  const busy = [m.from, m.to].find((h) => (perHost.get(h) ?? 0) >= rules.maxInFlightPerHost);
  if (busy !== undefined) return { code: 'CAP_PER_HOST', message: `${busy} already takes part in ${perHost.get(busy)} migration(s), at most ${rules.maxInFlightPerHost}` };
  return undefined;
}

export function emptySafetyState(): SafetyState {
  return { lastMovedAtMs: {}, lastFailedAtMs: {}, imbalanceStreak: {} };
}

/**
 * The snapshot a policy should see: containers the safety layer would hold back anyway
 * (cooldown, retry backoff) carry `heldUntilMs`, so the policy plans with the others
 * instead of proposing a move that is then vetoed (and blocking, e.g., a fallback policy).
 */
export function withHolds(snapshot: ClusterSnapshot, state: SafetyState, rules: SafetyRules): ClusterSnapshot {
  if (!rules.enabled) return snapshot;
  let held = false;
  const containers = snapshot.containers.map((c) => {
    const moved = state.lastMovedAtMs[c.herdId];
    const failed = state.lastFailedAtMs[c.herdId];
    const until = Math.max(moved === undefined ? 0 : moved + rules.cooldownSeconds * 1000, failed === undefined ? 0 : failed + rules.retryBackoffSeconds * 1000);
    if (until <= snapshot.nowMs) return c;
    held = true;
    return { ...c, heldUntilMs: until };
  });
  return held ? { ...snapshot, containers } : snapshot;
}

export interface SafetyResult {
  plan: Plan;
  state: SafetyState;
}

export function applySafety(plan: Plan, snapshot: ClusterSnapshot, state: SafetyState, rules: SafetyRules): SafetyResult {
  const streak: Record<string, number> = {};
  for (const m of plan.moves) streak[m.from] = (state.imbalanceStreak[m.from] ?? 0) + 1;
  const next: SafetyState = { lastMovedAtMs: { ...state.lastMovedAtMs }, lastFailedAtMs: { ...state.lastFailedAtMs }, imbalanceStreak: streak };
  if (!rules.enabled) return { plan, state: next };

  const annotations: Annotation[] = [...plan.annotations];
  const accepted: Move[] = [];
  const perHost = inFlightPerHost(snapshot);
  let inFlight = snapshot.inFlight.length;
  const veto = (m: Move, code: string, message: string) => annotations.push({ level: 'veto', code, policy: m.policy, herdId: m.herdId, hostId: m.from, message: `${m.name} ${m.from} -> ${m.to} held back: ${message}` });
  for (const m of plan.moves) {
    const why = containerVeto(m, snapshot, next, rules);
    if (why !== undefined) {
      veto(m, why.code, why.message);
      continue;
    }
    const seen = streak[m.from] ?? 0;
    if (seen < rules.hysteresisEvaluations) {
      veto(m, 'HYSTERESIS', `${m.from} out of balance in ${seen} consecutive evaluation(s), ${rules.hysteresisEvaluations} needed`);
      continue;
    }
    if (accepted.length >= rules.maxMovesPerEvaluation) {
      veto(m, 'CAP_PER_EVALUATION', `at most ${rules.maxMovesPerEvaluation} move(s) per evaluation`);
      continue;
    }
    const cap = capVeto(m, inFlight, perHost, rules);
    if (cap !== undefined) {
      veto(m, cap.code, cap.message);
      continue;
    }
    accepted.push(m);
    inFlight++;
    perHost.set(m.from, (perHost.get(m.from) ?? 0) + 1);
    perHost.set(m.to, (perHost.get(m.to) ?? 0) + 1);
  }
  return { plan: { ...plan, moves: accepted, annotations }, state: next };
}

function containerVeto(m: Move, snapshot: ClusterSnapshot, state: SafetyState, rules: SafetyRules): { code: string; message: string } | undefined {
  if (snapshot.inFlight.some((f) => f.herdId === m.herdId)) return { code: 'IN_FLIGHT', message: 'a migration of it is in flight' };
  const moved = state.lastMovedAtMs[m.herdId];
  if (moved !== undefined && snapshot.nowMs - moved < rules.cooldownSeconds * 1000) {
    return { code: 'COOLDOWN', message: `moved ${fmt((snapshot.nowMs - moved) / 1000, 0)} s ago, cooldown ${rules.cooldownSeconds} s` };
  }
  const failed = state.lastFailedAtMs[m.herdId];
  if (failed !== undefined && snapshot.nowMs - failed < rules.retryBackoffSeconds * 1000) {
    return { code: 'RECENT_FAILURE', message: `a move of it failed ${fmt((snapshot.nowMs - failed) / 1000, 0)} s ago, no retry for ${rules.retryBackoffSeconds} s` };
  }
  return undefined;
}

/**
 * The last look before a move is sent, against fresh state: undefined when it still
 * holds, else why not. Checks what can change between planning and sending.
 */
export function recheckMove(m: Move, fresh: ClusterSnapshot, state: SafetyState, rules: SafetyRules): { code: string; message: string } | undefined {
  const c = fresh.containers.find((x) => x.herdId === m.herdId);
  if (c === undefined) return { code: 'GONE', message: `${m.name} is no longer listed on any online host` };
  if (c.hostId !== m.from) return { code: 'MOVED', message: `${m.name} now runs on ${c.hostId}, not ${m.from}` };
  if (c.migrating) return { code: 'IN_FLIGHT', message: `${m.name} is migrating` };
  for (const id of [m.from, m.to]) {
    const h = fresh.hosts.find((x) => x.hostId === id);
    if (h === undefined || !h.online) return { code: 'HOST_OFFLINE', message: `host ${id} is offline` };
  }
  const target = fresh.hosts.find((x) => x.hostId === m.to) as HostSnapshot; // found online just above
  // Drained since the plan (`herd drain`): it takes no container.
  if (!acceptsContainers(target)) return { code: 'HOST_DRAINING', message: `host ${m.to} is being drained: it takes no containers` };
  if (rules.enabled) {
    const why = containerVeto(m, fresh, state, rules) ?? capVeto(m, fresh.inFlight.length, inFlightPerHost(fresh), rules);
    if (why !== undefined) return why;
  }
  const memory = memoryProblem(c, m.to, target.memoryAvailableBytes);
  if (memory !== undefined) return { code: 'NOT_ENOUGH_MEMORY', message: memory };
  if (target.cpuUtil !== undefined && target.cores !== undefined && c.cpuCores !== undefined) {
    // What the window saw, plus what is already on its way there (not in the window yet).
    const arriving = fresh.inFlight.filter((f) => f.targetHost === m.to).reduce((s, f) => s + (fresh.containers.find((x) => x.herdId === f.herdId)?.cpuCores ?? 0), 0);
    const used = target.cpuUtil * target.cores + arriving;
    if (!fitsTargetCpu(c, used, target.cores)) return { code: 'TARGET_FULL', message: `${m.to} now uses ${fmt(used)} of ${target.cores} core(s)${arriving > 0 ? ` (with ${fmt(arriving)} arriving)` : ''}, no room for ~${fmt(c.cpuCores)} more` };
  }
  return undefined;
}
