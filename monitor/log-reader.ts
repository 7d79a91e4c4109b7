/**
 * Reading a container log written by log-store.ts: all of it or its last lines, then
 * optionally following it as it grows (`herd logs -f`). Torn lines are skipped; only
 * bytes up to the last newline are taken while following, the rest comes next poll.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { parseLogLine, type LogRecord } from './log-store.ts';

const CHUNK_BYTES = 256 * 1024;

export interface ReadLogResult {
  records: LogRecord[];
  skippedLines: number;
  /** Offset just after the last complete line read (where following continues). */
  offset: number;
}

/** Reads `path` from `offset` to its current end, complete lines only; keeps the last `tail` records when given. */
export function readLogFrom(path: string, offset = 0, tail?: number): ReadLogResult {
  const out: ReadLogResult = { records: [], skippedLines: 0, offset };
  if (!existsSync(path)) return out;
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
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

/**
 * Calls `onRecords` with what is appended to `path` after `offset`, polling every
 * `pollMs`, until `signal` aborts. Waits for the file when it does not exist yet.
 */
export async function followLog(path: string, offset: number, onRecords: (records: LogRecord[]) => void, options: { signal?: AbortSignal; pollMs?: number } = {}): Promise<void> {
  let at = offset;
  const pollMs = options.pollMs ?? 250;
  while (options.signal?.aborted !== true) {
    const r = readLogFrom(path, at);
    at = r.offset;
    if (r.records.length > 0) onRecords(r.records);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, pollMs);
      options.signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }
}
