/**
 * The ideal: the best static placement of a scenario (each container on one host for the
 * whole trace, no migration), the one with the most workload operations, found by
 * exhaustive search.
 *
 * Under a static placement a host's operations depend only on the set of containers it
 * holds, so the search is exact without enumerating the hosts^containers assignments one
 * by one: it computes the operations of every (host, subset of containers) over the trace
 * (2^n subsets per distinct kind of host), then takes the best split of the containers
 * among the hosts by dynamic programming over subsets (hosts × 3^n steps). This is the
 * same maximum as trying all hosts^containers placements. A subset that does not fit in a
 * host's memory (when the scenario gives it) is not allowed. Ties go to the first split in
 * a fixed enumeration order, so the result is deterministic.
 */
import { shareHost } from './fair-share.ts';
import type { Scenario } from './scenario.ts';
import { cpuWantOf } from './simulator.ts';

/** Default bound on the work of the search (subset evaluations × containers + hosts × 3^n). */
export const IDEAL_WORK_LIMIT = 60_000_000;
const MAX_CONTAINERS = 20;

export type IdealResult =
  | { status: 'ok'; placement: Record<string, string>; totalOps: number; placements: number; work: number }
  | { status: 'skipped'; reason: string; placements: number };

export function idealPlacement(scenario: Scenario, workLimit = IDEAL_WORK_LIMIT): IdealResult {
  const n = scenario.containers.length;
  const H = scenario.hosts.length;
  const placements = H ** n;
  if (n === 0) return { status: 'ok', placement: {}, totalOps: 0, placements: 1, work: 0 };
  const endMs = Math.round(scenario.durationSeconds * 1000);
  const cuts = new Set<number>([0, endMs]);
  for (const c of scenario.containers) for (const s of c.demand) if (Math.round(s.atSeconds * 1000) < endMs) cuts.add(Math.round(s.atSeconds * 1000));
  const bounds = [...cuts].sort((a, b) => a - b);
  const segments = bounds.length - 1;
  const kinds = new Map<string, number>();
  const hostKind = scenario.hosts.map((h) => {
    const key = `${h.cores}/${h.diskOpsCapacity ?? '-'}/${h.memoryBytes ?? '-'}`;
    if (!kinds.has(key)) kinds.set(key, kinds.size);
    return kinds.get(key) as number;
  });
  const work = (n <= MAX_CONTAINERS ? 2 ** n * kinds.size * segments * n + H * 3 ** n : Infinity);
  if (work > workLimit) {
    return { status: 'skipped', placements, reason: `${H} hosts ^ ${n} containers = ${placements.toExponential(2)} placements: the search (~${work === Infinity ? 'inf' : work.toExponential(1)} steps) is above its limit (${workLimit.toExponential(1)})` };
  }

  // Demand of each container in each segment.
  const cpu: number[][] = [];
  const disk: number[][] = [];
  for (const c of scenario.containers) {
    const cs: number[] = [];
    const ds: number[] = [];
    let k = -1;
    for (let s = 0; s < segments; s++) {
      const at = bounds[s] as number;
      while (k + 1 < c.demand.length && Math.round((c.demand[k + 1] as { atSeconds: number }).atSeconds * 1000) <= at) k++;
      const step = k >= 0 ? c.demand[k] : undefined;
      cs.push(step === undefined ? 0 : cpuWantOf(c, step.cpuCores));
      ds.push(step === undefined ? 0 : step.diskOpsPerSec);
    }
    cpu.push(cs);
    disk.push(ds);
  }
  const opsRate = scenario.containers.map((c) => c.opsPerCoreSecond);
  const mem = scenario.containers.map((c) => c.memoryBytes);
  const full = (1 << n) - 1;

  // value[kind][mask]: ops of that subset on a host of that kind over the whole trace.
  const value: Float64Array[] = [];
  for (const [key, kind] of kinds) {
    const h = scenario.hosts[hostKind.indexOf(kind)] as Scenario['hosts'][number];
    void key;
    const v = new Float64Array(full + 1);
    for (let mask = 1; mask <= full; mask++) {
      const members: number[] = [];
      let memory = 0;
      for (let i = 0; i < n; i++) {
        if (mask & (1 << i)) {
          members.push(i);
          memory += mem[i] as number;
        }
      }
      if (h.memoryBytes !== undefined && memory > h.memoryBytes) {
        v[mask] = -Infinity;
        continue;
      }
      let ops = 0;
      for (let s = 0; s < segments; s++) {
        const dt = ((bounds[s + 1] as number) - (bounds[s] as number)) / 1000;
        const share = shareHost(h.cores, h.diskOpsCapacity, { cpuWant: members.map((i) => (cpu[i] as number[])[s] as number), diskWant: members.map((i) => (disk[i] as number[])[s] as number) });
        members.forEach((i, j) => (ops += (share.cpuUsed[j] as number) * (opsRate[i] as number) * dt));
      }
      v[mask] = ops;
    }
    value.push(v);
  }

  // best[k][mask]: the most ops of the containers in mask on hosts 0..k; choice[k][mask]: host k's subset.
  const best: Float64Array[] = [];
  const choice: Int32Array[] = [];
  for (let k = 0; k < H; k++) {
    const vk = value[hostKind[k] as number] as Float64Array;
    const b = new Float64Array(full + 1);
    const ch = new Int32Array(full + 1);
    if (k === 0) {
      for (let mask = 0; mask <= full; mask++) {
        b[mask] = vk[mask] as number;
        ch[mask] = mask;
      }
    } else {
      const prev = best[k - 1] as Float64Array;
      for (let mask = 0; mask <= full; mask++) {
        let top = -Infinity;
        let pick = 0;
        // Every subset of mask, largest first, then the empty set.
        for (let sub = mask; ; sub = (sub - 1) & mask) {
          const x = (vk[sub] as number) + (prev[mask ^ sub] as number);
          if (x > top) {
            top = x;
            pick = sub;
          }
          if (sub === 0) break;
        }
        b[mask] = top;
        ch[mask] = pick;
      }
    }
    best.push(b);
    choice.push(ch);
  }
  const totalOps = (best[H - 1] as Float64Array)[full] as number;
  if (!Number.isFinite(totalOps)) return { status: 'skipped', placements, reason: 'no static placement fits the hosts\' memory' };
  const placement: Record<string, string> = {};
  let rest = full;
  for (let k = H - 1; k >= 0; k--) {
    const sub = (choice[k] as Int32Array)[rest] as number;
    for (let i = 0; i < n; i++) if (sub & (1 << i)) placement[(scenario.containers[i] as { herdId: string }).herdId] = (scenario.hosts[k] as { id: string }).id;
    rest ^= sub;
  }
  return { status: 'ok', placement, totalOps, placements, work };
}
