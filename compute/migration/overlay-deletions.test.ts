import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HerdError } from '../../protocol/errors.ts';
import { hideDeletedLowerPaths } from './overlay-deletions.ts';

// A real overlayfs: three lower layers (L0 on top, like Docker's init layer; L1 made
// through an overlay over L2, so its whiteout and opaque directory are the kernel's
// own), a "source" container that deletes and adds files, its merged view tarred into
// the upper dir of a "target" over the same lowers, as the full migration mode does.

const root = mkdtempSync(join(tmpdir(), 'herd-overlay-'));
const dir = (...parts: string[]) => join(root, ...parts);
const mounts: string[] = [];

/** A path as bytes: `name` may be a Buffer (a name that is not UTF-8). */
function bpath(base: string, ...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat([Buffer.from(base), ...parts.flatMap((p) => [Buffer.from('/'), Buffer.from(p)])]);
}

const LATIN1_NAME = Buffer.from('lat\xe9', 'latin1'); // not valid UTF-8
const ODD_DIR = 'dir with space/ünï\nsub';
const OLD_TIME = new Date('2020-02-02T02:02:02Z');
const LONG = `${'a'.repeat(60)}/${'b'.repeat(60)}`; // makes paths longer than a tar name field

function mountOverlay(lowers: string[], upper: string, work: string, merged: string): void {
  mkdirSync(work, { recursive: true });
  mkdirSync(merged, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, merged], { stdio: 'pipe' });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message;
    throw new Error(
      `cannot mount overlayfs at ${merged} (${stderr}): this test needs root (CAP_SYS_ADMIN), the mount program (util-linux) ` +
        `and the overlay filesystem in the kernel (modprobe overlay; /proc/filesystems lists "overlay"), on a ${tmpdir()} that supports trusted xattrs and d_type`,
    );
  }
  mounts.push(merged);
}

function umount(merged: string): void {
  execFileSync('umount', [merged]);
  mounts.splice(mounts.indexOf(merged), 1);
}

function file(path: string | Buffer, content: string, mode = 0o644): void {
  writeFileSync(path, content, { mode });
}

/** Every entry under `base`: path (hex when not UTF-8) to type, mode, owner, content checksum or link target, mtime in seconds. */
function listTree(base: string): Record<string, string> {
  const out: Record<string, string> = {};
  const stack: Buffer[] = [Buffer.alloc(0)];
  while (stack.length > 0) {
    const rel = stack.pop() as Buffer;
    const abs = rel.length === 0 ? Buffer.from(base) : bpath(base, rel);
    for (const name of readdirSync(abs, { encoding: 'buffer' })) {
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      const childAbs = bpath(base, childRel);
      const s = lstatSync(childAbs);
      const utf8 = childRel.toString('utf8');
      const key = Buffer.from(utf8).equals(childRel) ? utf8 : `hex:${childRel.toString('hex')}`;
      const common = `mode=${(s.mode & 0o7777).toString(8)} owner=${s.uid}:${s.gid}`;
      if (s.isDirectory()) {
        out[key] = `dir ${common} mtime=${Math.floor(s.mtimeMs / 1000)}`;
        stack.push(childRel);
      } else if (s.isFile()) {
        out[key] = `file ${common} mtime=${Math.floor(s.mtimeMs / 1000)} sha256=${createHash('sha256').update(readFileSync(childAbs)).digest('hex')}`;
      } else if (s.isSymbolicLink()) {
        out[key] = `symlink ${common} -> ${readlinkSync(childAbs, { encoding: 'buffer' }).toString('hex')}`;
      } else if (s.isCharacterDevice()) {
        out[key] = `chardev ${common} rdev=${s.rdev}`;
      } else {
        out[key] = `other ${common}`;
      }
    }
  }
  const rootStat = lstatSync(base);
  out['.'] = `dir mode=${(rootStat.mode & 0o7777).toString(8)} mtime=${Math.floor(rootStat.mtimeMs / 1000)}`;
  return out;
}

/** The whiteouts (character devices 0:0) under `base`, as paths (hex when not UTF-8). */
function whiteoutsIn(base: string): string[] {
  const found: string[] = [];
  const stack: Buffer[] = [Buffer.alloc(0)];
  while (stack.length > 0) {
    const rel = stack.pop() as Buffer;
    for (const e of readdirSync(rel.length === 0 ? Buffer.from(base) : bpath(base, rel), { encoding: 'buffer', withFileTypes: true })) {
      const childRel = rel.length === 0 ? e.name : Buffer.concat([rel, Buffer.from('/'), e.name]);
      if (e.isDirectory()) stack.push(childRel);
      else if (e.isCharacterDevice() && lstatSync(bpath(base, childRel)).rdev === 0) {
        const utf8 = childRel.toString('utf8');
        found.push(Buffer.from(utf8).equals(childRel) ? utf8 : `hex:${childRel.toString('hex')}`);
      }
    }
  }
  return found.sort();
}

