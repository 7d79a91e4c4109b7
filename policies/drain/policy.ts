/**
 * `drain`: empties hosts marked draining (`herd drain <host>`) for maintenance. Every
 * container of a draining host moves to the host with the most free CPU that accepts
 * containers (fewer containers, then id, on a tie), biggest CPU users first; the safety
 * layer's caps pace the moves. The control loop runs it ahead of the policy chain while
 * a host is draining.
 */
import { z } from 'zod';
import { acceptsContainers, arrivingCpu, byKeyThenId, fmt, hostCpuUsed, type Annotation, type Move, type Plan, type PolicyDefinition } from '../model.ts';

export const drainArgsSchema = z.strictObject({
  /** Moves per plan (the safety layer's caps still apply). */
  maxMoves: z.number().int().min(0).default(4),
});
export type DrainArgs = z.infer<typeof drainArgsSchema>;

const NAME = 'drain';

export const drain: PolicyDefinition<DrainArgs> = {
  name: NAME,
  description: 'moves every container off hosts being drained, to the hosts with the most free CPU',
  argsSchema: drainArgsSchema,
  plan(snapshot, args): Plan {
    const annotations: Annotation[] = [];
    const draining = snapshot.hosts.filter((h) => h.online && h.draining === true);
    const targets = snapshot.hosts.filter(acceptsContainers).map((h) => ({
      h,
      used: hostCpuUsed(h, snapshot.containers) + arrivingCpu(snapshot, h.hostId),
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
        targets.sort((a, b) => b.h.cores - b.used - (a.h.cores - a.used) || a.count - b.count || (a.h.hostId < b.h.hostId ? -1 : 1));
        const t = targets[0];
        if (t === undefined) {
          annotations.push({ level: 'skip', code: 'NO_TARGET', policy: NAME, hostId: d.hostId, message: `no online host accepts containers: ${d.hostId} cannot be drained` });
          return { snapshotVersion: snapshot.version, policy: NAME, moves, annotations };
        }
        moves.push({ herdId: c.herdId, name: c.name, from: d.hostId, to: t.h.hostId, policy: NAME, reasonCode: 'DRAIN', reason: `${d.hostId} is being drained; ${t.h.hostId} has the most free CPU (${fmt(t.h.cores - t.used)} of ${t.h.cores} core(s))`, expectedGain: 0 });
        t.used += c.cpuCores ?? 0;
        t.count++;
      }
    }
    return { snapshotVersion: snapshot.version, policy: NAME, moves, annotations };
  },
};
