/**
 * Reads a container's log from Docker's json-file log (`<data-root>/containers/<id>/<id>-json.log`,
 * one `{"log":"…\n","stream":"stdout","time":"…"}` per line), from where the previous poll
 * stopped: one pread per container and round when nothing was written.
 *
 * Why not Docker's logs API for these: a followed logs stream per container costs an HTTP
 * request per container and, for every line, a socket wake-up and Node's HTTP and stream
 * machinery: at 1000 containers writing a line per 10 s that was 1.5 % of a core, the
 * monitor's largest cost (bench:monitor). Log shippers read these files for the same
 * reason. Containers with another log driver are followed through the API (log-follower.ts).
 *
 * - Docker splits a line longer than 16 KiB into entries without the newline: they are put
 *   together again (up to MAX_LINE_BYTES, then cut), and the line gets its last part's time.
 * - Rotation (`max-size`): Docker renames the file and starts a new one; the kept-open file
 *   is read to its end first, then the new one from the start. Only a file in the second
 *   half of its `max-size` is checked (a stat) when nothing new was read.
 * - A file that is removed (the container was) can still be read to its end through the
 *   open descriptor; `end()` returns what was left of a split line.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { MAX_LINE_BYTES, parseNanoTime, type LogStream } from './log-store.ts';
import type { ParsedLogLine } from './log-follower.ts';

const CHUNK_BYTES = 64 * 1024;
/** One read buffer for every tail (polls are synchronous): one per tail was 64 MiB at 1000 containers. */
const chunk = Buffer.allocUnsafe(CHUNK_BYTES);

/** Docker's `max-size` log option ("10m", "1g", "500k", plain bytes) in bytes (1024-based, as Docker reads it). */
export function parseDockerSize(text: string | undefined): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text ?? '');
  if (m === null) return undefined;
  const power = ' kmgt'.indexOf((m[2] ?? '').toLowerCase() || ' ');
  return Math.round(Number(m[1]) * 1024 ** power);
}

export class JsonFileLogTail {
  private fd_: number | undefined;
  private ino = 0;
  private offset = 0;
  /** Bytes after the last newline read (a line being written). */
  private rest: Buffer | undefined;
  private readonly partial: Record<LogStream, { text: string; atNs: bigint | undefined }> = {
    stdout: { text: '', atNs: undefined },
    stderr: { text: '', atNs: undefined },
  };

  constructor(
    readonly path: string,
    /** Docker's max-size for this container's log, when it rotates. */
    private readonly maxBytes?: number,
  ) {}

  /** Why the file could not be opened at the last try (an errno code), or undefined. */
  openError: string | undefined;

  /** The open log file's descriptor, or -1. */
  get fd(): number {
    return this.fd_ ?? -1;
  }

  /** Whether a poll can find anything, given the open file's current size (-1: unknown). */
  due(size: number): boolean {
    return this.fd_ === undefined || size !== this.offset || (this.maxBytes !== undefined && this.offset >= this.maxBytes / 2);
  }

  /** Lines written since the previous poll, reading at most `budgetBytes`; `budget.left` is decreased by what was read. */
  poll(budget: { left: number }): ParsedLogLine[] {
    const out: ParsedLogLine[] = [];
    if (this.fd_ === undefined && !this.open()) return out;
    for (;;) {
      const n = budget.left <= 0 ? 0 : readSync(this.fd_!, chunk, 0, Math.min(CHUNK_BYTES, budget.left), this.offset);
      if (n > 0) {
        this.offset += n;
        budget.left -= n;
        this.lines(chunk.subarray(0, n), out);
        continue;
      }
      // Nothing more (or no budget): a rotation is only possible near max-size.
      if (budget.left <= 0 || this.maxBytes === undefined || this.offset < this.maxBytes / 2) return out;
      const now = statSync(this.path, { throwIfNoEntry: false });
      if (now === undefined || (now.ino === this.ino && now.size >= this.offset)) return out;
      // Rotated (or truncated): the old file was read to its end; the new one from its start.
      this.closeFile();
      if (!this.open()) return out;
    }
  }

  /** What is left of a split line, as a line (the container is gone). */
  end(): ParsedLogLine[] {
    const out: ParsedLogLine[] = [];
    for (const stream of ['stdout', 'stderr'] as const) this.flush(stream, out);
    return out;
  }

  close(): void {
    this.closeFile();
  }

  private open(): boolean {
    try {
      this.fd_ = openSync(this.path, 'r');
      this.ino = fstatSync(this.fd_).ino;
      this.offset = 0;
      this.rest = undefined;
      this.openError = undefined;
      return true;
    } catch (err) {
      this.fd_ = undefined;
      this.openError = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return false; // not there yet (or gone): tried again next poll
    }
  }

  private closeFile(): void {
    if (this.fd_ !== undefined) closeSync(this.fd_);
    this.fd_ = undefined;
  }

  private lines(bytes: Buffer, out: ParsedLogLine[]): void {
    let data = this.rest === undefined ? bytes : Buffer.concat([this.rest, bytes]);
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, start)) {
      this.entry(data.toString('utf8', start, nl), out);
      start = nl + 1;
    }
    if (start < data.length) {
      data = data.subarray(start);
      // A line of the file longer than any entry Docker writes: not JSON from Docker; dropped.
      this.rest = data.length > 2 * MAX_LINE_BYTES ? undefined : Buffer.from(data);
    } else this.rest = undefined;
  }

  private entry(line: string, out: ParsedLogLine[]): void {
    let e: { log?: unknown; stream?: unknown; time?: unknown };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      return; // not an entry (a torn line): skipped
    }
    if (e === null || typeof e.log !== 'string' || typeof e.time !== 'string') return;
    const stream: LogStream = e.stream === 'stderr' ? 'stderr' : 'stdout';
    const atNs = parseNanoTime(e.time);
    if (atNs === undefined) return;
    const p = this.partial[stream];
    p.atNs = atNs;
    if (e.log.endsWith('\n')) {
      p.text += e.log.slice(0, -1);
      this.flush(stream, out);
      return;
    }
    p.text += e.log;
    if (Buffer.byteLength(p.text) > MAX_LINE_BYTES) this.flush(stream, out);
  }

  private flush(stream: LogStream, out: ParsedLogLine[]): void {
    const p = this.partial[stream];
    if (p.atNs === undefined) return;
    let text = p.text;
    if (text.endsWith('\r')) text = text.slice(0, -1); // TTY lines end with \r\n
    out.push({ stream, atNs: p.atNs, text });
    p.text = '';
    p.atNs = undefined;
  }
}
