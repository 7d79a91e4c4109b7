/**
 * Reading a container log written by log-store.ts: all of it (its rotated files first) or
 * its last lines, then optionally following it as it grows and rotates (`herd logs -f`).
 * Torn lines are skipped; only bytes up to the last newline are taken while following,
 * the rest comes next poll.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { logFilesOldestFirst, parseLogLine, rotatedPath, type LogRecord } from './log-store.ts';

const CHUNK_BYTES = 256 * 1024;

export interface ReadLogResult {
  records: LogRecord[];
  skippedLines: number;
  /** Offset just after the last complete line read (where following continues). */
  offset: number;
  /** Inode of the file read (following notices a rotation by it); undefined when it does not exist. */
  ino?: number;
}

/** Reads `path` from `offset` to its current end, complete lines only; keeps the last `tail` records when given. */
export function readLogFrom(path: string, offset = 0, tail?: number): ReadLogResult {
  const out: ReadLogResult = { records: [], skippedLines: 0, offset };
  if (!existsSync(path)) return out;
  const fd = openSync(path, 'r');
  try {
    const stat = fstatSync(fd);
    const size = stat.size;
    out.ino = stat.ino;
    if (size < offset) out.offset = offset = 0; // truncated: start over
    let pos = offset;
    let carry = Buffer.alloc(0);
    while (pos < size) {
      const n = Math.min(CHUNK_BYTES, size - pos);
      const chunk = Buffer.alloc(n);
      const got = readSync(fd, chunk, 0, n, pos);
      if (got <= 0) break;
      pos += got;
      const data = carry.length === 0 ? chunk.subarray(0, got) : Buffer.concat([carry, chunk.subarray(0, got)]);
      let start = 0;
      for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, start)) {
        const line = data.subarray(start, nl).toString('utf8');
        start = nl + 1;
        const r = parseLogLine(line);
        if (r === undefined) {
          if (line !== '') out.skippedLines++;
          continue;
        }
        out.records.push(r);
        if (tail !== undefined && out.records.length > tail * 2 + 1000) out.records.splice(0, out.records.length - tail);
      }
      out.offset += start;
      carry = Buffer.from(data.subarray(start));
    }
    if (tail !== undefined && out.records.length > tail) out.records.splice(0, out.records.length - tail);
    return out;
  } finally {
    closeSync(fd);
  }
}

/** A container's whole log, rotated files first (the last `tail` records when given); `offset`/`ino` are of the current file. */
export function readLog(path: string, tail?: number): ReadLogResult {
  const out: ReadLogResult = { records: [], skippedLines: 0, offset: 0 };
  for (const file of logFilesOldestFirst(path)) {
    const r = readLogFrom(file, 0, tail);
    out.records.push(...r.records);
    if (tail !== undefined && out.records.length > tail) out.records.splice(0, out.records.length - tail);
    out.skippedLines += r.skippedLines;
    if (file === path) {
      out.offset = r.offset;
      if (r.ino !== undefined) out.ino = r.ino;
    }
  }
  return out;
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/**
 * Calls `onRecords` with what is appended to `path` after `offset`, polling every
 * `pollMs`, until `signal` aborts. Waits for the file when it does not exist yet. When
 * the log was rotated (another file at `path`), the rest of the old file (now `.1`) is
 * read first, then the new one from its start.
 */
export async function followLog(path: string, offset: number, onRecords: (records: LogRecord[]) => void, options: { signal?: AbortSignal; pollMs?: number; ino?: number } = {}): Promise<void> {
  let at = offset;
  let ino = options.ino;
  const pollMs = options.pollMs ?? 250;
  while (options.signal?.aborted !== true) {
    const now = inodeOf(path);
    if (ino !== undefined && now !== undefined && now !== ino) {
      const rotated = rotatedPath(path, 1);
      if (inodeOf(rotated) === ino) {
        const rest = readLogFrom(rotated, at);
        if (rest.records.length > 0) onRecords(rest.records);
      }
      at = 0;
    }
    const r = readLogFrom(path, at);
    at = r.offset;
    if (r.ino !== undefined) ino = r.ino;
    if (r.records.length > 0) onRecords(r.records);
    await new Promise<void>((resolve) => {
      // One listener per poll, removed again when the poll's timer fires (not one more per poll).
      const onAbort = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        options.signal?.removeEventListener('abort', onAbort);
        resolve();
      }, pollMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
