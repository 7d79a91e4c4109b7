/**
 * `oltp-disk`: Herd's published OLTP disk policy. Candidates are containers in order of
 * disk operations (highest first); the target is the online host with the fewest disk
 * operations. A candidate moves only if
 *   (a) it has enough samples in the window,
 *   (b) min-vs-max host disk ops reach `diskOpsRewardThreshold`: (max − min) / max,
 *   (c) the busiest host's disk-active share reaches `diskActiveThreshold`,
 *   (d) min-vs-max disk activity reaches `diskActiveRewardThreshold`: (max − min) / max,
 *   (e) its own disk ops reach `baselineThreshold` × `diskOpsBaseline`,
 *   (f) the target is not its host,
 * and (beyond the published policy) (g) the target has CPU room and free memory for it, so
 * that a database is never moved next to a CPU-bound container, and (h) it is on the busiest
 * host and moving it narrows the gap between the busiest and the quietest host by at
 * least `minGapReduction` (else a lone database just swaps two hosts, back and forth). Otherwise the next candidate is
 * tried; if none qualifies, the plan of `fallback` (cpu-greedy-multithread) is used.
 */
import { z } from 'zod';
import { acceptsContainers, arrivingCpu, byKeyThenId, coresKnown, fmt, hostCpuUsed, memoryProblem, type Annotation, type ClusterSnapshot, type CpuKnownHost, type HostSnapshot, type PolicyDefinition, type Plan } from '../model.ts';
import { greedyArgsSchema, ineligibility, planGreedy, windowProblem } from '../cpu-greedy/greedy.ts';
import { threadCap } from '../cpu-greedy-multithread/policy.ts';

export const oltpDiskArgsSchema = z.strictObject({
  diskOpsBaseline: z.number().positive().default(8000),
  baselineThreshold: z.number().min(0).default(0.005),
  diskOpsRewardThreshold: z.number().min(0).max(1).default(0.35),
  diskActiveThreshold: z.number().min(0).max(1).default(0.15),
  diskActiveRewardThreshold: z.number().min(0).max(1).default(0.15),
  minSamples: z.number().int().min(0).default(3),
  maxMissingRatio: z.number().min(0).max(1).default(0.02),
  /** Share of the target's cores its CPU use may reach with the candidate added (condition g). */
  targetMaxUtil: z.number().positive().max(1).default(1),
  /**
   * Beyond the published policy (h): the candidate must be on the busiest host and moving it must narrow the
   * gap between the busiest and the quietest host's disk ops by at least this share. 0 turns (h) off (the
   * published policy, which moves a lone database back and forth between two hosts: each move just swaps them).
   */
  minGapReduction: z.number().min(0).max(1).default(0.1),
  /** What to plan when no candidate qualifies. */
  fallback: z.enum(['cpu-greedy-multithread', 'none']).default('cpu-greedy-multithread'),
  /** Arguments of the fallback policy; its window thresholds are oltp-disk's own (`minSamples`, `maxMissingRatio`: the loop's threshold) unless set here. */
  fallbackArgs: greedyArgsSchema.extend({ minSamples: z.number().int().min(0).optional(), maxMissingRatio: z.number().min(0).max(1).optional() }).prefault({}),
});
export type OltpDiskArgs = z.infer<typeof oltpDiskArgsSchema>;

const NAME = 'oltp-disk';
const relGap = (max: number, min: number) => (max <= 0 ? 0 : (max - min) / max);

