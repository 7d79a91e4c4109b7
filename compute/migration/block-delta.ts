/**
 * Large files by blocks (bin/herd-blocks.py): the pre-copy sends each large file of a tree
 * whole (fs-precopy.ts picks them); the target, applying the stream with the same tool behind
 * the transfer key's forced command (`herd-blocks`, which checks the directory as
 * `herd-receive` does), replies with a sha256 per 64 KiB block of what it holds. After the
 * freeze that state says which blocks changed, and only those go. A database's files are
 * rewritten in place, a few blocks at a time: by tar they would go whole again.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { BLOCKS_PYTHON } from '../config.ts';

/** The tool, beside the forced command in the checkout's bin/. */
export const BLOCKS_TOOL = resolve(import.meta.dirname, '../../bin/herd-blocks.py');

/** What the target holds of a tree's large files, as it replied to the pre-copy (one per tree per migration; `remove` when done). */
export class BlockState {
  private readonly dir = mkdtempSync(join(tmpdir(), 'herd-blocks-'));
  readonly file = join(this.dir, 'state');

  /** Keeps the receiver's reply to a fresh send. */
  save(reply: Buffer | undefined): void {
    writeFileSync(this.file, reply ?? Buffer.alloc(0));
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The block stream of `paths` (relative to `dir`): each file's metadata and the blocks that
 * differ from what `state` says the target holds, or without a state every non-zero block
 * (a fresh send, nothing hashed here); files gone meanwhile are left out. Errors (a non-zero
 * exit) surface on the stream.
 */
export function blocksStream(dir: string, paths: readonly string[], state?: BlockState): Readable {
  const child = spawn(BLOCKS_PYTHON, [BLOCKS_TOOL, 'send', ...(state === undefined ? ['--fresh', dir] : [dir, state.file])], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => undefined); // the tool failing early closes it: its exit code says why
  child.stdin.end(Buffer.concat(paths.map((p) => Buffer.from(`${p}\0`))));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Pipe at once: Node resumes (and so discards) an unread child stdout when the child exits.
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  child.on('close', (code) => (code === 0 ? out.end() : out.destroy(new Error(`herd-blocks send of ${dir} exited ${code}: ${stderr.trim()}`))));
  child.on('error', (err) => out.destroy(new Error(`cannot run ${BLOCKS_PYTHON} ${BLOCKS_TOOL} (apt-get install python3): ${err.message}`)));
  return out;
}
