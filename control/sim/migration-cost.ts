/**
 * What a live migration costs in the simulator: the downtime (the container does no work)
 * and the total time (it is in flight, `migrating` in the snapshot), from the figures
 * `npm run bench:migration` measured (docs/benchmark-migration.md, 2026-11-23, commit
 * e2803ac, method "herd diff", medians of 3 runs):
 *
 *   memory   diff     downtime   total
 *   16 MiB   1 MiB    1376 ms    1515 ms
 *   16 MiB   100 MiB  2509 ms    2705 ms
 *   256 MiB  1 MiB    8290 ms    8662 ms
 *   256 MiB  100 MiB  9244 ms    9570 ms
 *
 * Between the points the cost is interpolated bilinearly in (memory, diff size); above
 * them it is extrapolated along the same lines (about 29 ms of downtime per MiB of
 * memory, 11 ms per MiB of diff); below 16 MiB or 1 MiB the smallest measured figure is
 * used (CRIU and Docker have a fixed cost). A scenario may override a container's cost.
 */

const MiB = 2 ** 20;

export interface MigrationCost {
  downtimeMs: number;
  totalMs: number;
}

/** The measured points (see the module comment). */
export const MEASURED_MIGRATIONS = [
  { memoryMiB: 16, diffMiB: 1, downtimeMs: 1376, totalMs: 1515 },
  { memoryMiB: 16, diffMiB: 100, downtimeMs: 2509, totalMs: 2705 },
  { memoryMiB: 256, diffMiB: 1, downtimeMs: 8290, totalMs: 8662 },
  { memoryMiB: 256, diffMiB: 100, downtimeMs: 9244, totalMs: 9570 },
] as const;

const M0 = 16;
const M1 = 256;
const D0 = 1;
const D1 = 100;

function bilinear(u: number, v: number, f00: number, f10: number, f01: number, f11: number): number {
  return f00 + (f10 - f00) * u + (f01 - f00) * v + (f11 - f10 - f01 + f00) * u * v;
}

/** The cost of migrating a container of `memoryBytes` whose writable layer holds `diffBytes`. */
export function migrationCost(memoryBytes: number, diffBytes: number = MiB): MigrationCost {
  const [p00, p01, p10, p11] = MEASURED_MIGRATIONS;
  const u = Math.max(0, (memoryBytes / MiB - M0) / (M1 - M0));
  const v = Math.max(0, (diffBytes / MiB - D0) / (D1 - D0));
  const downtimeMs = Math.max(p00.downtimeMs, bilinear(u, v, p00.downtimeMs, p10.downtimeMs, p01.downtimeMs, p11.downtimeMs));
  const totalMs = Math.max(p00.totalMs, downtimeMs, bilinear(u, v, p00.totalMs, p10.totalMs, p01.totalMs, p11.totalMs));
  return { downtimeMs: Math.round(downtimeMs), totalMs: Math.round(totalMs) };
}
