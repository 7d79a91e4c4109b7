/** Directory trees in unit tests: run a program, read a stream whole, compare trees as archives. */
import { spawnSync } from 'node:child_process';
import type { Readable } from 'node:stream';

/** Runs `cmd` to completion (stdin `input`) and returns its stdout; throws with its stderr if it exits non-zero. */
export function must(cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { ...(input === undefined ? {} : { input }), maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The tree as one archive, sorted, with contents, owners, modes, mtimes, xattrs, links and
 * device numbers (not atime and ctime, which no copy keeps): equal archives, equal trees.
 */
export const treeImage = (dir: string) => must('tar', ['-c', '--sort=name', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '-C', dir, '.']);

/** The tree's listing (what differs, readable): for a failure message before the byte comparison. */
export const treeListing = (dir: string) => must('tar', ['-tv', '--full-time', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', '-'], treeImage(dir)).toString();

/** Sets an extended attribute (Node has no API for it), on a symlink itself rather than its target. */
export const setXattr = (path: string, name: string, value: string) => must('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode(), follow_symlinks=False)', path, name, value]);
