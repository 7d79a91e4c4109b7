/**
 * Plan time at scale: a synthetic ClusterSnapshot of N hosts with `perHost` containers
 * each (seeded, deterministic), and the time one policy evaluation takes on it.
 *
 * The snapshot gives the policies real work: a quarter of the hosts are saturated
 * (their containers use all their cores, the top ones throttled), the rest are 10-70 %
 * busy; hosts are 2- or 4-core; containers have 1 to 4 threads; a few are disk-heavy and
 * the disk load is uneven, so oltp-disk gets past its host checks to its candidates.
 */
import { performance } from 'node:perf_hooks';
import type { ClusterSnapshot, ContainerSnapshot, HostSnapshot } from '../../policies/model.ts';
import { runPolicy, type PolicyStep } from '../../policies/registry.ts';
import { mulberry32 } from './generate.ts';

export function syntheticSnapshot(hostCount: number, perHost = 30, seed = 1): ClusterSnapshot {
  const rng = mulberry32(seed * 7919 + hostCount);
  const hosts: HostSnapshot[] = [];
  const containers: ContainerSnapshot[] = [];
  for (let h = 0; h < hostCount; h++) {
    const hostId = `host-${String(h + 1).padStart(4, '0')}`;
    const cores = rng() < 0.5 ? 2 : 4;
    const saturated = rng() < 0.25;
    const util = saturated ? 1 : 0.1 + rng() * 0.6;
    const weights = Array.from({ length: perHost }, () => rng() ** 2);
    const sum = weights.reduce((s, w) => s + w, 0) || 1;
    let diskOps = 0;
    for (let i = 0; i < perHost; i++) {
      const cpuCores = ((weights[i] as number) / sum) * util * cores;
      const disk = rng() < 0.05 ? 200 + rng() * 1500 : rng() * 20;
      diskOps += disk;
      containers.push({
        herdId: `${hostId}-c${String(i + 1).padStart(2, '0')}`,
        name: `${hostId}-c${i + 1}`,
        hostId,
        cpuCores,
        cpuCoresMax: cpuCores * 1.2,
        cpuLimitCores: cores,
        processCount: 1,
        threadCount: 1 + Math.floor(rng() * 4),
        diskOpsPerSec: disk,
        memoryBytes: (16 + Math.floor(rng() * 500)) * 2 ** 20,
        sampleCount: 15,
        missingRatio: 0,
        migrating: false,
      });
    }
    hosts.push({ hostId, online: true, cores, cpuUtil: Math.min(1, util), cpuUtilMax: Math.min(1, util * 1.1), diskOpsPerSec: diskOps, diskActiveRatio: Math.min(1, diskOps / 3000), memoryAvailableBytes: 16 * 2 ** 30, sampleCount: 6, missingRatio: 0 });
  }
  return { version: `synthetic-${hostCount}x${perHost}`, nowMs: 1_000_000, windowSeconds: 30, hosts, containers, inFlight: [] };
}

export interface PlanTiming {
  hosts: number;
  containers: number;
  /** Median of the timed runs, in milliseconds. */
  medianMs: number;
  runsMs: number[];
  moves: number;
}

/** Times `runPolicy` (argument validation included, as the control loop calls it) on one snapshot. */
export function timePlan(snapshot: ClusterSnapshot, step: PolicyStep, runs = 5): PlanTiming {
  runPolicy(snapshot, step); // warm-up (JIT)
  const runsMs: number[] = [];
  let moves = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const plan = runPolicy(snapshot, step);
    runsMs.push(performance.now() - t0);
    moves = plan.moves.length;
  }
  const sorted = [...runsMs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const medianMs = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { hosts: snapshot.hosts.length, containers: snapshot.containers.length, medianMs, runsMs, moves };
}
