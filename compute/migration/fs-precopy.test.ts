/**
 * The filesystem pre-copy on real directories: a copy taken while "running", then the
 * changes after the "freeze" (deletions first, then the changed entries alone, through the
 * same tar and forced-command pruner the migration uses) give a directory that equals a
 * copy of the frozen one: files, modes, owners, times, xattrs, whiteouts, deletions.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { appendFileSync, chmodSync, readFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync, linkSync, chownSync, statSync, utimesSync, rmdirSync, truncateSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collect, must, setXattr, treeImage, treeListing } from '../../test/support/trees.ts';
import { fsPath, nameList } from './byte-names.ts';
import { changesSince, CTIME_SLACK_MS, ctimeSlackMs, snapshotTree, type TreeChanges } from './fs-precopy.ts';
import { PRUNE_COMMAND, RECEIVE_COMMAND, tarDirectory, unescapeTarName } from './ssh-transfer.ts';
import { sharedWritableFiles, treeRelative } from './shared-mappings.ts';

const SCRIPT = resolve(import.meta.dirname, '../../bin/herd-ssh-command');

const xattrsOf = (path: string) => must('python3', ['-c', 'import os,sys; print(sorted(os.listxattr(sys.argv[1])))', path]).toString().trim();
const removeXattr = (path: string, name: string) => must('python3', ['-c', 'import os,sys; os.removexattr(sys.argv[1], sys.argv[2])', path, name]);

/**
 * A tree (`build`) pre-copied and moved after the "freeze" as source-side.ts does it, through the
 * transfer key's real forced command (receiver, pruner); `running` changes it at the points named.
 * The built entries are 300 ms old at the snapshot: old for the slack of a file system with
 * sub-millisecond ctimes (tmpdir must be one: ext4, xfs, btrfs, tmpfs).
 */
async function migrated(build: (upper: string) => void | Promise<void>, running: { beforeTar?: (upper: string) => void; duringTar?: (upper: string) => Promise<void>; afterTar?: (upper: string) => void | Promise<void>; written?: (upper: string) => { has(rel: string): boolean } }): Promise<{ base: string; upper: string; target: string; changes: TreeChanges }> {
  const base = mkdtempSync(join(tmpdir(), 'herd-precopy-case-'));
  const upper = join(base, 'upper');
  const target = join(base, 'data', 'target');
  mkdirSync(upper);
  mkdirSync(target, { recursive: true });
  writeFileSync(join(base, 'receiver.conf'), `root ${join(base, 'data')}\n`);
  const forced = (command: string, payload: Buffer) => {
    const r = spawnSync(SCRIPT, [join(base, 'receiver.conf')], { input: Buffer.concat([Buffer.from(`${target}\n`), payload]), env: { SSH_ORIGINAL_COMMAND: command, PATH: process.env.PATH ?? '' } });
    expect(r.status, r.stderr.toString()).toBe(0);
  };
  await build(upper);
  await new Promise((r) => setTimeout(r, 300));
  const snapshot = await snapshotTree(upper);
  expect(snapshot.ctimeSlackMs, `${upper}: a file system with sub-millisecond ctimes`).toBe(CTIME_SLACK_MS.fine);
  running.beforeTar?.(upper);
  // The pre-copy's archive, read whole; `duringTar` runs once its first chunk arrived (tar waits meanwhile, mid-way).
  const chunks: Buffer[] = [];
  for await (const chunk of tarDirectory(upper, { xattrs: true, exclude: [...snapshot.blockFiles], live: { archived: (rel) => snapshot.archived.add(rel) } })) {
    if (chunks.push(chunk as Buffer) === 1) await running.duringTar?.(upper);
  }
  forced(RECEIVE_COMMAND.xattrs, Buffer.concat(chunks));
  await running.afterTar?.(upper);
  const changes = await changesSince(upper, snapshot, running.written?.(upper));
  if (changes.deleted.length > 0) forced(PRUNE_COMMAND, nameList(changes.deleted));
  forced(RECEIVE_COMMAND.over, await collect(tarDirectory(upper, { xattrs: true, only: changes.changed })));
  return { base, upper, target, changes };
}





