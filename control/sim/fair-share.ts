/**
 * The simulator's model of one host's resources: fair sharing of its cores (and of its
 * disk) among the containers that run on it.
 *
 * CPU: every container is a cgroup of equal weight (Docker's default cpu.weight), so the
 * kernel's fair scheduler shares the cores by water-filling: a container that wants less
 * than the fair level gets what it wants, the others get the level, and the level is set
 * so that the cores are used up (when the wants exceed them). A container can never use
 * more than min(threads, CPU limit, its current demand) cores.
 *
 * Disk: the same water-filling over the host's disk operations per second
 * (`diskOpsCapacity`; no limit when the scenario gives none), like equal io.weight.
 *
 * A container does its work at one pace ("progress", 0..1 of what it asks for): a
 * container that gets half the disk operations it wants also uses only half its CPU
 * demand (it waits on I/O), and vice versa. With a CPU level L and a disk level M, a
 * container progresses at p = min(1, L / cpuWant, M / diskWant); L and M are the levels at
 * which its host's cores and disk are used up. Each level is a decreasing function of the
 * other, so alternating the two water-fillings converges monotonically (L up, M down);
 * we stop when neither moves by more than 1e-12 (or after 100 rounds).
 */

export interface WaterFill {
  /** The fair level: Infinity when every want fits. */
  level: number;
  alloc: number[];
}

/** Max-min fair share of `capacity` among wants (each gets min(want, level)). Deterministic, O(n log n). */
export function waterFill(capacity: number, wants: readonly number[]): WaterFill {
  let total = 0;
  for (const w of wants) total += w;
  if (total <= capacity) return { level: Infinity, alloc: wants.slice() };
  const order = wants.map((w, i) => ({ w, i })).sort((a, b) => a.w - b.w || a.i - b.i);
  let left = capacity;
  let n = order.length;
  let level = Infinity;
  for (const { w } of order) {
    const share = left / n;
    if (w <= share) {
      left -= w;
      n--;
      continue;
    }
    level = share;
    break;
  }
  return { level, alloc: wants.map((w) => Math.min(w, level)) };
}

export interface HostLoad {
  /** Cores each container could use now: min(threads, limit, demand). */
  cpuWant: readonly number[];
  /** Disk operations per second each container asks for. */
  diskWant: readonly number[];
}

export interface HostShare {
  /** Progress of each container (0..1 of its demand). */
  progress: number[];
  cpuUsed: number[];
  diskUsed: number[];
  /** Busy cores (sum of cpuUsed). */
  busyCores: number;
  diskOps: number;
}

const pace = (want: number, level: number): number => (want <= 0 || level === Infinity ? 1 : Math.min(1, level / want));

/** Shares a host's cores and disk among its running containers (see the module comment). */
export function shareHost(cores: number, diskCapacity: number | undefined, load: HostLoad): HostShare {
  const n = load.cpuWant.length;
  let cpuLevel = Infinity;
  let diskLevel = Infinity;
  const diskLimited = diskCapacity !== undefined && load.diskWant.some((d) => d > 0);
  for (let round = 0; round < 100; round++) {
    const cpuCaps = load.cpuWant.map((w, i) => w * pace(load.diskWant[i] ?? 0, diskLevel));
    const nextCpu = waterFill(cores, cpuCaps).level;
    if (!diskLimited) {
      cpuLevel = nextCpu;
      break;
    }
    const diskCaps = load.diskWant.map((d, i) => d * pace(load.cpuWant[i] ?? 0, nextCpu));
    const nextDisk = waterFill(diskCapacity as number, diskCaps).level;
    const settled = close(nextCpu, cpuLevel) && close(nextDisk, diskLevel);
    cpuLevel = nextCpu;
    diskLevel = nextDisk;
    if (settled) break;
  }
  const progress: number[] = [];
  const cpuUsed: number[] = [];
  const diskUsed: number[] = [];
  let busyCores = 0;
  let diskOps = 0;
  for (let i = 0; i < n; i++) {
    const cw = load.cpuWant[i] ?? 0;
    const dw = load.diskWant[i] ?? 0;
    const p = Math.min(pace(cw, cpuLevel), pace(dw, diskLevel));
    progress.push(p);
    cpuUsed.push(cw * p);
    diskUsed.push(dw * p);
    busyCores += cw * p;
    diskOps += dw * p;
  }
  return { progress, cpuUsed, diskUsed, busyCores: Math.min(busyCores, cores), diskOps };
}

function close(a: number, b: number): boolean {
  if (a === b) return true;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
  return Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b));
}
