/**
 * A container's cgroup frozen before CRIU dumps it. CRIU freezes the cgroup itself, but it
 * checks the freezer every 100 ms (criu/seize.c, freeze_processes: a fixed step), and its
 * first check, right after asking, finds the cgroup still freezing: every dump waited 100 ms
 * for a freeze that takes well under a millisecond (measured in the lab: 0.25 ms). A cgroup it
 * finds frozen CRIU seizes at once, and thaws once the tasks are seized, as after its own
 * freeze; after a failed dump it leaves the cgroup as it found it (frozen), so the caller thaws.
 *
 * The cgroup is runc's (its state.json, under the runc root Docker uses): cgroup v1's freezer
 * (`freezer.state`: FROZEN, FREEZING, THAWED) or cgroup v2's (`cgroup.freeze` 1/0, done when
 * `cgroup.events` says `frozen 1`). Anything unexpected (no state file, no freezer, a freeze
 * that does not complete in time) leaves the cgroup thawed and CRIU freezes it as before.
 */
import { readFile, writeFile } from 'node:fs/promises';

/** How long a freeze may take before it is given up (thawed) and left to CRIU. */
export const FREEZE_TIMEOUT_MS = 1000;

export interface FreezerPaths {
  version: 1 | 2;
  /** The cgroup's directory. */
  dir: string;
}

/** The freezer of a runc container, from its state.json (`cgroup_paths`: `freezer` on v1, `""` on v2); undefined when it has none. */
export async function freezerOf(runcStateFile: string): Promise<FreezerPaths | undefined> {
  let paths: Record<string, string> | undefined;
  try {
    paths = (JSON.parse(await readFile(runcStateFile, 'utf8')) as { cgroup_paths?: Record<string, string> }).cgroup_paths;
  } catch {
    return undefined;
  }
  if (typeof paths?.freezer === 'string') return { version: 1, dir: paths.freezer };
  if (typeof paths?.[''] === 'string') return { version: 2, dir: paths[''] };
  return undefined;
}

async function isFrozen(f: FreezerPaths): Promise<boolean> {
  if (f.version === 1) return (await readFile(`${f.dir}/freezer.state`, 'utf8')).trim() === 'FROZEN';
  return /^frozen 1$/m.test(await readFile(`${f.dir}/cgroup.events`, 'utf8'));
}

async function writeState(f: FreezerPaths, frozen: boolean): Promise<void> {
  if (f.version === 1) await writeFile(`${f.dir}/freezer.state`, frozen ? 'FROZEN' : 'THAWED');
  else await writeFile(`${f.dir}/cgroup.freeze`, frozen ? '1' : '0');
}

/**
 * Freezes the cgroup and waits until it is frozen; true once it is. False (the cgroup thawed
 * again, or never touched) when it has no freezer, cannot be written, does not freeze within
 * `timeoutMs`, or was frozen already (a paused container: not this call's to thaw).
 */
export async function freeze(f: FreezerPaths | undefined, timeoutMs = FREEZE_TIMEOUT_MS): Promise<boolean> {
  if (f === undefined) return false;
  const deadline = performance.now() + timeoutMs;
  try {
    if (await isFrozen(f)) return false;
    await writeState(f, true);
    while (!(await isFrozen(f))) {
      if (performance.now() > deadline) throw new Error('not frozen in time');
      await new Promise((r) => setTimeout(r, 1));
    }
    return true;
  } catch {
    await thaw(f);
    return false;
  }
}

/** Thaws the cgroup; true when it was frozen (or freezing). A cgroup gone (its container ended) is fine. */
export async function thaw(f: FreezerPaths | undefined): Promise<boolean> {
  if (f === undefined) return false;
  try {
    const was = f.version === 1 ? (await readFile(`${f.dir}/freezer.state`, 'utf8')).trim() !== 'THAWED' : (await readFile(`${f.dir}/cgroup.freeze`, 'utf8')).trim() === '1';
    if (was) await writeState(f, false);
    return was;
  } catch {
    return false;
  }
}
