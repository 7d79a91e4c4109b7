/**
 * Carries deletions across a "full" filesystem migration. The full mode sends
 * `docker export` (the container's merged view) and untars it into the target
 * container's overlay upper dir; a file the container had deleted from its image is
 * absent from that tar, so the target's overlay would show the image's copy again.
 * hideDeletedLowerPaths walks the union of the lower layers and puts an overlayfs
 * whiteout (a character device 0:0) in the upper dir for every name the lower view
 * has and the extracted tree lacks. Run it after the extraction, before the start.
 *
 * The lower view follows overlay semantics: a whiteout in a higher lower layer hides
 * the name below it, a non-directory hides everything below it, and a directory with
 * `trusted.overlay.opaque=y` hides the same directory in the layers below. Node cannot
 * read xattrs, so the opaque flags are read with GNU tar (`--xattrs`, which Herd
 * already needs for the diff mode): one `tar -c --no-recursion` per tree level, and
 * only for directories that are merged from two or more layers. The `x` value (a
 * directory holding overlay "xwhiteouts", kernel 6.7+) is not opaque; xwhiteouts
 * themselves and `redirect`/`metacopy` xattrs are not understood (Docker's layers,
 * extracted from image tars, have none of them).
 *
 * Only `trusted.*` xattrs are read (rootful Docker); a rootless daemon's `userxattr`
 * layers (`user.overlay.opaque`) are not supported.
 *
 * Node has no mknod either: the whiteouts are written as one tar stream of character
 * devices piped into a single `tar -x`. Measured for 10k whiteouts on a lab VM: 0.2-3 s
 * that way (nearly all of it the kernel's mknodat), 8.6 s with `sh -c 'for p; do mknod
 * ...'` in batches of 1000, 35 s with one `mknod` process per file (8 at a time). The
 * upper directories that receive whiteouts get their times back, so the target's
 * merged view keeps the times the export carried.
 *
 * Paths are handled as raw bytes (names need not be UTF-8; spaces and newlines are
 * fine), symlinks are never followed, and the upper dir is compared by readdir rather
 * than one lstat per entry.
 */
import { spawn } from 'node:child_process';
import type { Dirent } from 'node:fs';
import { lstat, lutimes, readdir, stat } from 'node:fs/promises';
import { HerdError } from '../../protocol/errors.ts';

/** Concurrent directory reads of one tree level. */
const READ_CONCURRENCY = 16;

const SLASH = Buffer.from('/');

/** A directory of the lower view still to visit: its path relative to the roots, and the lower layers (indices, top first) it is merged from. */
interface PendingDir {
  rel: Buffer;
  layers: number[];
}

/** A name in one directory of the lower view. */
interface LowerEntry {
  /** Hidden by a whiteout in a higher layer: not part of the lower view. */
  whiteout: boolean;
  isDir: boolean;
  /** Layers the directory is merged from (top first); only for directories. */
  layers: number[];
  /** A non-directory or whiteout was met below: lower layers add nothing more. */
  closed: boolean;
}

/** A directory of the upper dir that receives whiteouts, with its times to put back. */
interface TouchedDir {
  rel: Buffer;
  /** Seconds, as lutimes takes them. */
  atime: number;
  mtime: number;
}

function join(rel: Buffer, name: Buffer): Buffer {
  return rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]);
}

function under(root: string, rel: Buffer): Buffer {
  return rel.length === 0 ? Buffer.from(root) : Buffer.concat([Buffer.from(root), SLASH, rel]);
}

function show(path: Buffer | string): string {
  return JSON.stringify(typeof path === 'string' ? path : path.toString('utf8'));
}

function failed(message: string, cause?: unknown): HerdError {
  return new HerdError('TRANSFER_FAILED', `hiding deleted files: ${message}`, cause === undefined ? {} : { cause });
}

