import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { fsPath } from './byte-names.ts';
import { parseSharedWritable, sharedWritableFiles, treeRelative } from './shared-mappings.ts';

describe('files mapped shared and writable', () => {
  it('reads only shared, writable maps of files from a maps text, with both readings of an escaped or deleted name', () => {
    const maps = [
      '55d0c0a00000-55d0c0a01000 r--p 00000000 00:2f 1310                       /usr/bin/python3.11',
      '7f1000000000-7f1000008000 rw-s 00000000 00:2f 2001                       /data/db-shm',
      '7f1000008000-7f1000010000 r--s 00000000 00:2f 2002                       /data/read-only-shared',
      '7f1000010000-7f1000018000 rw-p 00000000 00:2f 2003                       /data/private-copy',
      '7f1000018000-7f1000020000 rw-s 00000000 00:01 4101                       /dev/zero (deleted)',
      '7f1000020000-7f1000028000 rw-s 00000000 00:2f 2004                       /data/with space\\012and newline',
      '7f1000028000-7f1000030000 rw-s 00000000 00:00 0 ',
      '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]',
      '7f1000030000-7f1000038000 -w-s 00001000 00:2f 2005                       /data/write-only',
      '',
    ].join('\n');
    expect(parseSharedWritable(maps)).toEqual(['/data/db-shm', '/dev/zero (deleted)', '/dev/zero', '/data/with space\\012and newline', '/data/with space\nand newline', '/data/write-only']);
  });

  it('finds the files a live process maps shared and writable (not its private or read-only maps), one named in Latin-1 by its exact bytes, and skips a process that ended', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-maps-'));
    for (const name of ['shared', 'private', 'read-only', 'caf\uDCE9']) writeFileSync(fsPath(join(dir, name)), Buffer.alloc(8192));
    const program = [
      'import mmap, os, sys',
      "d = sys.argv[1]",
      "a = mmap.mmap(os.open(d + '/shared', os.O_RDWR), 8192, mmap.MAP_SHARED)",
      "b = mmap.mmap(os.open(d + '/private', os.O_RDWR), 8192, mmap.MAP_PRIVATE)",
      "c = mmap.mmap(os.open(d + '/read-only', os.O_RDONLY), 8192, mmap.MAP_SHARED, mmap.PROT_READ)",
      "e = mmap.mmap(os.open(os.fsencode(d) + b'/caf\\xe9', os.O_RDWR), 8192, mmap.MAP_SHARED)",
      "print('mapped', flush=True)",
      'sys.stdin.read()',
    ].join('\n');
    const child = spawn('python3', ['-c', program, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      expect((await lines.next()).value).toBe('mapped');
      expect([...sharedWritableFiles([child.pid as number, 2 ** 22 + 17])].sort()).toEqual([join(dir, 'caf\uDCE9'), join(dir, 'shared')]);
    } finally {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('places a container path in the tree mounted where it lies, unless another mount holds it more closely', () => {
    const mounts = ['/', '/var/lib/mysql', '/var/lib/mysql/logs', '/etc/hosts', '/dev/shm'];
    expect(treeRelative('/data/db-shm', '/', mounts)).toBe('data/db-shm');
    expect(treeRelative('/var/lib/mysql/ibdata1', '/', mounts)).toBeUndefined();
    expect(treeRelative('/var/lib/mysql/ibdata1', '/var/lib/mysql', mounts)).toBe('ibdata1');
    expect(treeRelative('/var/lib/mysql/logs/x', '/var/lib/mysql', mounts)).toBeUndefined();
    expect(treeRelative('/var/lib/mysql/logs/x', '/var/lib/mysql/logs', mounts)).toBe('x');
    expect(treeRelative('/var/lib/mysqlx/y', '/var/lib/mysql', mounts)).toBeUndefined();
    expect(treeRelative('/var/lib/mysqlx/y', '/', mounts)).toBe('var/lib/mysqlx/y');
    expect(treeRelative('/dev/shm/PostgreSQL.1', '/', mounts)).toBeUndefined();
    expect(treeRelative('/var/lib/mysql', '/var/lib/mysql', mounts)).toBeUndefined();
    expect(treeRelative('/etc/hosts', '/', mounts)).toBeUndefined();
    // Destinations written with a trailing slash mean the same.
    expect(treeRelative('/vol/x', '/vol/', ['/', '/vol/'])).toBe('x');
    expect(treeRelative('/vol/x', '/', ['/', '/vol/'])).toBeUndefined();
  });
});
