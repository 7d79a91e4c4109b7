/**
 * What a live migration costs in the simulator: the downtime (the container does no work)
 * and the total time (it is in flight, `migrating` in the snapshot), from the figures
 * `npm run bench:migration` measured (docs/benchmark-migration.md, "Block deltas, pre-copied
 * volumes", 2026-11-27, commit f66b862, method "herd diff" with the direct restore, medians of
 * 3 runs; the later run on another machine, "Current", is within 11 % of these):
 *
 *   memory   diff     downtime   total
 *   16 MiB   1 MiB     926 ms     992 ms
 *   16 MiB   100 MiB   832 ms    2160 ms
 *   256 MiB  1 MiB    2667 ms    2735 ms
 *   256 MiB  100 MiB  2471 ms    3716 ms
 *
 * The diff is copied before the freeze (the filesystem pre-copy), so it no longer adds
 * downtime: the two diff sizes differ by run-to-run noise only, and the downtime is
 * interpolated linearly in memory through the mean of the two (879 ms at 16 MiB, 2569 ms at
 * 256 MiB: about 7 ms per MiB of memory). The total is interpolated bilinearly in
 * (memory, diff size), about 12 ms per MiB of diff. Above the measured points both are
 * extrapolated along the same lines; below 16 MiB or 1 MiB the smallest measured figure is
 * used (CRIU and Docker have a fixed cost). A scenario may override a container's cost.
 */

const MiB = 2 ** 20;

export interface MigrationCost {
  downtimeMs: number;
  totalMs: number;
}

/** The measured points (see the module comment). */
export const MEASURED_MIGRATIONS = [
  { memoryMiB: 16, diffMiB: 1, downtimeMs: 926, totalMs: 992 },
  { memoryMiB: 16, diffMiB: 100, downtimeMs: 832, totalMs: 2160 },
  { memoryMiB: 256, diffMiB: 1, downtimeMs: 2667, totalMs: 2735 },
  { memoryMiB: 256, diffMiB: 100, downtimeMs: 2471, totalMs: 3716 },
] as const;

const M0 = 16;
const M1 = 256;
const D0 = 1;
const D1 = 100;

function bilinear(u: number, v: number, f00: number, f10: number, f01: number, f11: number): number {
  return f00 + (f10 - f00) * u + (f01 - f00) * v + (f11 - f10 - f01 + f00) * u * v;
}

export function migrationCost(memoryBytes: number, diffBytes: number = MiB): MigrationCost {
  const [p00, p01, p10, p11] = MEASURED_MIGRATIONS;
  const u = Math.max(0, (memoryBytes / MiB - M0) / (M1 - M0));
  const v = Math.max(0, (diffBytes / MiB - D0) / (D1 - D0));
  const down0 = (p00.downtimeMs + p01.downtimeMs) / 2;
  const down1 = (p10.downtimeMs + p11.downtimeMs) / 2;
  const downtimeMs = down0 + (down1 - down0) * u;
  const totalMs = Math.max(p00.totalMs, downtimeMs, bilinear(u, v, p00.totalMs, p10.totalMs, p01.totalMs, p11.totalMs));
  return { downtimeMs: Math.round(downtimeMs), totalMs: Math.round(totalMs) };
}