async function readDir(path: Buffer): Promise<Dirent<Buffer>[]> {
  try {
    return await readdir(path, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    throw failed(`cannot read ${show(path)}: ${(err as Error).message}`, err);
  }
}

async function isWhiteout(path: Buffer): Promise<boolean> {
  try {
    const s = await lstat(path);
    return s.isCharacterDevice() && s.rdev === 0;
  } catch (err) {
    throw failed(`cannot stat ${show(path)}: ${(err as Error).message}`, err);
  }
}

/** Runs `work` over `items` with at most `limit` in flight; the first failure stops the rest. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let stopped = false;
  const worker = async (): Promise<void> => {
    while (!stopped && next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item);
      } catch (err) {
        stopped = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Runs a program with `input` on stdin; resolves with its stdout, fails with TRANSFER_FAILED on a non-zero exit. */
function run(program: string, args: string[], input: Buffer, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4000) stderr += d.toString();
    });
    child.on('error', (err) => reject(failed(`${what}: cannot run ${program}: ${err.message}`, err)));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(failed(`${what}: ${program} exited ${code ?? 'by signal'}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
    child.stdin.on('error', () => undefined); // an early exit surfaces through 'close'
    child.stdin.end(input);
  });
}

function octal(buf: Buffer, start: number, length: number): number {
  const text = buf.toString('latin1', start, start + length).replace(/\0.*$/s, '').trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

/**
 * The `trusted.overlay.opaque=y` flag of each directory in `paths`, in order: GNU tar
 * archives them without recursion (headers only, directories have no data) and the
 * PAX records are read back. Exported for the tests.
 */
export async function opaqueFlags(paths: readonly Buffer[]): Promise<boolean[]> {
  if (paths.length === 0) return [];
  const input = Buffer.concat(paths.flatMap((p) => [p, Buffer.from([0])]));
  const args = ['-c', '-f', '-', '--format=posix', '--xattrs', '--xattrs-include=trusted.overlay.opaque', '--no-recursion', '--absolute-names', '--null', '--verbatim-files-from', '-T', '-'];
  const tar = await run('tar', args, input, 'reading overlay opaque flags');
  const flags: boolean[] = [];
  let opaque = false;
  for (let off = 0; off + 512 <= tar.length; ) {
    if (tar.subarray(off, off + 512).every((b) => b === 0)) break;
    const type = String.fromCharCode(tar[off + 156] ?? 0);
    const size = octal(tar, off + 124, 12);
    const data = off + 512;
    if (type === 'x') {
      // Records are "<length> <key>=<value>\n", the length counting the whole record in bytes.
      for (let r = data; r < data + size; ) {
        const space = tar.indexOf(0x20, r);
        const length = Number.parseInt(tar.toString('latin1', r, space), 10);
        if (space < 0 || !(length > 0)) break;
        const record = tar.subarray(space + 1, r + length - 1);
        const eq = record.indexOf(0x3d);
        if (record.toString('latin1', 0, eq) === 'SCHILY.xattr.trusted.overlay.opaque') opaque = record.toString('latin1', eq + 1) === 'y';
        r += length;
      }
    } else if (type !== 'g') {
      flags.push(opaque);
      opaque = false;
    }
    off = data + Math.ceil(size / 512) * 512;
  }
  if (flags.length !== paths.length) throw failed(`reading overlay opaque flags: tar listed ${flags.length} of ${paths.length} directories`);
  return flags;
}

/** Keeps, for every directory merged from several layers, only the layers down to the first opaque one. */
async function applyOpaque(level: PendingDir[], lowerDirs: readonly string[]): Promise<void> {
  const asked: { dir: PendingDir; position: number }[] = [];
  for (const dir of level) {
    // The bottom-most layer's flag changes nothing: there is nothing below it to hide.
    for (let position = 0; position < dir.layers.length - 1; position++) asked.push({ dir, position });
  }
  if (asked.length === 0) return;
  const flags = await opaqueFlags(asked.map(({ dir, position }) => under(lowerDirs[dir.layers[position] as number] as string, dir.rel)));
  // `asked` lists each directory's layers top first, so the first opaque one found is the highest.
  const cut = new Map<PendingDir, number>();
  asked.forEach(({ dir, position }, i) => {
    if (flags[i] === true && !cut.has(dir)) cut.set(dir, position);
  });
  for (const [dir, position] of cut) dir.layers = dir.layers.slice(0, position + 1);
}

/** One GNU tar header block (ustar fields, GNU magic). */
function tarHeader(name: Buffer, type: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(512);
  name.copy(h, 0, 0, Math.min(name.length, 100));
  h.write('0000000\0', 100, 'latin1'); // mode 0, as the kernel and Docker make whiteouts
  h.write('0000000\0', 108, 'latin1'); // uid
  h.write('0000000\0', 116, 'latin1'); // gid
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write(`${mtime.toString(8).padStart(11, '0')}\0`, 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write('ustar  \0', 257, 'latin1');
  h.write('0000000\0', 329, 'latin1'); // devmajor
  h.write('0000000\0', 337, 'latin1'); // devminor
  h.write('        ', 148, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

/** A tar stream of whiteouts (character devices 0:0) at the relative paths given; long names as GNU long-name records (raw bytes, no charset conversion). */
export function whiteoutTar(paths: readonly Buffer[]): Buffer {
  const mtime = Math.floor(Date.now() / 1000);
  const blocks: Buffer[] = [];
  for (const path of paths) {
    if (path.length > 100) {
      blocks.push(tarHeader(Buffer.from('././@LongLink'), 'L', path.length + 1, 0));
      const data = Buffer.alloc(Math.ceil((path.length + 1) / 512) * 512);
      path.copy(data);
      blocks.push(data);
    }
    blocks.push(tarHeader(path, '3', 0, mtime));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/**
 * Puts a whiteout into `upperDir` for every path of the lower view (the union of
 * `lowerDirs`, top-most first as Docker's LowerDir lists them) that `upperDir` lacks.
 * Does not descend below a path it hides, nor where the upper dir has a non-directory.
 * Throws TRANSFER_FAILED naming the directory when a lower dir is missing.
 */
export async function hideDeletedLowerPaths(upperDir: string, lowerDirs: readonly string[]): Promise<{ whiteouts: number }> {
  for (const [what, dir] of [['upper dir', upperDir], ...lowerDirs.map((d) => ['lower dir', d])] as const) {
    const s = await stat(dir).catch((err: unknown) => {
      throw failed(`${what} ${show(dir)} is missing: ${(err as Error).message}`, err);
    });
    if (!s.isDirectory()) throw failed(`${what} ${show(dir)} is not a directory`);
  }
  const whiteouts: Buffer[] = [];
  const touched: TouchedDir[] = [];
  let level: PendingDir[] = lowerDirs.length === 0 ? [] : [{ rel: Buffer.alloc(0), layers: lowerDirs.map((_, i) => i) }];
  while (level.length > 0) {
    await applyOpaque(level, lowerDirs);
    const next: PendingDir[] = [];
    await forEachLimited(level, READ_CONCURRENCY, async (dir) => {
      const upperPath = under(upperDir, dir.rel);
      const upper = new Map<string, boolean>();
      for (const e of await readDir(upperPath)) upper.set(e.name.toString('latin1'), e.isDirectory());
      const lower = new Map<string, LowerEntry & { name: Buffer }>();
      for (const layer of dir.layers) {
        const layerPath = under(lowerDirs[layer] as string, dir.rel);
        for (const e of await readDir(layerPath)) {
          const key = e.name.toString('latin1');
          const seen = lower.get(key);
          if (seen === undefined) {
            const whiteout = e.isCharacterDevice() && (await isWhiteout(Buffer.concat([layerPath, SLASH, e.name])));
            const isDir = !whiteout && e.isDirectory();
            lower.set(key, { name: e.name, whiteout, isDir, layers: isDir ? [layer] : [], closed: !isDir });
          } else if (!seen.closed) {
            if (e.isDirectory()) seen.layers.push(layer);
            else seen.closed = true; // a file or whiteout under a directory ends the merge
          }
        }
      }
      let hid = false;
      for (const [key, entry] of lower) {
        if (entry.whiteout) continue;
        const upperIsDir = upper.get(key);
        if (upperIsDir === undefined) {
          whiteouts.push(join(dir.rel, entry.name));
          hid = true;
        } else if (upperIsDir && entry.isDir) {
          next.push({ rel: join(dir.rel, entry.name), layers: entry.layers });
        }
      }
      if (hid) {
        const s = await lstat(upperPath).catch((err: unknown) => {
          throw failed(`cannot stat ${show(upperPath)}: ${(err as Error).message}`, err);
        });
        touched.push({ rel: dir.rel, atime: s.atimeMs / 1000, mtime: s.mtimeMs / 1000 });
      }
    });
    level = next;
  }
  if (whiteouts.length > 0) {
    // --keep-old-files: never replace anything the extraction put there.
    await run('tar', ['-x', '-f', '-', '--keep-old-files', '--numeric-owner', '-C', upperDir], whiteoutTar(whiteouts), `creating ${whiteouts.length} whiteouts in ${show(upperDir)}`);
    for (const dir of touched) {
      await lutimes(under(upperDir, dir.rel), dir.atime, dir.mtime).catch((err: unknown) => {
        throw failed(`cannot restore the times of ${show(under(upperDir, dir.rel))}: ${(err as Error).message}`, err);
      });
    }
  }
  return { whiteouts: whiteouts.length };
}
