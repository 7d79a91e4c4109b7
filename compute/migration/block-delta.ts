/**
 * Large files by blocks (bin/herd-blocks.py): the pre-copy sends each large file of a tree
 * whole (fs-precopy.ts picks them); the target, applying the stream with the same tool behind
 * the transfer key's forced command (`herd-blocks`, which checks the directory as
 * `herd-receive` does), replies with a digest per 64 KiB block of what it holds (XXH3-128,
 * seeded; sha256 on a host without python3-xxhash). After the freeze that state says which
 * blocks changed, and only those go. A database's files are
 * rewritten in place, a few blocks at a time: by tar they would go whole again.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { nameList } from './byte-names.ts';
import { runTool, toolPath } from './python-tool.ts';

export const BLOCKS_TOOL = toolPath('herd-blocks.py');

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
  return openBlocksSender(dir, state).blocks(paths);
}

/** A block sender started before its paths are known (after the freeze): Python's start-up and the state's load stay off the downtime. */
export interface BlocksSender {
  /** The block stream of `paths` (see blocksStream). */
  blocks(paths: readonly string[]): Readable;
  /** Ends a sender that will not be used. */
  cancel(): void;
}

export function openBlocksSender(dir: string, state?: BlockState): BlocksSender {
  const tool = runTool(BLOCKS_TOOL, ['send', ...(state === undefined ? ['--fresh', dir] : [dir, state.file])], `herd-blocks send of ${dir}`);
  tool.out.on('error', () => undefined); // a sender never used; a used one's errors reach its reader
  return {
    blocks(paths) {
      tool.end(nameList(paths));
      return tool.out;
    },
    cancel: tool.kill,
  };
}