export function planOltpDisk(snapshot: ClusterSnapshot, args: OltpDiskArgs): Plan {
  const annotations: Annotation[] = [];
  const fallback = (why: string): Plan => {
    annotations.push({ level: 'info', code: 'NO_DISK_CANDIDATE', policy: NAME, message: `${why}${args.fallback === 'none' ? '' : `; falling back to ${args.fallback}`}` });
    if (args.fallback === 'none') return { snapshotVersion: snapshot.version, policy: NAME, moves: [], annotations };
    const fb = planGreedy(args.fallback, snapshot, { ...args.fallbackArgs, minSamples: args.fallbackArgs.minSamples ?? args.minSamples, maxMissingRatio: args.fallbackArgs.maxMissingRatio ?? args.maxMissingRatio }, threadCap);
    return { snapshotVersion: snapshot.version, policy: `${NAME}>${args.fallback}`, moves: fb.moves, annotations: [...annotations, ...fb.annotations] };
  };
  const hosts = snapshot.hosts.filter((h) => h.online && h.diskOpsPerSec !== undefined);
  if (hosts.length < 2) return fallback(`${hosts.length} online host(s) with disk figures: nothing to compare`);
  const byOps = [...hosts].sort(byKeyThenId((h) => h.diskOpsPerSec ?? 0, (h) => h.hostId));
  const target = byOps.find((h): h is CpuKnownHost => acceptsContainers(h) && coresKnown(h) && windowProblem(h, args) === undefined);
  if (target === undefined) return fallback('no host with disk figures can take containers (drained, unknown core count, or too few samples in its window)');
  const busiest = byOps[byOps.length - 1] as HostSnapshot;
  if (target === busiest) return fallback(`no host but the busiest, ${busiest.hostId}, can take containers (the others are drained, have an unknown core count, or too few samples in their window)`);
  const maxOps = busiest.diskOpsPerSec ?? 0;
  const minOps = target.diskOpsPerSec ?? 0;
  const opsGap = relGap(maxOps, minOps);
  if (opsGap < args.diskOpsRewardThreshold) return fallback(`(b) host disk ops ${busiest.hostId} ${fmt(maxOps, 0)}/s vs ${target.hostId} ${fmt(minOps, 0)}/s differ by ${fmt(opsGap * 100, 0)} %, below ${fmt(args.diskOpsRewardThreshold * 100, 0)} %`);
  const busiestActive = busiest.diskActiveRatio ?? 0;
  if (busiestActive < args.diskActiveThreshold) return fallback(`(c) the busiest host ${busiest.hostId} is disk-active ${fmt(busiestActive * 100, 0)} % of the time, below ${fmt(args.diskActiveThreshold * 100, 0)} %`);
  const actives = hosts.map((h) => h.diskActiveRatio ?? 0);
  const activeGap = relGap(Math.max(...actives), Math.min(...actives));
  if (activeGap < args.diskActiveRewardThreshold) return fallback(`(d) host disk activity differs by ${fmt(activeGap * 100, 0)} %, below ${fmt(args.diskActiveRewardThreshold * 100, 0)} %`);

  const minCandidateOps = args.baselineThreshold * args.diskOpsBaseline;
  // Disk ops of the other hosts bound the gap after a move from the busiest host to the target.
  const others = byOps.filter((h) => h !== busiest && h !== target).map((h) => h.diskOpsPerSec ?? 0);
  const otherMax = Math.max(Number.NEGATIVE_INFINITY, ...others);
  const otherMin = Math.min(Number.POSITIVE_INFINITY, ...others);
  const gapAfter = (ops: number) => Math.max(maxOps - ops, minOps + ops, otherMax) - Math.min(maxOps - ops, minOps + ops, otherMin);
  const targetRoom = target.cores * args.targetMaxUtil - hostCpuUsed(target, snapshot.containers) - arrivingCpu(snapshot, target.hostId);
  const candidates = [...snapshot.containers].sort(byKeyThenId((c) => c.diskOpsPerSec ?? 0, (c) => c.herdId, true));
  const rejected: string[] = [];
  for (const c of candidates) {
    const ops = c.diskOpsPerSec ?? 0;
    const memory = memoryProblem(c, target.hostId, target.memoryAvailableBytes);
    const why =
      ineligibility(c, args, snapshot.nowMs)?.message ??
      (ops < minCandidateOps ? `(e) ${fmt(ops, 0)} disk ops/s, below ${fmt(minCandidateOps, 0)}/s` : undefined) ??
      (c.hostId === target.hostId ? `(f) already on ${target.hostId}, the host with the fewest disk ops` : undefined) ??
      (args.minGapReduction > 0 && c.hostId !== busiest.hostId ? `(h) on ${c.hostId}, not on the busiest host ${busiest.hostId}` : undefined) ??
      (args.minGapReduction > 0 && gapAfter(ops) > (1 - args.minGapReduction) * (maxOps - minOps) ? `(h) moving ${fmt(ops, 0)} ops/s leaves a gap of ${fmt(gapAfter(ops), 0)} ops/s (now ${fmt(maxOps - minOps, 0)}): less than ${fmt(args.minGapReduction * 100, 0)} % narrower` : undefined) ??
      ((c.cpuCores ?? 0) > targetRoom + 1e-9 ? `(g) needs ~${fmt(c.cpuCores ?? 0)} cores, ${target.hostId} has ${fmt(Math.max(0, targetRoom))} free` : undefined) ??
      (memory === undefined ? undefined : `(g) ${memory}`);
    if (why !== undefined) {
      rejected.push(`${c.name}: ${why}`);
      // Candidates are in descending disk ops: once below the baseline, so are the rest.
      if (ops < minCandidateOps) break;
      continue;
    }
    annotations.push(...(rejected.length > 0 ? [{ level: 'skip' as const, code: 'CANDIDATE_REJECTED', policy: NAME, message: rejected.slice(0, 5).join('; ') }] : []));
    return {
      snapshotVersion: snapshot.version,
      policy: NAME,
      moves: [
        {
          herdId: c.herdId,
          name: c.name,
          from: c.hostId,
          to: target.hostId,
          policy: NAME,
          reasonCode: 'DISK_IMBALANCE',
          reason: `${c.name} does ${fmt(ops, 0)} disk ops/s; host disk ops ${busiest.hostId} ${fmt(maxOps, 0)}/s vs ${target.hostId} ${fmt(minOps, 0)}/s (${fmt(opsGap * 100, 0)} % apart), ${busiest.hostId} disk-active ${fmt(busiestActive * 100, 0)} %`,
          expectedGain: Math.min(ops, (maxOps - minOps) / 2),
        },
      ],
      annotations,
    };
  }
  return fallback(`no container qualifies${rejected.length > 0 ? `: ${rejected.slice(0, 5).join('; ')}${rejected.length > 5 ? '; …' : ''}` : ''}`);
}

export const oltpDisk: PolicyDefinition<OltpDiskArgs> = {
  name: NAME,
  description: 'moves the container with the most disk operations to the host with the fewest, when host disk load is out of balance (Herd\'s OLTP policy); else cpu-greedy-multithread',
  argsSchema: oltpDiskArgsSchema,
  plan: planOltpDisk,
};
