/**
 * The filesystem before the freeze (diff mode): the overlay upper dir is copied while the
 * container still runs, and after the freeze only what changed since goes, with deletions,
 * the way p.haul's "preliminary FS migration" did.
 *
 * Before the pre-copy starts, `snapshotTree` notes every entry (path, inode, type) and the
 * time; while it runs, the pre-copy's tar names every entry it archived (`archived`: the
 * container may create and delete files meanwhile). After the freeze, `changesSince` walks
 * the dir again: an entry whose inode change time (ctime: set by every write, chmod, chown,
 * xattr change, rename or link, and by nothing a process can forge) is not older than the
 * snapshot, or that is new, is sent again; an entry whose inode or type differs, or that
 * the pre-copy may hold in another form (archived but not in the snapshot), is deleted on
 * the target first; an entry the target may hold that is gone is deleted.
 * A directory whose entries changed has a new ctime itself, so its mode and times follow.
 * Large files (regular, one link, at least BLOCK_FILE_MIN_BYTES at the snapshot: a
 * database's tablespaces and logs, rewritten in place) go by blocks instead of by tar, in the
 * pre-copy and after the freeze (block-delta.ts): only their changed blocks go again.
 * The result on the target equals a copy of the frozen upper dir (checked in tests).
 */
import type { BigIntStats } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Changes within this long before the snapshot count as changes after it: file systems
 * keep ctime at the kernel's clock tick, which may lag the wall clock a process reads.
 */
export const CTIME_SLACK_MS = 2000;

export interface TreeEntry {
  ino: bigint;
  /** The file type bits of st_mode (S_IFMT). */
  type: number;
}

/** Regular files of at least this size (with one link) go by blocks, not by tar. */
export const BLOCK_FILE_MIN_BYTES = 4 * 1024 * 1024;

export interface TreeSnapshot {
  /** Wall clock when the walk began (ms). */
  takenAtMs: number;
  /** Relative path ("a/b") → what it was. */
  entries: Map<string, TreeEntry>;
  /** What the pre-copy's archive holds (filled while it runs). */
  archived: Set<string>;
  /** The large files, which the pre-copy sends by blocks (the archive leaves them out). */
  blockFiles: Set<string>;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

interface Stat {
  ino: bigint;
  mode: number;
  ctimeMs: number;
  size: number;
  nlink: number;
}

const isBlockFile = (st: Stat, minBytes: number) => (st.mode & S_IFMT) === S_IFREG && st.nlink === 1 && st.size >= minBytes;

/**
 * Every entry under `dir` (not `dir` itself), depth first: each directory right before its
 * contents, so that tar, extracting a list in this order, sets a directory's times once its
 * contents are in. Symlinks are not followed.
 */
async function walk(dir: string, visit: (rel: string, st: Stat) => void, rel = ''): Promise<void> {
  const names: string[] = [];
  try {
    for await (const entry of await opendir(rel === '' ? dir : join(dir, rel))) names.push(entry.name);
  } catch (err) {
    // A directory of a running container that went meanwhile: nothing of it to note.
    if (rel !== '' && isGone(err)) return;
    throw err;
  }
  for (const name of names) {
    const path = rel === '' ? name : `${rel}/${name}`;
    let st: BigIntStats;
    try {
      st = await lstat(join(dir, path), { bigint: true });
    } catch (err) {
      if (isGone(err)) continue; // deleted between the listing and now
      throw err;
    }
    visit(path, { ino: st.ino, mode: Number(st.mode), ctimeMs: Number(st.ctimeNs / 1_000_000n), size: Number(st.size), nlink: Number(st.nlink) });
    if ((Number(st.mode) & S_IFMT) === S_IFDIR) await walk(dir, visit, path);
  }
}

const isGone = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR';

/** What is under `dir` now, and when the walk began. */
export async function snapshotTree(dir: string, options: { now?: () => number; blockFileMinBytes?: number } = {}): Promise<TreeSnapshot> {
  const takenAtMs = (options.now ?? Date.now)();
  const entries = new Map<string, TreeEntry>();
  const blockFiles = new Set<string>();
  await walk(dir, (rel, st) => {
    entries.set(rel, { ino: st.ino, type: st.mode & S_IFMT });
    // (A name with a newline goes by tar: the archive's exclusion list is one name per line.)
    if (isBlockFile(st, options.blockFileMinBytes ?? BLOCK_FILE_MIN_BYTES) && !rel.includes('\n')) blockFiles.add(rel);
  });
  return { takenAtMs, entries, archived: new Set(), blockFiles };
}

export interface TreeChanges {
  /** Entries to send again by tar, depth first ("." for the directory itself: its mode and times). */
  changed: string[];
  /** Large files to send again by blocks: changed, block files at the snapshot, and still regular files with one link. */
  blocks: string[];
  /** Entries to delete on the target before the changed ones arrive (gone, or replaced by another inode or type); no entry under another one listed. */
  deleted: string[];
}

/** What changed under `dir` since `snapshot` (see the top of this file). */
export async function changesSince(dir: string, snapshot: TreeSnapshot): Promise<TreeChanges> {
  const since = snapshot.takenAtMs - CTIME_SLACK_MS;
  const changed: string[] = [];
  const blocks: string[] = [];
  const replaced: string[] = [];
  const seen = new Set<string>();
  await walk(dir, (rel, st) => {
    seen.add(rel);
    const before = snapshot.entries.get(rel);
    // Not in the snapshot but archived: created during the pre-copy, perhaps replaced since by another type.
    if (before === undefined ? snapshot.archived.has(rel) : before.ino !== st.ino || before.type !== (st.mode & S_IFMT)) replaced.push(rel);
    if (before === undefined || before.ino !== st.ino || before.type !== (st.mode & S_IFMT) || st.ctimeMs >= since) (snapshot.blockFiles.has(rel) && isBlockFile(st, 0) ? blocks : changed).push(rel);
  });
  const gone = [...new Set([...snapshot.entries.keys(), ...snapshot.archived])].filter((rel) => !seen.has(rel));
  const root = await lstat(dir, { bigint: true });
  if (Number(root.ctimeNs / 1_000_000n) >= since) changed.unshift('.');
  return { changed, blocks, deleted: outermost([...gone, ...replaced]) };
}

/** The paths not under another path of the list (deleting a directory deletes what it held), sorted. */
function outermost(paths: string[]): string[] {
  const sorted = [...new Set(paths)].sort();
  const out: string[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && p.startsWith(`${last}/`)) continue;
    out.push(p);
  }
  return out;
}