const lowers = [dir('L0'), dir('L1'), dir('L2')];
let result: { whiteouts: number };
let again: { whiteouts: number };

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('this test mounts overlayfs and makes device nodes: run it as root');
  for (const d of ['L0', 'L1', 'L2', 'src-upper', 'tgt-upper']) mkdirSync(dir(d));

  // L2, the base image.
  const L2 = dir('L2');
  for (const d of ['etc/conf.d', 'usr/bin', 'usr/lib', 'usr/share/doc/pkg', 'var/cache/big', 'old/sub', 'opq', 'stack', 'swap', 'dev', `deep/${LONG}`, 'home/user']) mkdirSync(join(L2, d), { recursive: true });
  file(join(L2, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  file(join(L2, 'etc/conf.d/a.conf'), 'a=1\n');
  file(join(L2, 'etc/conf.d/b.conf'), 'b=2\n');
  file(join(L2, 'usr/bin/tool'), '#!/bin/sh\necho tool\n', 0o755);
  file(join(L2, 'usr/lib/libx.so.1'), 'ELF');
  symlinkSync('libx.so.1', join(L2, 'usr/lib/libx.so'));
  symlinkSync('/etc', join(L2, 'etclink')); // absolute, to a directory of the host: must never be followed
  file(join(L2, 'usr/share/doc/pkg/README'), 'read me\n');
  file(join(L2, 'usr/share/doc/other'), 'other\n');
  for (let i = 0; i < 50; i++) file(join(L2, `var/cache/big/f${i}.dat`), `data ${i}\n`);
  file(join(L2, 'file with space.txt'), 'space\n');
  file(join(L2, 'keep space.txt'), 'kept\n');
  file(join(L2, 'new\nline'), 'newline\n');
  file(join(L2, 'héllo-世界.txt'), 'unicode\n');
  file(join(L2, 'ünï.txt'), 'kept unicode\n');
  file(bpath(L2, LATIN1_NAME), 'latin1\n');
  file(join(L2, 'old/a'), 'old a\n');
  file(join(L2, 'old/sub/b'), 'old b\n');
  file(join(L2, 'opq/x'), 'x\n');
  file(join(L2, 'opq/y'), 'y\n');
  mkdirSync(join(L2, ODD_DIR), { recursive: true }); // merged with L0's: its opaque flag is read
  file(join(L2, ODD_DIR, 'f'), 'f\n');
  file(join(L2, 'stack/ghost'), 'hidden by L1, whatever L0 has\n');
  file(join(L2, 'swap/inner'), 'inner\n');
  file(join(L2, 'swap2'), 'swap2 is a file here\n');
  file(join(L2, `deep/${LONG}/file.txt`), 'deep\n');
  file(join(L2, `deep/${LONG}/kept.txt`), 'deep kept\n');
  file(join(L2, 'home/user/data'), 'user data\n');
  chownSync(join(L2, 'home/user/data'), 1000, 1000);
  execFileSync('mknod', [join(L2, 'dev/null'), 'c', '1', '3']); // a character device that is not a whiteout

  // L1, built like an image layer: changes made through an overlay, recorded by the kernel.
  mountOverlay([L2], dir('L1'), dir('L1-work'), dir('L1-merged'));
  const b = dir('L1-merged');
  rmSync(join(b, 'old'), { recursive: true }); // a whiteout in L1
  rmSync(join(b, 'stack'), { recursive: true }); // L0's stack will not merge with L2's: the whiteout ends it
  rmSync(join(b, 'opq'), { recursive: true });
  mkdirSync(join(b, 'opq')); // an opaque directory in L1
  file(join(b, 'opq/z'), 'z\n');
  rmSync(join(b, 'swap'), { recursive: true });
  file(join(b, 'swap'), 'swap is a file now\n'); // a file over a directory
  rmSync(join(b, 'swap2'));
  mkdirSync(join(b, 'swap2')); // a directory over a file
  file(join(b, 'swap2/in'), 'in\n');
  file(join(b, 'etc/passwd'), 'root:x:0:0::/root:/bin/bash\n');
  file(join(b, 'usr/bin/tool2'), '#!/bin/sh\n', 0o755);
  umount(b);

  // L0, the init layer: plain files, and an opq that is merged with L1's opaque one.
  const L0 = dir('L0');
  mkdirSync(join(L0, 'etc'));
  mkdirSync(join(L0, 'opq'));
  mkdirSync(join(L0, 'stack'));
  file(join(L0, 'stack/top'), 'top\n');
  mkdirSync(join(L0, ODD_DIR), { recursive: true });
  file(join(L0, ODD_DIR, 'g'), 'g\n');
  file(join(L0, 'stack/top2'), 'top2\n');
  file(join(L0, '.dockerenv'), '');
  file(join(L0, 'etc/hosts'), '');
  file(join(L0, 'opq/w'), 'w\n');

  // The source container: deletions and additions through its merged view.
  mountOverlay(lowers, dir('src-upper'), dir('src-work'), dir('src'));
  const s = dir('src');
  for (const p of ['file with space.txt', 'new\nline', 'héllo-世界.txt', 'usr/lib/libx.so', 'opq/z', 'opq/w', 'swap', 'swap2/in', `deep/${LONG}/file.txt`, '.dockerenv', 'dev/null', 'stack/top', `${ODD_DIR}/f`]) rmSync(join(s, p));
  rmSync(bpath(s, LATIN1_NAME));
  rmSync(join(s, 'var/cache/big'), { recursive: true });
  rmSync(join(s, 'usr/share/doc'), { recursive: true });
  mkdirSync(join(s, 'usr/share/doc'));
  file(join(s, 'usr/share/doc/NEW'), 'new doc\n');
  rmSync(join(s, 'etc/conf.d'), { recursive: true });
  file(join(s, 'etc/conf.d'), 'conf.d is a file now\n'); // upper file over a lower directory
  rmSync(join(s, 'usr/lib/libx.so.1'));
  mkdirSync(join(s, 'usr/lib/libx.so.1')); // upper directory over a lower file
  file(join(s, 'added file.txt'), 'added\n');
  mkdirSync(join(s, 'newdir/sub'), { recursive: true });
  file(join(s, 'newdir/sub/n ew'), 'nested\n');
  file(join(s, 'etc/passwd'), 'root:x:0:0::/root:/bin/zsh\n');
  // Old directory times, so that a whiteout written into a directory without putting its time back shows.
  for (const d of ['.', 'usr/share/doc', 'usr/share', 'usr/lib', 'var/cache', 'opq', 'swap2', 'stack', 'dev', `deep/${LONG}`]) {
    utimesSync(join(s, d), OLD_TIME, OLD_TIME);
  }

  // The full mode: the merged view as a tar, extracted into the target's upper dir.
  execFileSync('bash', ['-c', 'set -o pipefail; tar -C "$1" --numeric-owner -cf - . | tar -C "$2" --numeric-owner -xf -', 'bash', s, dir('tgt-upper')]);
  result = await hideDeletedLowerPaths(dir('tgt-upper'), lowers);
  again = await hideDeletedLowerPaths(dir('tgt-upper'), lowers);
  mountOverlay(lowers, dir('tgt-upper'), dir('tgt-work'), dir('tgt'));
});

