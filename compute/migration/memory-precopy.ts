/**
 * Memory before the freeze, and the checkpoint images by pages (bin/herd-pages.py).
 *
 * While the container runs, the pre-copy sends the prior: each distinct non-zero page of its
 * processes' resident private memory, once, into the target's image directory; the source
 * keeps the pages' digests (the index: XXH3-128 with a seed of its own, or sha256 on a host
 * without python3-xxhash). After the dump, the images go as a page stream:
 * a zero page as a hole, a page the prior holds as its place there, any other page as its
 * bytes. The target rebuilds the images and removes the prior before the restore. It leaves out
 * the zero pages of private anonymous memory (pages-N.img without them, pagemap-PID.img no longer
 * listing them): CRIU's restore maps that memory afresh, where an unfilled page reads as zeros,
 * and copies and allocates about half as much for a database (bin/herd-pages.py says how).
 * Most of a container's memory does not change in the seconds between the pre-copy and the
 * freeze, so most of it no longer moves while the container is frozen. CRIU's own pre-dump
 * would need the kernel's soft-dirty tracking, which many kernels (this lab's among them) lack.
 *
 * The source sends a checkpoint this way when the memory went before the freeze (a container using
 * at least preCopyMemoryMinBytes); a tiny one's goes by tar, which costs less than a Python
 * process on each host. The tool also sends without a prior ("-": zeros still go as holes).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { runTool, toolPath } from './python-tool.ts';

export const PAGES_TOOL = toolPath('herd-pages.py');

/** The digests of the pages a prior sent (one per migration; `remove` when done). */
export class MemoryPrior {
  private readonly dir = mkdtempSync(join(tmpdir(), 'herd-prior-'));
  readonly index = join(this.dir, 'index');

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The prior stream of the processes' resident pages; the tool writes `prior.index` once it is complete. */
export function priorStream(pids: readonly number[], prior: MemoryPrior): Readable {
  const tool = runTool(PAGES_TOOL, ['prior', prior.index, ...pids.map(String)], 'herd-pages prior');
  tool.end(Buffer.alloc(0));
  return tool.out;
}

/** A page sender started when the migration starts (Python's start-up, ~0.1 s of CPU, stays out of the downtime). */
export interface ImagesSender {
  /** Matches the images' pages against what `prior` sent (before `images`; without it, zeros alone are left out). */
  matchAgainst(prior: MemoryPrior): void;
  /** The page stream of the image directory `dir`, once it is complete. */
  images(dir: string): Readable;
  /** Ends a sender that will not be used. */
  cancel(): void;
}

export function openImagesSender(): ImagesSender {
  const tool = runTool(PAGES_TOOL, ['send'], 'herd-pages send');
  tool.out.on('error', () => undefined); // a sender never used; a used one's errors reach its reader
  let indexed = false;
  const line = (text: string) => {
    if (/[\n\0]/.test(text)) throw new Error(`invalid path ${JSON.stringify(text)}`);
    return Buffer.from(`${text}\n`);
  };
  return {
    matchAgainst(prior) {
      tool.write(line(prior.index));
      indexed = true;
    },
    images(dir) {
      tool.end(Buffer.concat([...(indexed ? [] : [line('-')]), line(dir)]));
      return tool.out;
    },
    cancel: tool.kill,
  };
}
