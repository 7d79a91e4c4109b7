/**
 * `drain`: empties hosts marked draining (`herd drain <host>`) for maintenance. Every
 * container of a draining host moves to the host with the most free CPU that accepts
 * containers and has room for it (CPU the last re-check would accept, free memory; fewer
 * containers, then id, on a tie), biggest CPU users first; a container no host has room
 * for stays (NO_TARGET_CAPACITY), the others go on. The safety layer's caps pace the moves.
 * The control loop runs it ahead of the policy chain while a host is draining.
 */
import { z } from 'zod';
import { fitsTargetCpu } from '../safety/safety.ts';
import { acceptsContainers, arrivingCpu, byKeyThenId, coresKnown, fmt, hostCpuUsed, memoryProblem, type Annotation, type Move, type Plan, type PolicyDefinition } from '../model.ts';

export const drainArgsSchema = z.strictObject({
  /** Moves per plan (the safety layer's caps still apply). */
  maxMoves: z.number().int().min(0).default(4),
});
export type DrainArgs = z.infer<typeof drainArgsSchema>;

const NAME = 'drain';

export const drain: PolicyDefinition<DrainArgs> = {
  name: NAME,
  description: 'moves every container off hosts being drained, to the hosts with the most free CPU that have room for it',
  argsSchema: drainArgsSchema,
  plan(snapshot, args): Plan {
    const annotations: Annotation[] = [];
    const draining = snapshot.hosts.filter((h) => h.online && h.draining === true);
    // A host with an unknown core count is no target: its room cannot be judged.
    const targets = snapshot.hosts.filter(acceptsContainers).filter(coresKnown).map((h) => ({
      h,
      used: hostCpuUsed(h, snapshot.containers) + arrivingCpu(snapshot, h.hostId),
      memoryFree: h.memoryAvailableBytes,
      count: snapshot.containers.filter((c) => c.hostId === h.hostId).length,
    }));
    const moves: Move[] = [];
    if (draining.length === 0) annotations.push({ level: 'info', code: 'NOTHING_TO_DRAIN', policy: NAME, message: 'no online host is being drained' });
    for (const d of draining) {
      const leaving = snapshot.containers.filter((c) => c.hostId === d.hostId).sort(byKeyThenId((c) => c.cpuCores ?? 0, (c) => c.herdId, true));
      if (leaving.length === 0) annotations.push({ level: 'info', code: 'DRAINED', policy: NAME, hostId: d.hostId, message: `${d.hostId} runs no Herd-managed container` });
      for (const c of leaving) {
        if (c.migrating) {
          annotations.push({ level: 'skip', code: 'IN_FLIGHT', policy: NAME, herdId: c.herdId, message: `${c.name} is migrating` });
          continue;
        }
        if (moves.length >= args.maxMoves) break;
        if (targets.length === 0) {
          annotations.push({ level: 'skip', code: 'NO_TARGET', policy: NAME, hostId: d.hostId, message: `no online host with a known core count accepts containers: ${d.hostId} cannot be drained` });
          return { snapshotVersion: snapshot.version, policy: NAME, moves, annotations };
        }
        targets.sort((a, b) => b.h.cores - b.used - (a.h.cores - a.used) || a.count - b.count || (a.h.hostId < b.h.hostId ? -1 : 1));
        // Room: below its cores now, and the last re-check would let the container on (else it refuses the move every evaluation).
        const why = (t: (typeof targets)[number]) =>
          (t.used >= t.h.cores - 1e-9 || !fitsTargetCpu(c, t.used, t.h.cores) ? `${t.h.hostId} uses ${fmt(t.used)} of ${t.h.cores} core(s)` : undefined) ?? memoryProblem(c, t.h.hostId, t.memoryFree);
        const t = targets.find((x) => why(x) === undefined);
        if (t === undefined) {
          annotations.push({ level: 'skip', code: 'NO_TARGET_CAPACITY', policy: NAME, herdId: c.herdId, hostId: d.hostId, message: `${c.name} (~${fmt(c.cpuCores ?? 0)} cores) stays on ${d.hostId} for now: no host has room for it (${targets.map(why).join('; ')})` });
          continue;
        }
        moves.push({ herdId: c.herdId, name: c.name, from: d.hostId, to: t.h.hostId, policy: NAME, reasonCode: 'DRAIN', reason: `${d.hostId} is being drained; ${t.h.hostId} has the most free CPU with room for it (${fmt(t.h.cores - t.used)} of ${t.h.cores} core(s))`, expectedGain: 0 });
        t.used += c.cpuCores ?? 0;
        if (t.memoryFree !== undefined && c.memoryBytes !== undefined) t.memoryFree -= c.memoryBytes;
        t.count++;
      }
    }
    return { snapshotVersion: snapshot.version, policy: NAME, moves, annotations };
  },
};
