/**
 * The generated scenario set of `npm run bench:policies`: seeded (mulberry32, never
 * Math.random), so the same seed always gives the same scenarios.
 *
 * Each scenario has 2 to 4 hosts of 2 or 4 cores (both sizes in every scenario) with a
 * disk of 2,000-4,000 ops/s, and 5 to 10 containers that start piled on one host (two
 * when there are four hosts): single-threaded CPU workers, multi-threaded ones (2-4
 * threads) and disk-heavy ones (a database: a little CPU, hundreds to 1,500 disk
 * ops/s), some with a CPU limit. Each container's demand is a random staircase: a new
 * level every 1 to 8 minutes over 30 minutes, idle spells included. Every third
 * scenario is disk-heavy. Every container completes 1,000 operations per second of CPU
 * time, so "ops" measure useful CPU time delivered. Small enough for the exhaustive
 * search of the ideal (at most 4^10 placements).
 */
import { parseScenario, type Scenario, type ScenarioInput } from './scenario.ts';

/** A small, fast, seedable PRNG (Tommy Ettinger's mulberry32): floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rng = () => number;
const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
const round = (x: number, digits = 2): number => Number(x.toFixed(digits));
const MiB = 2 ** 20;

export const DEFAULT_SEED = 20261123;

export interface GenerateOptions {
  seed?: number;
  count?: number;
  durationSeconds?: number;
}

type Kind = 'cpu1' | 'cpuN' | 'disk';

/** One generated scenario (the raw file content). */
export function generateScenario(seed: number, index: number, durationSeconds = 1800): ScenarioInput {
  const rng = mulberry32((Math.imul(seed ^ 0x9e3779b9, 2654435761) + Math.imul(index + 1, 0x85ebca6b)) >>> 0);
  const diskHeavy = index % 3 === 2;
  const hostCount = int(rng, 2, 4);
  const sizes = Array.from({ length: hostCount }, (_, i) => (i === 0 ? 2 : i === 1 ? 4 : pick(rng, [2, 4])));
  for (let i = sizes.length - 1; i > 0; i--) {
    const j = int(rng, 0, i);
    [sizes[i], sizes[j]] = [sizes[j] as number, sizes[i] as number];
  }
  const hosts = sizes.map((cores, i) => ({ id: `h${i + 1}`, cores, diskOpsCapacity: pick(rng, [2000, 2500, 3000, 3500, 4000]), memoryBytes: 8192 * MiB }));
  const hot = hostCount === 4 ? [hosts[0], hosts[1]] : [hosts[0]];
  const count = int(rng, 5, 10);
  const containers = Array.from({ length: count }, (_, i) => {
    const r = rng();
    const kind: Kind = diskHeavy ? (r < 0.3 ? 'cpu1' : r < 0.55 ? 'cpuN' : 'disk') : r < 0.45 ? 'cpu1' : r < 0.85 ? 'cpuN' : 'disk';
    const threads = kind === 'cpu1' ? 1 : kind === 'cpuN' ? int(rng, 2, 4) : int(rng, 1, 2);
    const limited = kind !== 'disk' && rng() < 0.15;
    const cpuLimitCores = limited ? (threads === 1 ? 0.5 : threads - 0.5) : undefined;
    const host = (hot[i % hot.length] as { id: string }).id;
    const demand: { atSeconds: number; cpuCores: number; diskOpsPerSec: number }[] = [];
    for (let at = 0; at < durationSeconds; at += 30 * int(rng, 2, 16)) {
      const idle = rng() < 0.15;
      let cpuCores: number;
      let diskOpsPerSec: number;
      if (kind === 'disk') {
        cpuCores = idle ? 0.05 : round(0.1 + rng() * 0.3);
        diskOpsPerSec = idle ? 20 : 100 * int(rng, 2, 15);
      } else {
        cpuCores = idle ? 0 : kind === 'cpu1' ? pick(rng, [0.25, 0.5, 1, 1, 1]) : round(threads * pick(rng, [0.25, 0.5, 0.75, 1, 1]));
        diskOpsPerSec = idle ? 0 : int(rng, 0, 20);
      }
      demand.push({ atSeconds: at, cpuCores, diskOpsPerSec });
    }
    const name = `${kind === 'cpu1' ? 'cpu' : kind === 'cpuN' ? `mt${threads}` : 'db'}-${i + 1}`;
    return {
      herdId: `c${String(i + 1).padStart(2, '0')}`,
      name,
      host,
      threads,
      ...(cpuLimitCores === undefined ? {} : { cpuLimitCores }),
      memoryBytes: pick(rng, [16, 32, 64, 128, 256, 512]) * MiB,
      opsPerCoreSecond: 1000,
      demand,
    };
  });
  const tag = diskHeavy ? 'disk' : 'cpu';
  return {
    name: `gen-${String(index + 1).padStart(2, '0')}-${tag}-${hostCount}h-${count}c`,
    description: `generated (seed ${seed}, #${index + 1}): ${hostCount} hosts (${sizes.join('+')} cores), ${count} containers piled on ${hot.map((h) => (h as { id: string }).id).join('+')}${diskHeavy ? ', disk-heavy' : ''}`,
    seed,
    durationSeconds,
    hosts,
    containers,
    // The control daemon's defaults (control/config.ts), the published chain included.
    control: {},
  };
}

/** The benchmark's scenario set (validated). */
export function generateScenarios(options: GenerateOptions = {}): Scenario[] {
  const seed = options.seed ?? DEFAULT_SEED;
  const count = options.count ?? 12;
  return Array.from({ length: count }, (_, i) => {
    const raw = generateScenario(seed, i, options.durationSeconds);
    return parseScenario(raw, `generated scenario ${raw.name}`);
  });
}