afterAll(() => {
  const left: string[] = [];
  for (const m of [...mounts].reverse()) {
    try {
      umount(m);
    } catch (err) {
      left.push(`${m}: ${(err as Error).message}`);
    }
  }
  if (left.length === 0) rmSync(root, { recursive: true, force: true });
  else throw new Error(`could not unmount (left ${root} in place): ${left.join('; ')}`);
});

describe('hideDeletedLowerPaths: deletions survive a full-mode migration', () => {
  it('makes the target\'s merged view the same tree as the source\'s: paths, types, modes, owners, contents, times', () => {
    const source = listTree(dir('src'));
    expect(Object.keys(source)).toContain('added file.txt'); // the listing sees the tree
    expect(Object.keys(source)).not.toContain('file with space.txt');
    expect(listTree(dir('tgt'))).toEqual(source);
  });

  it('puts whiteouts exactly where the lower view has a name the upper dir lacks, and nowhere below them', () => {
    const expected = [
      '.dockerenv',
      'dev/null',
      'file with space.txt',
      'héllo-世界.txt',
      `hex:${LATIN1_NAME.toString('hex')}`,
      'new\nline',
      'opq/w', // in L0
      'opq/z', // in L1's opaque opq: L2's opq/x and opq/y are not in the lower view
      `${ODD_DIR}/f`,
      'stack/top', // not stack/ghost: L1's whiteout cuts L2's stack off
      'swap', // a file in L1 hiding L2's directory: nothing below it
      'swap2/in',
      `deep/${LONG}/file.txt`,
      'usr/lib/libx.so', // a symlink
      'usr/share/doc/other',
      'usr/share/doc/pkg', // not its README: the directory is hidden whole
      'var/cache/big',
    ].sort();
    expect(whiteoutsIn(dir('tgt-upper'))).toEqual(expected);
    expect(result).toEqual({ whiteouts: expected.length });
  });

  it('finds nothing more to do when run again (the whiteouts it made count as present)', () => {
    expect(again).toEqual({ whiteouts: 0 });
  });

  it('names a missing lower dir in a TRANSFER_FAILED error', async () => {
    const missing = dir('no-such-layer');
    mkdirSync(dir('empty-upper'));
    const err = await hideDeletedLowerPaths(dir('empty-upper'), [dir('L0'), missing]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HerdError);
    expect((err as HerdError).code).toBe('TRANSFER_FAILED');
    expect((err as HerdError).message).toContain(missing);
  });
});
