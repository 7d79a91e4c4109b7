/**
 * Greedy CPU placement shared by `cpu-greedy` and `cpu-greedy-multithread`.
 *
 * Each container's CPU demand is estimated from the window: on a host with spare CPU a
 * container gets what it asks for, so demand = what it used. On a saturated host the
 * containers at the top of the fair-share level may be throttled: their demand is taken
 * as what they could use alone (`cap`: one core for a single-threaded view, its thread
 * count for the multi-threaded view), bounded by their CPU limit. CPU time on a host that
 * nothing in the snapshot explains (other processes, another host sharing the cores) is
 * kept as immovable background load.
 *
 * A host delivers min(demand, cores) of CPU time, so moving a container of demand d from
 * an overloaded host s to a host t with room gains
 *   min(D_s − d, C_s) − C_s + min(D_t + d, C_t) − min(D_t, C_t).
 * The greedy step takes the best such move (ties: fewer containers on the target, more
 * room, then ids), applies it to a working copy, and repeats up to `maxMoves`. A move is
 * proposed only if its gain reaches `rewardThresholdCores`, the target's demand is below
 * `targetMaxUtil` of its cores (it has room) and the container fits in its free memory
 * (`memoryProblem`, when both figures are known). A host with an unknown core count, or
 * whose window is too thin, is neither a source nor a target. Every move strictly raises
 * Σ min(D, C), which is bounded: moves cannot cycle on the same figures (no ping-pong).
 */
import { z } from 'zod';
import { fitsTargetCpu } from '../safety/safety.ts';
import { byKeyThenId, coresKnown, fmt, hostCpuUsed, memoryProblem, type Annotation, type ClusterSnapshot, type ContainerSnapshot, type CpuKnownHost, type Move, type Plan } from '../model.ts';

export const greedyArgsSchema = z.strictObject({
  /** Smallest expected gain of a move, in cores of CPU time delivered (a move costs a second or so of downtime). */
  rewardThresholdCores: z.number().min(0).default(0.25),
  /** A host at or above this busy share counts as saturated (its top containers may be throttled). */
  saturationUtil: z.number().min(0).max(1).default(0.9),
  /** A host is a target only while its estimated demand is below this share of its cores. */
  targetMaxUtil: z.number().positive().max(1).default(1),
  /** A container needs this many samples in the window… */
  minSamples: z.number().int().min(0).default(3),
  /** …and at most this share of missing samples (Herd's published threshold: 0.02). */
  maxMissingRatio: z.number().min(0).max(1).default(0.02),
  /** Moves per plan (the safety layer caps further). */
  maxMoves: z.number().int().min(0).default(8),
});
export type GreedyArgs = z.infer<typeof greedyArgsSchema>;

export type DemandCap = (c: ContainerSnapshot) => number;

interface HostState {
  host: CpuKnownHost;
  /** Its window is full enough to trust as a source or target (a host seen only briefly may look idle, or overloaded). */
  known: boolean;
  /** Estimated demand in cores, background included. */
  demand: number;
  count: number;
  memoryFree: number | undefined;
  /** CPU in use on it as the window saw it, plus what this plan already sends there (what the last re-check looks at). */
  used: number;
}

interface Candidate {
  c: ContainerSnapshot;
  demand: number;
}

const TOP_SHARE = 0.9;

/** Why a container cannot be moved by any policy now, or undefined. */
export function ineligibility(c: ContainerSnapshot, args: WindowArgs, nowMs: number): { code: 'IN_FLIGHT' | 'HELD' | 'NOT_ENOUGH_SAMPLES'; message: string } | undefined {
  if (c.migrating) return { code: 'IN_FLIGHT', message: 'a migration of it is in flight' };
  if (c.heldUntilMs !== undefined && c.heldUntilMs > nowMs) return { code: 'HELD', message: `held by the safety layer for ${fmt((c.heldUntilMs - nowMs) / 1000, 0)} s more (cooldown or retry backoff)` };
  const thin = windowProblem(c, args, nowMs);
  return thin === undefined ? undefined : { code: 'NOT_ENOUGH_SAMPLES', message: thin };
}

type WindowArgs = { minSamples: number; maxMissingRatio: number };

/**
 * Why a host's or container's window is too thin to act on, or undefined. After a migration
 * on its host the window restarted, and a container created within the window has no samples
 * before: they are not missing, they are awaited.
 */
