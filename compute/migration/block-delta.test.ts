/**
 * Large files by blocks on real directories: the pre-copy (tar without the large files, then
 * the block stream of them) and the changes after the "freeze" (deletions, the large files'
 * changed blocks, the rest by tar), each block stream applied through the transfer key's real
 * forced command (`herd-blocks`), give a directory that equals the frozen one: contents,
 * sizes, modes, owners, times, xattrs. The delta carries the changed blocks, not the files.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, closeSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collect, must, setXattr, treeImage, treeListing } from '../../test/support/trees.ts';
import { BlockState, blocksStream } from './block-delta.ts';
import { nameList } from './byte-names.ts';
import { changesSince, CTIME_SLACK_MS, snapshotTree } from './fs-precopy.ts';
import { LZ4_OPTION, PRUNE_COMMAND, RECEIVE_COMMAND, tarDirectory } from './ssh-transfer.ts';

const SCRIPT = resolve(import.meta.dirname, '../../bin/herd-ssh-command');
const base = mkdtempSync(join(tmpdir(), 'herd-blocks-test-'));
const conf = join(base, 'receiver.conf');
writeFileSync(conf, `root ${join(base, 'data')}\n`);
afterAll(() => rmSync(base, { recursive: true, force: true }));



/** Runs the forced command as sshd would for `command`, with `dir` and `payload` on stdin. */
const forced = (command: string, dir: string, payload: Buffer) =>
  spawnSync(SCRIPT, [conf], { input: Buffer.concat([Buffer.from(`${dir}\n`), payload]), env: { SSH_ORIGINAL_COMMAND: command, PATH: process.env.PATH ?? '' }, maxBuffer: 64 * 2 ** 20 });

