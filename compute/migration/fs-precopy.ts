/**
 * The filesystem before the freeze (diff mode): the overlay upper dir is copied while the
 * container still runs, and after the freeze only what changed since goes, with deletions,
 * the way p.haul's "preliminary FS migration" did.
 *
 * Before the pre-copy starts, `snapshotTree` notes every entry (path, inode, type) and the
 * time; while it runs, the pre-copy's tar names every entry it archived (`archived`: the
 * container may create and delete files meanwhile). After the freeze, `changesSince` walks
 * the dir again: an entry whose inode change time (ctime: set by every write(2), chmod, chown,
 * xattr change, rename or link, and by nothing a process can forge) is not older than the
 * snapshot, or that is new, or that the caller names as written (a file mapped shared and
 * writable, written through its map: that may set no ctime, see shared-mappings.ts), is sent
 * again; an entry whose inode or type differs, or that
 * the pre-copy may hold in another form (archived but not in the snapshot), is deleted on
 * the target first; an entry the target may hold that is gone is deleted. What the target
 * deletes goes again whole (entries moved under a replaced directory keep their old ctime),
 * and so does an entry the pre-copy's archive lacks (a directory on its way was moved away
 * while tar ran, and back: a move changes the ctime of what moved, not of what it holds).
 * A directory whose entries changed has a new ctime itself, so its mode and times follow; the
 * directory of an entry sent again goes too (tar re-creating the entry sets its mtime), and so
 * do all names of a hard-linked inode (tar links only names it archives together).
 * A regular file whose size differs from the snapshot's goes again too: the kernel stamps ctime
 * when a write(2) begins, so one long write that began before the snapshot and went on while the
 * pre-copy read the file leaves an older ctime.
 * Known limitations: if, while a directory was away, tar archived another entry at the path of
 * one that keeps its old ctime, that one does not go again (the archive names paths, not inodes).
 * One write(2) that overwrites a file in place (its size unchanged) for longer than the slack,
 * from before the snapshot into the pre-copy's read, is not seen either.
 * Large files (regular, one link, at least BLOCK_FILE_MIN_BYTES at the snapshot: a
 * database's tablespaces and logs, rewritten in place) go by blocks instead of by tar, in the
 * pre-copy and after the freeze (block-delta.ts): only their changed blocks go again. One
 * under a directory that may have moved meanwhile (it and its parent changed) goes to the block
 * stream too: the target's block state knows whether the pre-copy's stream missed it.
 * The result on the target equals a copy of the frozen upper dir (checked in tests, on random
 * trees changing at random points in fs-precopy.property.test.ts).
 */