describe('filesystem pre-copy (real directories, real tar, the real pruner)', () => {
  it('takes the short ctime slack only from a file system that gave a time finer than a millisecond', () => {
    expect(ctimeSlackMs([1_764_268_176_000_000_000n, 1_764_268_177_000_000_000n])).toBe(CTIME_SLACK_MS.coarse); // whole seconds (ext4 with 128-byte inodes)
    expect(ctimeSlackMs([1_764_268_176_010_000_000n, 1_764_268_176_020_000_000n])).toBe(CTIME_SLACK_MS.coarse); // 10 ms (exFAT)
    expect(ctimeSlackMs([])).toBe(CTIME_SLACK_MS.coarse);
    expect(ctimeSlackMs([1_764_268_176_000_000_000n, 1_764_268_176_839_938_168n])).toBe(CTIME_SLACK_MS.fine);
  });

  it('finds a change made after the wall clock was stepped back since the snapshot', async () => {
    const upper = mkdtempSync(join(tmpdir(), 'herd-precopy-clock-'));
    try {
      writeFileSync(join(upper, 'old'), 'untouched');
      writeFileSync(join(upper, 'changed'), 'before');
      await new Promise((r) => setTimeout(r, CTIME_SLACK_MS.fine + 200));
      const snapshot = await snapshotTree(upper);
      for (const rel of snapshot.entries.keys()) snapshot.archived.add(rel); // as the pre-copy's tar would
      // As if the clock had read 1 s more at the snapshot: it has gone back 1 s since.
      snapshot.takenAtMs += 1000;
      writeFileSync(join(upper, 'changed'), 'after');
      expect((await changesSince(upper, snapshot)).changed).toEqual(['.', 'changed']);
    } finally {
      rmSync(upper, { recursive: true, force: true });
    }
  });

  it('sends a file whose size differs from the snapshot although its ctime is older (one long write(2) that began before the snapshot)', async () => {
    const upper = mkdtempSync(join(tmpdir(), 'herd-precopy-size-'));
    try {
      writeFileSync(join(upper, 'same'), 'untouched');
      writeFileSync(join(upper, 'written'), 'all of it, by one write that began before the snapshot');
      await new Promise((r) => setTimeout(r, CTIME_SLACK_MS.fine + 200));
      const snapshot = await snapshotTree(upper);
      for (const rel of snapshot.entries.keys()) snapshot.archived.add(rel); // as the pre-copy's tar would
      // The walk met it part-written (the write went on while the pre-copy read it); its ctime says when the write began.
      (snapshot.entries.get('written') as { size: number }).size = 9;
      expect((await changesSince(upper, snapshot)).changed).toEqual(['.', 'written']);
    } finally {
      rmSync(upper, { recursive: true, force: true });
    }
  });

  it('names entries that are not valid UTF-8 exactly (Latin-1 names made, changed, renamed and deleted around the pre-copy): the target equals the source byte for byte, and an untouched one does not go again', async () => {
    // caf\xe9 and friends, as a Latin-1 application names them: each byte that is not UTF-8 is a lone surrogate here (byte-names.ts).
    const at = (upper: string, rel: string) => fsPath(join(upper, rel));
    const { base, upper, target, changes } = await migrated(
      (upper) => {
        mkdirSync(at(upper, 'caf\uDCE9'));
        writeFileSync(at(upper, 'caf\uDCE9/men\uDCFC'), 'plat du jour');
        writeFileSync(at(upper, 'keep\uDCE9'), 'untouched');
        writeFileSync(at(upper, 'rewrite\uDCE9'), 'before');
        writeFileSync(at(upper, 'old\uDCFF'), 'to be deleted');
        writeFileSync(at(upper, 'valid \uFFFD and \uDCFF'), 'a real U+FFFD next to a bad byte');
        linkSync(at(upper, 'keep\uDCE9'), at(upper, 'link\uDCE0'));
      },
      {
        duringTar: async (upper) => {
          writeFileSync(at(upper, 'na\uDCEFve'), 'made during the pre-copy');
          renameSync(at(upper, 'caf\uDCE9/men\uDCFC'), at(upper, 'caf\uDCE9/carte\uDCE0'));
        },
        afterTar: (upper) => {
          writeFileSync(at(upper, 'rewrite\uDCE9'), 'after');
          rmSync(at(upper, 'old\uDCFF'));
          mkdirSync(at(upper, 'neu\uDCE4'));
          writeFileSync(at(upper, 'neu\uDCE4/gr\uDCFC\uDCDF'), 'new');
        },
      },
    );
    try {
      expect(treeListing(target)).toBe(treeListing(upper));
      expect(treeImage(target).equals(treeImage(upper))).toBe(true);
      expect(readdirSync(target, { encoding: 'buffer' }).map((n) => n.toString('hex')).sort()).toContain(Buffer.from('keep\xe9', 'latin1').toString('hex'));
      expect(changes.changed).toContain('rewrite\uDCE9');
      expect(changes.changed).toContain('neu\uDCE4/gr\uDCFC\uDCDF');
      expect(changes.deleted).toContain('old\uDCFF');
      expect(changes.changed).not.toContain('keep\uDCE9');
      expect(changes.changed).not.toContain('valid \uFFFD and \uDCFF');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it('reads back the names tar prints in its escape quoting', () => {
    expect(unescapeTarName('./a\\nb\\\\c\\303\\251 d')).toBe('./a\nb\\cé d');
    expect(unescapeTarName('plain/name')).toBe('plain/name');
  });

  it('pre-copy plus the changes since equals a copy of the frozen directory, and sends only what changed', { timeout: 30_000 }, async () => {
    const base = mkdtempSync(join(tmpdir(), 'herd-precopy-'));
    const upper = join(base, 'upper');
    const target = join(base, 'data', 'target');
    mkdirSync(join(upper, 'db', 'old'), { recursive: true });
    mkdirSync(join(upper, 'etc'), { recursive: true });
    mkdirSync(join(upper, 'gone', 'deep'), { recursive: true });
    writeFileSync(join(upper, 'db', 'table.ibd'), Buffer.alloc(256 * 1024, 1));
    writeFileSync(join(upper, 'db', 'untouched.ibd'), Buffer.alloc(64 * 1024, 2));
    writeFileSync(join(upper, 'db', 'old', 'a'), 'a');
    writeFileSync(join(upper, 'etc', 'conf'), 'x=1\n');
    writeFileSync(join(upper, 'etc', 'mode'), 'm');
    writeFileSync(join(upper, 'gone', 'deep', 'file'), 'bye');
    writeFileSync(join(upper, 'becomes-dir'), 'file for now');
    writeFileSync(join(upper, 'renamed-from'), 'moving');
    symlinkSync('/etc/passwd', join(upper, 'link'));
    // The container runs on: wait out the ctime slack so that the untouched entries count as old.
    await new Promise((r) => setTimeout(r, CTIME_SLACK_MS.fine + 200));

    const snapshot = await snapshotTree(upper);
    expect(snapshot.ctimeSlackMs, `${upper}: a file system with sub-millisecond ctimes`).toBe(CTIME_SLACK_MS.fine);
    // Made after the snapshot, before the pre-copy reads them: in its archive but not in the snapshot.
    const weird = 'we\nird \\ é';
    writeFileSync(join(upper, weird), 'short-lived');
    writeFileSync(join(upper, 'during'), 'becomes a directory');
    mkdirSync(target, { recursive: true });
    must('tar', ['-x', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', target], await collect(tarDirectory(upper, { xattrs: true, live: { archived: (rel) => snapshot.archived.add(rel) } })));
    expect(snapshot.archived).toContain(weird);
    expect(snapshot.archived).toContain('gone/deep/file');

    // Changes while the pre-copy runs and up to the freeze.
    appendFileSync(join(upper, 'db', 'table.ibd'), Buffer.alloc(4096, 3));
    chmodSync(join(upper, 'etc', 'mode'), 0o600);
    chownSync(join(upper, 'etc', 'conf'), 1234, 5678);
    setXattr(join(upper, 'db'), 'trusted.overlay.opaque', 'y');
    writeFileSync(join(upper, 'etc', 'new'), 'new file');
    rmSync(join(upper, 'gone'), { recursive: true });
    rmSync(join(upper, 'becomes-dir'));
    mkdirSync(join(upper, 'becomes-dir'));
    writeFileSync(join(upper, 'becomes-dir', 'inside'), 'i');
    renameSync(join(upper, 'renamed-from'), join(upper, 'renamed-to'));
    linkSync(join(upper, 'etc', 'new'), join(upper, 'etc', 'new-link'));
    rmSync(join(upper, 'db', 'old', 'a'));
    must('mknod', [join(upper, 'db', 'old', 'a'), 'c', '0', '0']); // an overlay whiteout in its place
    rmSync(join(upper, weird));
    rmSync(join(upper, 'during'));
    mkdirSync(join(upper, 'during'));

    // The freeze: what changed goes, deletions first.
    const changes = await changesSince(upper, snapshot);
    expect(changes.changed).not.toContain('db/untouched.ibd');
    expect(changes.changed).not.toContain('link');
    expect(changes.changed).toEqual(expect.arrayContaining(['db/table.ibd', 'etc/mode', 'etc/conf', 'db', 'etc/new', 'becomes-dir', 'becomes-dir/inside', 'renamed-to', 'db/old/a']));
    expect(changes.deleted).toEqual(['becomes-dir', 'db/old/a', 'during', 'gone', 'renamed-from', weird].sort());

    writeFileSync(join(base, 'receiver.conf'), `root ${join(base, 'data')}\n`);
    const pruned = spawnSync(SCRIPT, [join(base, 'receiver.conf')], {
      input: Buffer.concat([Buffer.from(`${target}\n`), ...changes.deleted.map((p) => Buffer.from(`${p}\0`))]),
      env: { SSH_ORIGINAL_COMMAND: PRUNE_COMMAND, PATH: process.env.PATH ?? '' },
    });
    expect(pruned.status, pruned.stderr.toString()).toBe(0);
    const delta = await collect(tarDirectory(upper, { xattrs: true, only: changes.changed }));
    must('tar', ['-x', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', target], delta);

    // Readable first (what differs), then byte for byte.
    expect(treeListing(target)).toBe(treeListing(upper));
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    // The untouched 64 KiB file did not go again.
    expect(delta.length).toBeLessThan(256 * 1024 + 4096 + 64 * 1024);
    rmSync(base, { recursive: true, force: true });
  });

  it('the pruner deletes only under the target directory: not through a symlink, not with ..', () => {
    const base = mkdtempSync(join(tmpdir(), 'herd-prune-'));
    const data = join(base, 'data');
    const target = join(data, 't');
    const outside = join(base, 'outside');
    mkdirSync(target, { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, 'precious'), 'keep');
    symlinkSync(outside, join(target, 'escape'));
    writeFileSync(join(base, 'receiver.conf'), `root ${data}\n`);
    const prune = (paths: string[], dir = target) =>
      spawnSync(SCRIPT, [join(base, 'receiver.conf')], { input: Buffer.concat([Buffer.from(`${dir}\n`), ...paths.map((p) => Buffer.from(`${p}\0`))]), env: { SSH_ORIGINAL_COMMAND: PRUNE_COMMAND, PATH: process.env.PATH ?? '' } });
    for (const [paths, message] of [
      [['escape/precious'], /leads out of/],
      [['../outside/precious'], /\. or \.\. or empty segments/],
      [['/etc/passwd'], /must be relative/],
    ] as const) {
      const r = prune([...paths]);
      expect(r.status).toBe(126);
      expect(r.stderr.toString()).toMatch(message);
    }
    expect(prune(['x'], outside).stderr.toString()).toMatch(/not under this host's data roots/);
    // The symlink itself may go (not what it points to); so may a directory holding one, and
    // paths already gone or under a file are skipped.
    mkdirSync(join(target, 'dir', 'sub'), { recursive: true });
    symlinkSync(outside, join(target, 'dir', 'sub', 'out'));
    writeFileSync(join(target, 'file'), 'x');
    const r = prune(['dir', 'escape', 'file/under', 'never/was', 'file']);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(readdirSync(target)).toEqual([]);
    expect(must('cat', [join(outside, 'precious')]).toString()).toBe('keep');
    rmSync(base, { recursive: true, force: true });
  });

  it('a file written through a shared map after the snapshot keeps its ctime: it goes again once named as mapped shared and writable (shared-mappings.ts), small files by tar, large ones by blocks', async () => {
    // A process (like SQLite with its -shm file) maps the files shared and writable and writes through the maps on request.
    const program = ['import mmap, os, sys', 'ms = [mmap.mmap(os.open(p, os.O_RDWR), os.path.getsize(p), mmap.MAP_SHARED) for p in sys.argv[1:]]', 'for line in sys.stdin:', '    t = line.strip().encode()', '    for m in ms: m[:len(t)] = t; m[len(m) - len(t):] = t', "    print('ok', flush=True)"].join('\n');
    for (const named of [false, true]) {
      let writer: ReturnType<typeof spawn> | undefined;
      let write: (text: string) => Promise<void> = async () => undefined;
      const { base, upper, target, changes } = await migrated(
        async (upper) => {
          writeFileSync(join(upper, 'db-shm'), Buffer.alloc(32 * 1024));
          writeFileSync(join(upper, 'big'), Buffer.alloc(5 * 2 ** 20));
          writeFileSync(join(upper, 'other'), 'not mapped');
          writer = spawn('python3', ['-c', program, join(upper, 'db-shm'), join(upper, 'big')], { stdio: ['pipe', 'pipe', 'inherit'] });
          const answers = createInterface({ input: writer.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
          write = async (text) => {
            writer?.stdin?.write(`${text}\n`);
            expect((await answers.next()).value).toBe('ok');
          };
          await write('written-before-the-snapshot');
        },
        {
          afterTar: async (upper) => {
            const before = statSync(join(upper, 'db-shm'), { bigint: true }).ctimeNs;
            await write('written-after-the-snapshot');
            // The premise: the kernel stamps no time for a write to a page its map already holds writable.
            expect(statSync(join(upper, 'db-shm'), { bigint: true }).ctimeNs).toBe(before);
          },
          written: (upper) => {
            if (!named) return new Set();
            const mapped = sharedWritableFiles([writer?.pid as number]);
            expect([...mapped].sort()).toEqual([join(upper, 'big'), join(upper, 'db-shm')]);
            return new Set([...mapped].flatMap((path) => treeRelative(path, upper, [upper]) ?? []));
          },
        },
      ).finally(() => writer?.kill());
      expect(readFileSync(join(target, 'db-shm')).equals(readFileSync(join(upper, 'db-shm')))).toBe(named);
      expect(changes.changed.includes('db-shm')).toBe(named);
      expect(changes.blocks).toEqual(named ? ['big'] : []);
      expect(changes.changed).not.toContain('other');
      rmSync(base, { recursive: true, force: true });
    }
  });

  // Cases fs-precopy.property.test.ts found (shrunk).

  it("an entry sent again leaves its unchanged directory's mtime as it was (tar re-creating it set the target's)", async () => {
    const { base, upper, target, changes } = await migrated(
      (upper) => {
        mkdirSync(join(upper, 'etc'));
        writeFileSync(join(upper, 'etc', 'conf'), 'x=1');
        utimesSync(join(upper, 'etc'), 1_600_000_000, 1_600_000_000);
      },
      { afterTar: (upper) => chownSync(join(upper, 'etc', 'conf'), 1234, 1234) },
    );
    expect(changes.changed).toEqual(['etc', 'etc/conf']);
    expect(statSync(join(target, 'etc')).mtimeMs).toBe(statSync(join(upper, 'etc')).mtimeMs);
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    rmSync(base, { recursive: true, force: true });
  });

  it('a directory that lost an xattr or its default ACL loses it on the target too (tar only adds to a directory it extracts over)', async () => {
    const { base, upper, target } = await migrated(
      (upper) => {
        mkdirSync(join(upper, 'd'));
        setXattr(join(upper, 'd'), 'user.a', '1');
        setXattr(join(upper, 'd'), 'user.b', '2');
        mkdirSync(join(upper, 'opaque'));
        setXattr(join(upper, 'opaque'), 'trusted.overlay.opaque', 'y');
        setXattr(upper, 'user.root', 'r');
        // A default ACL (user::rwx group::r-x other::r-x), as setfacl -d writes it.
        must('python3', ['-c', "import os, struct, sys; os.setxattr(sys.argv[1], 'system.posix_acl_default', struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, 0xffffffff) for t, p in ((1, 7), (4, 5), (0x20, 5))))", join(upper, 'd')]);
      },
      {
        afterTar: (upper) => {
          removeXattr(join(upper, 'd'), 'user.a');
          removeXattr(join(upper, 'd'), 'system.posix_acl_default'); // setfacl -k
          removeXattr(upper, 'user.root');
          // Made again, not opaque: ext4 hands the freed inode number out again, so it need not count as replaced.
          rmdirSync(join(upper, 'opaque'));
          mkdirSync(join(upper, 'opaque'));
        },
      },
    );
    expect(xattrsOf(join(target, 'd'))).toBe("['user.b']");
    expect(xattrsOf(join(target, 'opaque'))).toBe('[]');
    expect(xattrsOf(target)).toBe('[]');
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    rmSync(base, { recursive: true, force: true });
  });

  it('entries moved into a directory that replaced theirs (same name) go again, with their hard links', async () => {
    const { base, upper, target } = await migrated(
      (upper) => {
        mkdirSync(join(upper, 'a', 'b'), { recursive: true });
        writeFileSync(join(upper, 'a', 'b', 'c'), 'c');
        linkSync(join(upper, 'a', 'b', 'c'), join(upper, 'x'));
      },
      {
        afterTar: (upper) => {
          // a is another inode now; a/b/c kept its ctime (only a/b moved).
          renameSync(join(upper, 'a'), join(upper, 'a.old'));
          mkdirSync(join(upper, 'a'));
          renameSync(join(upper, 'a.old', 'b'), join(upper, 'a', 'b'));
          rmdirSync(join(upper, 'a.old'));
        },
      },
    );
    expect(treeListing(target)).toBe(treeListing(upper));
    expect(statSync(join(target, 'x')).nlink).toBe(2);
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    rmSync(base, { recursive: true, force: true });
  });

  it('an entry whose directory was away while the pre-copy ran (moved, and back) goes after the freeze', async () => {
    const { base, upper, target } = await migrated(
      (upper) => {
        mkdirSync(join(upper, 'a'));
        writeFileSync(join(upper, 'a', 'b'), 'b');
      },
      { beforeTar: (upper) => renameSync(join(upper, 'a'), join(upper, 'a.away')), afterTar: (upper) => renameSync(join(upper, 'a.away'), join(upper, 'a')) },
    );
    expect(treeListing(target)).toBe(treeListing(upper));
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    rmSync(base, { recursive: true, force: true });
  });

  it('a directory made after the pre-copy in a setgid directory has the mode it has on the source (tar keeps an inherited setgid bit)', async () => {
    const { base, upper, target } = await migrated((upper) => chmodSync(upper, 0o2755), {
      afterTar: (upper) => {
        mkdirSync(join(upper, 'made'));
        chmodSync(join(upper, 'made'), 0o600); // chmod(2) clears the setgid bit the directory inherited
      },
    });
    expect(statSync(join(target, 'made')).mode.toString(8)).toBe('40600');
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    rmSync(base, { recursive: true, force: true });
  });

  it("the pre-copy holds what its archive has after a sparse file that shrank while tar read it (GNU tar pads it one block too far)", async () => {
    const { base, upper, target } = await migrated(
      (upper) => {
        writeFileSync(join(upper, 'sparse'), randomBytes(1_500_000));
        truncateSync(join(upper, 'sparse'), 2_000_000); // data, then a hole: --sparse stores a map and the data
        // Entries after it in tar's order (the directory's): a receiver that stops at the stray zero block lacks them.
        const order = () => must('tar', ['-c', '-v', '-f', '/dev/null', '-C', upper, '.']).toString().split('\n').filter((l) => l !== '');
        for (let i = 0; order().at(-1) === './sparse' || i < 8; i++) writeFileSync(join(upper, `after-${i}`), 'x');
      },
      {
        duringTar: async (upper) => {
          await new Promise((r) => setTimeout(r, 200)); // tar is inside the sparse file's data, waiting for the pipe
          writeFileSync(join(upper, 'sparse'), randomBytes(1_200_000));
        },
      },
    );
    expect(treeListing(target)).toBe(treeListing(upper));
    expect(treeImage(target).equals(treeImage(upper))).toBe(true);
    rmSync(base, { recursive: true, force: true });
  });
});
