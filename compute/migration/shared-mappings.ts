/**
 * Files a container's processes map shared and writable (MAP_SHARED with PROT_WRITE: SQLite's
 * `-shm` wal-index, LMDB, MyISAM with `myisam_use_mmap`, a process's own shared memory file).
 * A write through such a map changes the file without changing its ctime: the kernel stamps
 * times only when a clean page first faults writable (and not even then for a page already
 * dirty in the page cache; measured on this kernel: a file written through its map for 0.6 s
 * kept its ctime). The filesystem pre-copy tells what changed before the freeze by ctime
 * (fs-precopy.ts), so these files go again after it whatever their ctime says.
 *
 * Read from /proc/<pid>/maps, whose paths are those inside the container (its mount
 * namespace), named exactly (byte-names.ts): `treeRelative` turns one into a path in a tree
 * the migration carries (the upper dir at `/`, a named volume at its mount point). The source
 * reads them when the pre-copy starts, every 500 ms while it runs, and at the freeze: a map made
 * and unmade entirely between two reads is not seen.
 */
import { readFileSync } from 'node:fs';
import { decodeName } from './byte-names.ts';

/** The container paths of files that any of `pids` maps shared and writable now (processes that ended are skipped). */
export function sharedWritableFiles(pids: readonly number[], procRoot = '/proc'): Set<string> {
  const out = new Set<string>();
  for (const pid of pids) {
    let maps: string;
    try {
      maps = decodeName(readFileSync(`${procRoot}/${pid}/maps`));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') continue; // ended meanwhile
      throw err;
    }
    for (const path of parseSharedWritable(maps)) out.add(path);
  }
  return out;
}

/**
 * The paths of the shared, writable file maps in the text of a maps file. A line is
 * `start-end perms offset dev inode path`, perms like `rw-s`; anonymous and special maps have
 * inode 0 or no absolute path. The kernel writes a newline in a name as `\012`, and appends
 * ` (deleted)` to an unlinked file's name: both readings are kept (an extra one costs a lookup).
 */
export function parseSharedWritable(maps: string): string[] {
  const out: string[] = [];
  for (const line of maps.split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ (\d+) +(\/.*)$/.exec(line);
    if (m === null) continue;
    const [, perms, inode, path] = m as unknown as [string, string, string, string];
    if (perms[1] !== 'w' || perms[3] !== 's' || inode === '0') continue;
    const unescaped = path.replaceAll('\\012', '\n');
    out.push(path);
    if (unescaped !== path) out.push(unescaped);
    if (path.endsWith(' (deleted)')) out.push(unescaped.slice(0, -' (deleted)'.length));
  }
  return out;
}

/**
 * `path` (inside the container) relative to the tree mounted at `mountedAt`, or undefined when
 * another of the container's mounts (`mounts`, destinations) holds it more closely, or it is
 * outside. The root file system (the upper dir) is mounted at `/`.
 */
export function treeRelative(path: string, mountedAt: string, mounts: readonly string[]): string | undefined {
  const clean = (m: string) => m.replace(/\/+$/, '') || '/';
  const at = clean(mountedAt);
  const under = (p: string, m: string) => m === '/' || p === m || p.startsWith(`${m}/`);
  if (!under(path, at)) return undefined;
  if (mounts.map(clean).some((m) => m.length > at.length && under(path, m) && under(m, at))) return undefined;
  const rel = at === '/' ? path.slice(1) : path.slice(at.length + 1);
  return rel === '' ? undefined : rel;
}