/** Applies a block stream; returns the receiver's reply (the state of what it holds). */
const applyBlocks = (dir: string, stream: Buffer): Buffer => {
  const r = forced(RECEIVE_COMMAND.blocks, dir, stream);
  expect(r.status, r.stderr.toString()).toBe(0);
  return r.stdout;
};
const extract = (dir: string, archive: Buffer) => must('tar', ['-x', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', dir], archive);

const removeXattr = (path: string, name: string) => must('python3', ['-c', 'import os,sys; os.removexattr(sys.argv[1], sys.argv[2])', path, name]);

const MiB = 1024 * 1024;

/**
 * A tree (`build`) pre-copied and moved after the "freeze" as source-side.ts does it (tar without
 * the large files, then those by blocks; after the freeze deletions, changed blocks, the rest by
 * tar), through the forced command; `running` changes it at the points named. The built entries
 * are 300 ms old at the snapshot: old for the slack of a file system with sub-millisecond ctimes.
 */
async function migrated(name: string, build: (upper: string) => void, running: { beforeTar?: (upper: string) => void; beforeBlocks?: (upper: string) => void; afterBlocks?: (upper: string) => void }) {
  const upper = join(base, name);
  const target = join(base, 'data', name);
  mkdirSync(upper);
  mkdirSync(target, { recursive: true });
  build(upper);
  await new Promise((r) => setTimeout(r, 300));
  const snapshot = await snapshotTree(upper);
  expect(snapshot.ctimeSlackMs, `${upper}: a file system with sub-millisecond ctimes`).toBe(CTIME_SLACK_MS.fine);
  const large = [...snapshot.blockFiles];
  running.beforeTar?.(upper);
  expect(forced(RECEIVE_COMMAND.xattrs, target, await collect(tarDirectory(upper, { xattrs: true, exclude: large, live: { archived: (rel) => snapshot.archived.add(rel) } }))).status).toBe(0);
  running.beforeBlocks?.(upper);
  const state = new BlockState();
  try {
    state.save(applyBlocks(target, await collect(blocksStream(upper, large))));
    running.afterBlocks?.(upper);
    const changes = await changesSince(upper, snapshot);
    if (changes.deleted.length > 0) expect(forced(PRUNE_COMMAND, target, nameList(changes.deleted)).status).toBe(0);
    if (changes.blocks.length > 0) applyBlocks(target, await collect(blocksStream(upper, changes.blocks, state)));
    expect(forced(RECEIVE_COMMAND.over, target, await collect(tarDirectory(upper, { xattrs: true, only: changes.changed }))).status).toBe(0);
    return { upper, target, changes };
  } finally {
    state.remove();
  }
}

/** A state's header: the digest the receiver used. */
const stateDigest = (state: Buffer) => ({ magic: state.subarray(0, 8).toString(), algorithm: state.subarray(8, 16).toString().replace(/\0+$/, ''), seed: state.readBigUInt64BE(16) });

describe('large files by blocks (bin/herd-blocks.py through the forced command)', () => {
  // The receiver digests by what the sender names (XXH3-128, seeded), or by sha256 where it cannot (no python3-xxhash).
  it.each([
    { receiverDigest: 'xxh3-128', digestSize: 16 },
    { receiverDigest: 'sha256', digestSize: 32 },
  ])('pre-copy plus the changed blocks equals the frozen directory, and the delta carries blocks, not files (receiver digests by $receiverDigest)', { timeout: 30_000 }, async ({ receiverDigest, digestSize }) => {
    const upper = join(base, `upper-${receiverDigest}`);
    const target = join(base, 'data', `target-${receiverDigest}`);
    mkdirSync(join(upper, 'db'), { recursive: true });
    mkdirSync(target, { recursive: true });
    writeFileSync(join(upper, 'db', 'redo'), randomBytes(6 * MiB));
    writeFileSync(join(upper, 'db', 'table'), randomBytes(5 * MiB));
    writeFileSync(join(upper, 'db', 'replaced'), randomBytes(5 * MiB));
    writeFileSync(join(upper, 'db', 'sparse'), '');
    truncateSync(join(upper, 'db', 'sparse'), 8 * MiB); // a hole, then a few bytes
    const sparse = openSync(join(upper, 'db', 'sparse'), 'r+');
    writeSync(sparse, Buffer.from('tail'), 0, 4, 7 * MiB);
    closeSync(sparse);
    writeFileSync(join(upper, 'small'), 'small file');
    chmodSync(join(upper, 'db', 'table'), 0o640);
    chownSync(join(upper, 'db', 'table'), 1234, 5678);
    setXattr(join(upper, 'db', 'table'), 'user.herd', 'before');
    await new Promise((r) => setTimeout(r, CTIME_SLACK_MS.fine + 200)); // out of the ctime slack: untouched entries count as old

    const snapshot = await snapshotTree(upper);
    expect(snapshot.ctimeSlackMs, `${upper}: a file system with sub-millisecond ctimes`).toBe(CTIME_SLACK_MS.fine);
    expect([...snapshot.blockFiles].sort()).toEqual(['db/redo', 'db/replaced', 'db/sparse', 'db/table']);
    const large = [...snapshot.blockFiles];
    const state = new BlockState();
    try {
      const archive = await collect(tarDirectory(upper, { xattrs: true, exclude: large, live: { archived: (rel) => snapshot.archived.add(rel) } }));
      expect(archive.length, 'the archive leaves the large files out').toBeLessThan(MiB);
      extract(target, archive);
      const first = await collect(blocksStream(upper, large));
      // The hole is not sent: 6 + 5 + 5 MiB of data and one block of the sparse file.
      expect(first.length).toBeLessThan(16 * MiB + 256 * 1024);
      expect(first.subarray(0, 16).toString(), 'python3-xxhash is missing: install it (scripts/setup)').toBe('HERDBLK2xxh3-128');
      // As a receiver without python3-xxhash sees it: a digest it cannot compute.
      if (receiverDigest === 'sha256') first.write('unknown\0', 8);
      const reply = applyBlocks(target, first);
      expect(stateDigest(reply)).toMatchObject({ magic: 'HERDSTA2', algorithm: receiverDigest, seed: receiverDigest === 'sha256' ? 0n : first.readBigUInt64BE(16) });
      // The header, then a state record per file: 30 bytes of header, the path, a digest per 64 KiB block (the hole's included).
      expect(reply.length).toBe(24 + large.reduce((sum, p) => sum + 30 + p.length, 0) + digestSize * (96 + 80 + 80 + 128));
      state.save(reply);
      expect(treeImage(target).equals(treeImage(upper))).toBe(true);

      // While running and up to the freeze: in-place writes, growth, shrinking, metadata, a replaced file, a new large file.
      const redo = openSync(join(upper, 'db', 'redo'), 'r+');
      writeSync(redo, randomBytes(512), 0, 512, 3 * MiB + 100);
      closeSync(redo);
      appendFileSync(join(upper, 'db', 'table'), randomBytes(100_000));
      chmodSync(join(upper, 'db', 'table'), 0o600);
      removeXattr(join(upper, 'db', 'table'), 'user.herd');
      setXattr(join(upper, 'db', 'table'), 'user.other', 'after');
      truncateSync(join(upper, 'db', 'sparse'), 2 * MiB);
      // Replaced atomically (another inode: made while the old one still exists).
      writeFileSync(join(upper, 'db', 'replaced.tmp'), randomBytes(5 * MiB));
      renameSync(join(upper, 'db', 'replaced.tmp'), join(upper, 'db', 'replaced'));
      writeFileSync(join(upper, 'db', 'new'), randomBytes(5 * MiB));

      const changes = await changesSince(upper, snapshot);
      expect(changes.blocks.sort()).toEqual(['db/redo', 'db/sparse', 'db/table']);
      expect(changes.changed).toContain('db/new'); // not at the snapshot: by tar
      expect(changes.changed).not.toContain('db/redo');
      expect(changes.deleted).toEqual(['db/replaced']); // another inode now: deleted on the target, so whole by tar
      expect(changes.changed).toContain('db/replaced');
      const pruned = forced(PRUNE_COMMAND, target, nameList(changes.deleted));
      expect(pruned.status, pruned.stderr.toString()).toBe(0);
      const delta = await collect(blocksStream(upper, changes.blocks, state));
      applyBlocks(target, delta);
      extract(target, await collect(tarDirectory(upper, { xattrs: true, only: changes.changed })));
      expect(treeListing(target)).toBe(treeListing(upper));
      expect(treeImage(target).equals(treeImage(upper))).toBe(true);
      // Blocks only: one of redo, two of table's tail (the replaced file went by tar).
      expect(delta.length).toBeGreaterThan(64 * 1024 + 100_000);
      expect(delta.length).toBeLessThan(4 * 64 * 1024);
    } finally {
      state.remove();
    }
  });

  it('the sender follows no symlink and skips what is no regular file (a container may plant them)', async () => {
    const dir = join(base, 'planted');
    const outside = join(base, 'host-secrets');
    mkdirSync(dir, { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'secret'), 'host file');
    symlinkSync(outside, join(dir, 'db'));
    symlinkSync(join(outside, 'secret'), join(dir, 'file'));
    must('mkfifo', [join(dir, 'fifo')]);
    must('mknod', [join(dir, 'whiteout'), 'c', '0', '0']); // a large file deleted in the container (opening it fails with ENXIO)
    const stream = await collect(blocksStream(dir, ['db/secret', 'file', 'fifo', 'whiteout', 'gone']));
    expect(stream.subarray(0, 8).toString()).toBe('HERDBLK2');
    expect(stream.subarray(24).toString(), 'the digest header, then the end alone').toBe('E');
  });

  it('refuses paths that leave the directory, a stream cut short, and a file that is not regular', () => {
    const target = join(base, 'data', 'refuse');
    const outside = join(base, 'outside');
    mkdirSync(target, { recursive: true });
    mkdirSync(outside, { recursive: true });
    symlinkSync(outside, join(target, 'escape'));
    symlinkSync(join(outside, 'f'), join(target, 'link'));
    const file = (path: string, size = 4) => {
      const head = Buffer.alloc(3);
      head.writeUInt8(1, 0);
      head.writeUInt16BE(Buffer.byteLength(path), 1);
      const meta = Buffer.alloc(8 * 3 + 4 * 3 + 8 * 2 + 2); // dev, ino, size, mode, uid, gid, atime, mtime, xattrs
      meta.writeBigUInt64BE(BigInt(size), 16);
      meta.writeUInt32BE(0o100644, 24);
      return Buffer.concat([Buffer.from('F'), head, Buffer.from(path), meta]);
    };
    const stream = (...records: Buffer[]) => Buffer.concat([Buffer.from('HERDBLK2sha256\0\0'), Buffer.alloc(8), ...records]);
    for (const [payload, code, message] of [
      [stream(file('../x'), Buffer.from('DE')), 126, /\. or \.\. or empty segments/],
      [stream(file('/etc/x'), Buffer.from('DE')), 126, /not a relative path/],
      [stream(file('escape/x'), Buffer.from('DE')), 126, /leads out of the directory/],
      [stream(file('escape/sub/x'), Buffer.from('DE')), 126, /leads out of the directory/], // creates nothing out there either
      [stream(file('link'), Buffer.from('DE')), 1, /Too many levels of symbolic links|not a regular file/],
      [stream(file('cut')), 1, /ended early/],
      [Buffer.from('not a block stream'), 1, /not a block stream/],
    ] as const) {
      const r = forced(RECEIVE_COMMAND.blocks, target, payload);
      expect(r.status, r.stderr.toString()).toBe(code);
      expect(r.stderr.toString()).toMatch(message);
    }
    expect(spawnSync('ls', [outside]).stdout.toString()).toBe('');
    expect(forced(RECEIVE_COMMAND.blocks, '/root', stream(Buffer.from('E'))).stderr.toString()).toMatch(/not under this host's data roots/);
    // A good one: a 4-byte file with one block.
    const block = Buffer.alloc(13);
    block.write('B', 0);
    block.writeBigUInt64BE(0n, 1);
    block.writeUInt32BE(4, 9);
    applyBlocks(target, stream(file('ok'), block, Buffer.from('data'), Buffer.from('DE')));
    expect(must('cat', [join(target, 'ok')]).toString()).toBe('data');
    // From a sender before the digest was named (HERDBLK1): sha256, and a state without a header.
    const old = applyBlocks(target, Buffer.concat([Buffer.from('HERDBLK1'), file('ok1'), block, Buffer.from('old!'), Buffer.from('DE')]));
    expect(must('cat', [join(target, 'ok1')]).toString()).toBe('old!');
    expect(old.length).toBe(30 + 'ok1'.length + 32);
    // The same, lz4-compressed (transferCompression: lz4).
    const lz4 = forced(`${RECEIVE_COMMAND.blocks} ${LZ4_OPTION}`, target, must('lz4', ['-1', '-q', '-c'], stream(file('ok4'), block, Buffer.from('lz4!'), Buffer.from('DE'))));
    expect(lz4.status, lz4.stderr.toString()).toBe(0);
    expect(must('cat', [join(target, 'ok4')]).toString()).toBe('lz4!');
  });

  // Cases fs-precopy.property.test.ts found (shrunk).

  it('a large file replaced (another inode) before its block pre-copy goes whole after the freeze (the target deletes its copy)', async () => {
    const content = randomBytes(5 * MiB);
    const { upper, target, changes } = await migrated(
      'replaced-early',
      (upper) => writeFileSync(join(upper, 'big'), randomBytes(5 * MiB)),
      {
        beforeTar: (upper) => {
          writeFileSync(join(upper, 'big.tmp'), content);
          renameSync(join(upper, 'big.tmp'), join(upper, 'big'));
        },
      },
    );
    expect(changes.deleted).toEqual(['big']);
    expect(changes.blocks).toEqual([]);
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
  });

  it('a large file whose directory was away while the block stream ran (moved, and back) goes after the freeze', async () => {
    const { upper, target, changes } = await migrated(
      'away',
      (upper) => {
        mkdirSync(join(upper, 'db'));
        writeFileSync(join(upper, 'db', 'big'), randomBytes(5 * MiB));
      },
      { beforeBlocks: (upper) => renameSync(join(upper, 'db'), join(upper, 'db.away')), afterBlocks: (upper) => renameSync(join(upper, 'db.away'), join(upper, 'db')) },
    );
    expect(changes.blocks).toEqual(['db/big']);
    expect(treeListing(target)).toBe(treeListing(upper));
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
  });

  it("a large file's directory that the pre-copy's tar saw as a file is a directory again for its block stream (the receiver replaced the file)", async () => {
    const { upper, target } = await migrated(
      'file-in-the-way',
      (upper) => {
        mkdirSync(join(upper, 'a'));
        writeFileSync(join(upper, 'a', 'big'), randomBytes(5 * MiB));
      },
      {
        beforeTar: (upper) => {
          rmSync(join(upper, 'a'), { recursive: true });
          writeFileSync(join(upper, 'a'), 'a file for a while');
        },
        beforeBlocks: (upper) => {
          rmSync(join(upper, 'a'));
          mkdirSync(join(upper, 'a'));
          writeFileSync(join(upper, 'a', 'big'), randomBytes(5 * MiB));
        },
      },
    );
    expect(treeListing(target)).toBe(treeListing(upper));
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
  });
});