import { lstatSync, readdirSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { decodeName, fsPath } from './byte-names.ts';

/**
 * Changes within this long before the snapshot count as changes after it. A file system
 * stamps ctime with the kernel's coarse clock, up to a tick (10 ms at HZ=100) behind the
 * clock a process reads, cut to its granularity: a nanosecond on ext4 (with its default
 * 256-byte inodes), xfs, btrfs and tmpfs, a whole second on ext4 with 128-byte inodes.
 * `fine` covers granularities under a millisecond plus the tick; `coarse` any up to 2 s.
 */
export const CTIME_SLACK_MS = { fine: 100, coarse: 2000 } as const;

/**
 * The slack for a file system, from ctimes it gave: `fine` once one of them is not a whole
 * millisecond (no file system with a coarser granularity gives such a time), else `coarse`.
 */
export function ctimeSlackMs(ctimesNs: Iterable<bigint>): number {
  for (const ns of ctimesNs) if (ns % 1_000_000n !== 0n) return CTIME_SLACK_MS.fine;
  return CTIME_SLACK_MS.coarse;
}

export interface TreeEntry {
  ino: bigint;
  /** The file type bits of st_mode (S_IFMT). */
  type: number;
  /** Its size then (bytes). */
  size: number;
}

/** Regular files of at least this size (with one link) go by blocks, not by tar. */
export const BLOCK_FILE_MIN_BYTES = 4 * 1024 * 1024;

export interface TreeSnapshot {
  /** Wall clock when the walk began (ms). */
  takenAtMs: number;
  /** The monotonic clock then (performance.now()): tells whether the wall clock was stepped back since. */
  takenAtMonotonicMs: number;
  /** How long before takenAtMs a ctime still counts as a change (CTIME_SLACK_MS, by the file system's granularity). */
  ctimeSlackMs: number;
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
const S_IFLNK = 0o120000;

interface Stat {
  ino: bigint;
  mode: number;
  ctimeNs: bigint;
  size: number;
  nlink: number;
}

const isBlockFile = (st: Stat, minBytes: number) => (st.mode & S_IFMT) === S_IFREG && st.nlink === 1 && st.size >= minBytes;

/** Entries the walk stats between two turns of the event loop. */
const WALK_BATCH = 1000;

/**
 * Every entry under `dir` (not `dir` itself), depth first: each directory right before its
 * contents, so that tar, extracting a list in this order, sets a directory's times once its
 * contents are in. Symlinks are not followed. Names that are not valid UTF-8 are named exactly
 * (byte-names.ts), as are all the paths this file gives.
 *
 * Synchronous calls, with a turn of the event loop every WALK_BATCH entries: after the freeze
 * the walk runs while the images' and the large files' senders keep both cores busy, and an
 * await per entry then waited for the scheduler each time (a 229-entry tree took 45-134 ms
 * instead of 13 ms).
 */
async function walk(dir: string, visit: (rel: string, st: Stat) => void): Promise<void> {
  let sinceTurn = 0;
  const inner = async (rel: string): Promise<void> => {
    let names: string[];
    try {
      names = readdirSync(fsPath(rel === '' ? dir : join(dir, rel)), { encoding: 'buffer' }).map(decodeName);
    } catch (err) {
      // A directory of a running container that went meanwhile: nothing of it to note.
      if (rel !== '' && isGone(err)) return;
      throw err;
    }
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      let st: BigIntStats;
      try {
        st = lstatSync(fsPath(join(dir, path)), { bigint: true });
      } catch (err) {
        if (isGone(err)) continue; // deleted between the listing and now
        throw err;
      }
      visit(path, { ino: st.ino, mode: Number(st.mode), ctimeNs: st.ctimeNs, size: Number(st.size), nlink: Number(st.nlink) });
      if (++sinceTurn >= WALK_BATCH) {
        sinceTurn = 0;
        await new Promise((r) => setImmediate(r));
      }
      if ((Number(st.mode) & S_IFMT) === S_IFDIR) await inner(path);
    }
  };
  await inner('');
}

const isGone = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR';

/** What is under `dir` now, and when the walk began. */
export async function snapshotTree(dir: string, options: { blockFileMinBytes?: number } = {}): Promise<TreeSnapshot> {
  const takenAtMs = Date.now();
  const takenAtMonotonicMs = performance.now();
  const entries = new Map<string, TreeEntry>();
  const blockFiles = new Set<string>();
  const ctimesNs = [lstatSync(dir, { bigint: true }).ctimeNs];
  await walk(dir, (rel, st) => {
    entries.set(rel, { ino: st.ino, type: st.mode & S_IFMT, size: st.size });
    if (ctimesNs.length < 64) ctimesNs.push(st.ctimeNs);
    // (A name with a newline goes by tar: the archive's exclusion list is one name per line.)
    if (isBlockFile(st, options.blockFileMinBytes ?? BLOCK_FILE_MIN_BYTES) && !rel.includes('\n')) blockFiles.add(rel);
  });
  return { takenAtMs, takenAtMonotonicMs, ctimeSlackMs: ctimeSlackMs(ctimesNs), entries, archived: new Set(), blockFiles };
}

export interface TreeChanges {
  /** Entries to send again by tar, depth first ("." for the directory itself: its mode and times). */
  changed: string[];
  /** Large files to send again by blocks: changed (or perhaps missed), block files at the snapshot, still regular files with one link, not deleted on the target. */
  blocks: string[];
  /** Entries to delete on the target before the changed ones arrive (gone, or replaced by another inode or type); no entry under another one listed. */
  deleted: string[];
}

/**
 * What changed under `dir` since `snapshot` (see the top of this file). `written` names entries
 * that count as changed whatever their ctime says: files written through a shared map, which
 * keeps it (shared-mappings.ts).
 */
export async function changesSince(dir: string, snapshot: TreeSnapshot, written: { has(rel: string): boolean } = new Set()): Promise<TreeChanges> {
  // A wall clock stepped back since the snapshot (NTP, a VM resumed) stamps later changes with earlier times: go back as far.
  const steppedBackMs = Math.max(0, performance.now() - snapshot.takenAtMonotonicMs - (Date.now() - snapshot.takenAtMs));
  const sinceNs = BigInt(Math.floor(snapshot.takenAtMs - snapshot.ctimeSlackMs - steppedBackMs)) * 1_000_000n;
  const root = lstatSync(dir, { bigint: true });
  const walked: { rel: string; st: Stat; send: boolean }[] = [];
  const replaced: string[] = [];
  const seen = new Set<string>();
  /** Directories changed since the snapshot ("." the root). */
  const recent = new Set<string>(root.ctimeNs >= sinceNs ? ['.'] : []);
  await walk(dir, (rel, st) => {
    seen.add(rel);
    const before = snapshot.entries.get(rel);
    const other = before !== undefined && (before.ino !== st.ino || before.type !== (st.mode & S_IFMT));
    // Not in the snapshot but archived: created during the pre-copy, perhaps replaced since by another type.
    if (before === undefined ? snapshot.archived.has(rel) : other) replaced.push(rel);
    if ((st.mode & S_IFMT) === S_IFDIR && st.ctimeNs >= sinceNs) recent.add(rel);
    // In the snapshot and now, but not in the pre-copy's archive (a directory on its way was moved
    // away while tar ran, and back): the target lacks it, whatever its ctime says.
    const unarchived = before !== undefined && !snapshot.archived.has(rel) && !snapshot.blockFiles.has(rel);
    // A file whose size changed although its ctime did not: one write(2) that began before the
    // snapshot (the kernel stamps the time as a write begins) and went on while it was copied.
    const resized = before !== undefined && !other && (st.mode & S_IFMT) === S_IFREG && st.size !== before.size;
    walked.push({ rel, st, send: before === undefined || other || st.ctimeNs >= sinceNs || unarchived || resized || written.has(rel) });
  });
  const gone = [...new Set([...snapshot.entries.keys(), ...snapshot.archived])].filter((rel) => !seen.has(rel));
  const deleted = outermost([...gone, ...replaced]);
  // What the target deletes it must get again whole, by tar: an entry moved under a replaced
  // directory keeps its old ctime, and a replaced large file's block state (the pre-copy may have
  // sent the new inode) describes a copy the pruner deletes.
  const deletedSet = new Set(deleted);
  const parentOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '.');
  /** Directories deleted on the target, or under one (the walk meets a directory before its entries). */
  const again = new Set<string>();
  /** Directories that may have moved away and back, or under one: it changed, and so did its parent (a rename changes both). */
  const moved = new Set<string>();
  const blocks: string[] = [];
  const byTar = new Set<string>();
  for (const { rel, st, send } of walked) {
    const parent = parentOf(rel);
    const whole = deletedSet.has(rel) || again.has(parent);
    if ((st.mode & S_IFMT) === S_IFDIR) {
      if (whole) again.add(rel);
      if (moved.has(parent) || (recent.has(rel) && recent.has(parent))) moved.add(rel);
    }
    const blockFile = !whole && snapshot.blockFiles.has(rel) && isBlockFile(st, 0);
    // A large file the pre-copy's block stream may have missed (a directory on its way moved away
    // while it ran, and back) goes to the block stream too: the target's block state tells whether
    // it holds the file (then it costs a hash here) or not (then it goes whole).
    if (!send && !whole && !(blockFile && moved.has(parent))) continue;
    if (blockFile) blocks.push(rel);
    else byTar.add(rel);
  }
  // tar keeps a hard link (of files and symlinks) only between names it archives together: all names of an inode go, or none.
  const names = new Map<bigint, string[]>();
  for (const { rel, st } of walked) {
    if (st.nlink > 1 && ((st.mode & S_IFMT) === S_IFREG || (st.mode & S_IFMT) === S_IFLNK)) names.get(st.ino)?.push(rel) ?? names.set(st.ino, [rel]);
  }
  for (const same of names.values()) if (same.some((rel) => byTar.has(rel))) for (const rel of same) byTar.add(rel);
  // Extracting an entry that is no directory replaces it (unlink, create), which sets its parent's
  // mtime on the target: the parent goes too, even when unchanged, so that tar sets its times back.
  const parents = new Set([...byTar].map(parentOf));
  const changed = walked.filter(({ rel }) => byTar.has(rel) || parents.has(rel)).map(({ rel }) => rel);
  if (recent.has('.') || parents.has('.')) changed.unshift('.');
  return { changed, blocks, deleted };
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