export function windowProblem(x: { sampleCount: number; missingRatio: number; windowRestartedAtMs?: number; createdAtMs?: number }, args: WindowArgs, nowMs?: number): string | undefined {
  const thin = x.sampleCount < args.minSamples || x.missingRatio > args.maxMissingRatio;
  if (thin && x.createdAtMs !== undefined && (x.windowRestartedAtMs === undefined || x.createdAtMs > x.windowRestartedAtMs)) {
    const ago = nowMs === undefined ? '' : ` ${fmt(Math.max(0, nowMs - x.createdAtMs) / 1000, 0)} s ago`;
    return `it was created${ago}, within the window: ${x.sampleCount} sample(s) since, waiting for a full window`;
  }
  if (thin && x.windowRestartedAtMs !== undefined) return `its window restarted after a migration on its host: ${x.sampleCount} sample(s) since, waiting for a full window`;
  if (x.sampleCount < args.minSamples) return `${x.sampleCount} sample(s) in the window, fewer than ${args.minSamples}`;
  if (x.missingRatio > args.maxMissingRatio) return `${fmt(x.missingRatio * 100, 1)} % of its samples missing (threshold ${fmt(args.maxMissingRatio * 100, 1)} %)`;
  return undefined;
}

export function planGreedy(policy: string, snapshot: ClusterSnapshot, args: GreedyArgs, cap: DemandCap): Plan {
  const annotations: Annotation[] = [];
  const plan = (moves: Move[]): Plan => ({ snapshotVersion: snapshot.version, policy, moves, annotations });
  // A host whose core count is unknown is neither a source nor a target.
  const online = snapshot.hosts.filter((h) => h.online).filter(coresKnown);
  if (online.length < 2) {
    annotations.push({ level: 'info', code: 'TOO_FEW_HOSTS', policy, message: `${online.length} online host(s) with a known core count: nothing to move between` });
    return plan([]);
  }
  const hosts = new Map<string, HostState>();
  const onHost = new Map<string, ContainerSnapshot[]>();
  for (const h of online) onHost.set(h.hostId, []);
  for (const c of snapshot.containers) onHost.get(c.hostId)?.push(c);

  const candidates = new Map<string, Candidate[]>();
  const notEnough: string[] = [];
  const held: string[] = [];
  const demandOf = new Map<string, number>();
  for (const h of online) {
    const list = onHost.get(h.hostId) ?? [];
    const used = list.reduce((s, c) => s + (c.cpuCores ?? 0), 0);
    const busy = hostCpuUsed(h, list);
    const background = Math.max(0, busy - used);
    const saturated = (h.cpuUtil ?? used / h.cores) >= args.saturationUtil;
    const topUse = list.reduce((m, c) => Math.max(m, c.cpuCores ?? 0), 0);
    let demand = background;
    const movable: Candidate[] = [];
    for (const c of list) {
      const used1 = c.cpuCores ?? 0;
      // A limit equal to the host's cores is no quota (the snapshot falls back to the host's size): a container
      // throttled by a small host could use more on a bigger one, so only a real quota bounds its demand.
      const limit = c.cpuLimitCores !== undefined && c.cpuLimitCores < h.cores ? c.cpuLimitCores : Number.POSITIVE_INFINITY;
      const throttled = saturated && used1 >= TOP_SHARE * topUse && used1 > 0;
      const d = throttled ? Math.min(limit, Math.max(used1, cap(c))) : used1;
      demand += d;
      demandOf.set(c.herdId, d);
      const why = ineligibility(c, args, snapshot.nowMs);
      if (why === undefined) movable.push({ c, demand: d });
      else if (why.code !== 'IN_FLIGHT') (why.code === 'HELD' ? held : notEnough).push(`${c.name} (${why.message})`);
    }
    movable.sort(byKeyThenId((x) => x.demand, (x) => x.c.herdId, true));
    candidates.set(h.hostId, movable);
    const memoryFree = h.memoryAvailableBytes;
    hosts.set(h.hostId, { host: h, known: windowProblem(h, args) === undefined, demand, count: list.length, memoryFree, used: busy });
  }
  // Migrations in flight: their containers' demand leaves the source and lands on the target now,
  // though the window still shows them where they were; it counts on the target whatever became
  // of the source (offline, unknown: as `arrivingCpu`).
  for (const f of snapshot.inFlight) {
    const c = snapshot.containers.find((x) => x.herdId === f.herdId);
    if (c === undefined || c.hostId === f.targetHost) continue; // not listed, or the window shows it on its target already
    const d = demandOf.get(f.herdId) ?? c.cpuCores ?? 0;
    const from = hosts.get(f.sourceHost);
    const to = hosts.get(f.targetHost);
    if (from !== undefined && c.hostId === f.sourceHost) from.demand -= d;
    if (to !== undefined) {
      to.demand += d;
      to.used += c.cpuCores ?? 0;
    }
  }
  for (const [code, list] of [['NOT_ENOUGH_SAMPLES', notEnough], ['HELD', held]] as const) {
    if (list.length > 0) annotations.push({ level: 'skip', code, policy, message: `${list.length} container(s) not considered: ${list.slice(0, 5).join('; ')}${list.length > 5 ? '; …' : ''}` });
  }

  const moves: Move[] = [];
  const moved = new Set<string>();
  for (let step = 0; step < args.maxMoves; step++) {
    const states = [...hosts.values()];
    const over = states.filter((s) => s.demand > s.host.cores + 1e-9);
    // A source's window must be full enough too: too few samples may show containers' CPU without the host's own figures.
    const overloaded = over.filter((s) => s.known).sort(byKeyThenId((s) => s.demand - s.host.cores, (s) => s.host.hostId, true));
    if (overloaded.length === 0) {
      if (step === 0 && over.length > 0) {
        annotations.push({ level: 'skip', code: 'NOT_ENOUGH_SAMPLES', policy, message: `${over.map((s) => `${s.host.hostId} demands ${fmt(s.demand)} of ${s.host.cores} core(s) but its window is too thin to act on (${windowProblem(s.host, args)})`).join('; ')}` });
      } else if (step === 0) {
        const top = states.sort(byKeyThenId((s) => s.demand / s.host.cores, (s) => s.host.hostId, true))[0];
        annotations.push({ level: 'info', code: 'BALANCED', policy, message: `no host's CPU demand exceeds its cores${top === undefined ? '' : ` (highest: ${top.host.hostId} at ${fmt(top.demand)} of ${top.host.cores} core(s))`}` });
      }
      break;
    }
    // The target with the most room (fewer containers, then id, on a tie).
    const targets = states.sort((a, b) => {
      const room = b.host.cores * args.targetMaxUtil - b.demand - (a.host.cores * args.targetMaxUtil - a.demand);
      if (Math.abs(room) > 1e-9) return room;
      return a.count - b.count || (a.host.hostId < b.host.hostId ? -1 : a.host.hostId > b.host.hostId ? 1 : 0);
    });
    let best: { cand: Candidate; from: HostState; to: HostState; gain: number } | undefined;
    let noRoom = 0;
    for (const from of overloaded) {
      for (const cand of candidates.get(from.host.hostId) ?? []) {
        if (moved.has(cand.c.herdId)) continue;
        const to = targets.find((t) => t !== from && t.known && t.host.draining !== true && t.demand < t.host.cores * args.targetMaxUtil - 1e-9 && memoryProblem(cand.c, t.host.hostId, t.memoryFree) === undefined && fitsTargetCpu(cand.c, t.used, t.host.cores));
        if (to === undefined) {
          noRoom++;
          continue;
        }
        const gain = Math.min(from.demand - cand.demand, from.host.cores) - Math.min(from.demand, from.host.cores) + Math.min(to.demand + cand.demand, to.host.cores) - Math.min(to.demand, to.host.cores);
        if (best === undefined || gain > best.gain + 1e-9) best = { cand, from, to, gain };
      }
    }
    if (best === undefined) {
      if (step === 0) {
        const unknown = states.filter((s) => !s.known).map((s) => s.host.hostId);
        const demands = overloaded.map((s) => `${s.host.hostId} demands ${fmt(s.demand)} of ${s.host.cores} core(s)`).join(', ');
        const why = noRoom === 0 ? 'none of its containers is eligible to move (each is migrating, held by the safety layer or has too few samples)' : `no other host has room for any of its ${noRoom} movable container(s)${unknown.length > 0 ? ` (not yet a target, too few samples in the window: ${unknown.join(', ')})` : ''}`;
        annotations.push({ level: 'skip', code: 'NO_TARGET_CAPACITY', policy, message: `${demands}; ${why}` });
      }
      break;
    }
    if (best.gain < args.rewardThresholdCores) {
      if (step === 0) annotations.push({ level: 'skip', code: 'BELOW_REWARD', policy, herdId: best.cand.c.herdId, message: `best move ${best.cand.c.name} ${best.from.host.hostId} -> ${best.to.host.hostId} gains ${fmt(best.gain)} core(s), below the reward threshold ${fmt(args.rewardThresholdCores)}` });
      break;
    }
    const { cand, from, to, gain } = best;
    moves.push({
      herdId: cand.c.herdId,
      name: cand.c.name,
      from: from.host.hostId,
      to: to.host.hostId,
      policy,
      reasonCode: 'CPU_OVERLOAD',
      reason: `${from.host.hostId} demands ${fmt(from.demand)} of ${from.host.cores} core(s); ${cand.c.name} (~${fmt(cand.demand)} cores) goes to ${to.host.hostId} (${fmt(to.demand)} of ${to.host.cores}): +${fmt(gain)} core(s) of CPU time expected`,
      expectedGain: gain,
    });
    moved.add(cand.c.herdId);
    from.demand -= cand.demand;
    from.count--;
    to.demand += cand.demand;
    to.used += cand.c.cpuCores ?? 0;
    to.count++;
    if (to.memoryFree !== undefined && cand.c.memoryBytes !== undefined) to.memoryFree -= cand.c.memoryBytes;
  }
  return plan(moves);
}
