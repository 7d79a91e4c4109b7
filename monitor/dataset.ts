/**
 * The on-disk dataset for the forecasting work: every sample as one JSON line in
 * `<dir>/hosts/YYYY-MM-DD.jsonl` or `<dir>/containers/YYYY-MM-DD.jsonl` (UTC day of the
 * sample's `at`).
 *
 * Crash safety: each line (or one round's lines) goes out in ONE write(2) on a file
 * opened with O_APPEND, so lines from concurrent writers never interleave and a crash can
 * tear at most the last line. A file whose tail is torn gets a newline before the next append, so the torn
 * bytes stay on a line of their own; the reader ignores any line that is not complete
 * JSON.
 *
 * Reading never holds a day file as one string (a busy host's day passes V8's ~512 MiB
 * string limit): files are read line by line, and records come out in time order with
 * only the records that arrived out of order held back (see streamDataset).
 */
import { openForAppend } from './append-file.ts';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { HerdError } from '../protocol/errors.ts';

export type DatasetKind = 'hosts' | 'containers';
export const DATASET_KINDS: readonly DatasetKind[] = ['hosts', 'containers'];

export interface DatasetRecord {
  at: string;
  [key: string]: unknown;
}

export function dayOf(at: string): string {
  // Samples carry toISOString() times: the UTC day is their first 10 characters.
  if (at.length >= 20 && at.endsWith('Z') && at[10] === 'T') return at.slice(0, 10);
  return new Date(at).toISOString().slice(0, 10);
}

export class DatasetWriter {
  private readonly open = new Map<string, number>();

  constructor(readonly dir: string) {}

  append(kind: DatasetKind, record: DatasetRecord): void {
    this.appendLines(kind, [{ at: record.at, json: JSON.stringify(record) }]);
  }

  /**
   * Appends already-encoded records (one round's samples) in as few writes as there are
   * days among them: still whole lines per O_APPEND write, so the guarantees above hold.
   */
  appendLines(kind: DatasetKind, lines: ReadonlyArray<{ at: string; json: string }>): void {
    const byDay = new Map<string, string[]>();
    for (const l of lines) {
      const day = dayOf(l.at);
      const list = byDay.get(day);
      if (list === undefined) byDay.set(day, [l.json]);
      else list.push(l.json);
    }
    for (const [day, jsons] of byDay) {
      const path = join(this.dir, kind, `${day}.jsonl`);
      const fd = this.fdFor(kind, path);
      const buf = Buffer.from(`${jsons.join('\n')}\n`, 'utf8');
      let written = 0;
      try {
        // One call for regular files in practice; the loop only guards against a short write.
        while (written < buf.length) written += writeSync(fd, buf, written, buf.length - written);
      } catch (err) {
        // A write that failed (ENOSPC, EIO), maybe after writing part of the lines, left a torn
        // line: the file is closed, so that the next append reopens it and openForAppend ends
        // the torn bytes with a newline before it writes (kept open, the next line would be
        // glued to them and both lost).
        this.open.delete(path);
        try {
          closeSync(fd);
        } catch {
          // Closing is best effort; the write's error is the one to report.
        }
        throw err;
      }
    }
  }

  close(): void {
    for (const fd of this.open.values()) closeSync(fd);
    this.open.clear();
  }

  private fdFor(kind: DatasetKind, path: string): number {
    const known = this.open.get(path);
    if (known !== undefined) return known;
    // A new day: close the previous day's file of this kind.
    for (const [p, fd] of this.open) {
      if (p.startsWith(join(this.dir, kind, '/'))) {
        closeSync(fd);
        this.open.delete(p);
      }
    }
    mkdirSync(join(this.dir, kind), { recursive: true });
    const fd = openForAppend(path);
    this.open.set(path, fd);
    return fd;
  }
}

export interface ReadResult {
  records: DatasetRecord[];
  /** Lines that were not complete JSON (torn by a crash). */
  skippedLines: number;
}

/** Parses one day file's text: complete JSON lines only. */
export function parseDatasetText(text: string): ReadResult {
  const records: DatasetRecord[] = [];
  let skippedLines = 0;
  const lines = text.split('\n');
  // The part after the last newline is an unterminated (torn) line, or empty.
  const tail = lines.pop();
  if (tail !== undefined && tail !== '') skippedLines++;
  for (const line of lines) {
    if (line === '') continue;
    try {
      const value = JSON.parse(line) as unknown;
      if (value !== null && typeof value === 'object' && typeof (value as DatasetRecord).at === 'string') records.push(value as DatasetRecord);
      else skippedLines++;
    } catch {
      skippedLines++;
    }
  }
  return { records, skippedLines };
}

/**
 * A dataset directory a command reads, checked: BAD_USAGE naming it (and where it came
 * from, e.g. "--dir") when it does not exist or is no directory, as a mistyped one would
 * otherwise read as an empty dataset.
 */
export function requireDatasetDir(dir: string, from?: string): string {
  const source = from === undefined ? '' : ` (${from})`;
  if (!existsSync(dir)) throw new HerdError('BAD_USAGE', `dataset directory ${dir}${source} does not exist`);
  if (!statSync(dir).isDirectory()) throw new HerdError('BAD_USAGE', `dataset directory ${dir}${source} is not a directory`);
  return dir;
}

/** What reading a range of the dataset found besides its records. */
export interface StreamResult {
  /** Lines that were not complete JSON (torn by a crash). */
  skippedLines: number;
  /** The most records held back at once to put a file's records in time order (a measure of the memory used). */
  maxBuffered: number;
}

/** The day files of `kind` that can hold records of `range`, in day (so time) order; an unreadable folder is a HerdError naming it. */
export function dayFiles(dir: string, kind: DatasetKind, range: { since: Date; to: Date }): string[] {
  const folder = join(dir, kind);
  if (!existsSync(folder)) return [];
  const first = range.since.toISOString().slice(0, 10);
  const last = range.to.toISOString().slice(0, 10);
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (err) {
    throw ioError(folder, err, 'folder');
  }
  return names
    .filter((f) => /^\d{4}-\d{2}-\d{2}\.jsonl$/.test(f))
    .filter((f) => f.slice(0, 10) >= first && f.slice(0, 10) <= last)
    .sort()
    .map((f) => join(folder, f));
}

function ioError(path: string, err: unknown, what: 'file' | 'folder' = 'file'): HerdError {
  const e = err as NodeJS.ErrnoException;
  // The catalogue has no I/O code: a dataset the command was pointed at that cannot be read is
  // a bad argument, as a --dir that does not exist is (requireDatasetDir).
  return new HerdError('BAD_USAGE', `cannot read the dataset ${what} ${path}: ${e.message}`, { cause: err });
}

/**
 * The time of a dataset line, from its `"at":"…"` without parsing the JSON (the writer
 * stringifies samples whose first `at` key is theirs); NaN when it has none.
 */
export function lineTime(line: string): number {
  const start = line.indexOf('"at":"');
  if (start < 0) return Number.NaN;
  const end = line.indexOf('"', start + 6);
  return end < 0 ? Number.NaN : Date.parse(line.slice(start + 6, end));
}

/**
 * Calls `onLine` with every complete (newline-ended) line of a file as it was when the read
 * began (a monitor may be appending), read through a stream: never the whole file as one
 * string. Returns whether an unended (torn) last line was left out. An I/O error is a
 * HerdError naming the file.
 */
async function forEachLine(path: string, size: number, onLine: (line: string) => void): Promise<{ tornTail: boolean }> {
  if (size === 0) return { tornTail: false };
  // Errors of the caller's own callback (say, writing the output) pass as they are.
  let inCallback = false;
  const pass = (line: string) => {
    inCallback = true;
    onLine(line);
    inCallback = false;
  };
  try {
    const endsInNewline = lastByte(path, size) === 0x0a;
    const lines = createInterface({ input: createReadStream(path, { start: 0, end: size - 1, highWaterMark: 256 * 1024 }), crlfDelay: Infinity });
    // Each line is passed on when the next one arrives: the last one is complete only if the file ends in a newline.
    let held: string | undefined;
    for await (const line of lines) {
      if (held !== undefined) pass(held);
      held = line;
    }
    if (held !== undefined && endsInNewline) pass(held);
    return { tornTail: held !== undefined && !endsInNewline };
  } catch (err) {
    if (inCallback) throw err;
    throw ioError(path, err);
  }
}

function lastByte(path: string, size: number): number | undefined {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    return readSync(fd, b, 0, 1, size - 1) === 1 ? b[0] : undefined;
  } finally {
    closeSync(fd);
  }
}

/** Records held back until no later line of the file can be older: a min-heap by time, then by file order. */
class TimeHeap {
  private readonly items: Array<{ t: number; seq: number; record: DatasetRecord }> = [];
  private seq = 0;

  get size(): number {
    return this.items.length;
  }

  /** Time of the oldest record held (Infinity when empty). */
  get oldest(): number {
    return this.items[0]?.t ?? Number.POSITIVE_INFINITY;
  }

  push(t: number, record: DatasetRecord): void {
    const a = this.items;
    a.push({ t, seq: this.seq++, record });
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  pop(): DatasetRecord {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(l, m)) m = l;
        if (r < a.length && this.before(r, m)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top.record;
  }

  private before(i: number, j: number): boolean {
    const x = this.items[i]!;
    const y = this.items[j]!;
    return x.t < y.t || (x.t === y.t && x.seq < y.seq);
  }
}

/**
 * Calls `onRecord` with every record of `kind` with since <= at < to, in time order (ties
 * in file order), reading one day file at a time, line by line.
 *
 * A day file is in time order only nearly: lines are appended as each host's round ends,
 * so one monitor's hosts interleave (a host whose pmproxy answered late writes samples
 * older than another host's last ones), and a clock stepped back writes older times. So
 * each file is read twice: first for its lateness L (how far, at most, a line's time lies
 * behind the newest time before it: a few seconds normally), then a record is held back
 * only until a line L newer than it has been read, when no later line can be older. Memory
 * stays at the records of L seconds; at worst (a clock stepped back by hours) one day's
 * matching records, never the whole range's.
 */
export async function streamDataset(dir: string, kind: DatasetKind, range: { since: Date; to: Date }, onRecord: (record: DatasetRecord) => void): Promise<StreamResult> {
  const out: StreamResult = { skippedLines: 0, maxBuffered: 0 };
  const since = range.since.getTime();
  const to = range.to.getTime();
  for (const path of dayFiles(dir, kind, range)) {
    let size: number;
    try {
      size = statSync(path).size;
    } catch (err) {
      throw ioError(path, err);
    }
    // Pass 1: the file's lateness.
    let newest = Number.NEGATIVE_INFINITY;
    let lateness = 0;
    await forEachLine(path, size, (line) => {
      const t = lineTime(line);
      if (!(t === t)) return;
      if (newest - t > lateness) lateness = newest - t;
      if (t > newest) newest = t;
    });
    // Pass 2: the records, each let out once no later line can be older.
    const held = new TimeHeap();
    let last = Number.NEGATIVE_INFINITY;
    newest = Number.NEGATIVE_INFINITY;
    /** Lets out, oldest first, the held records not newer than `upTo`. */
    const release = (upTo: number) => {
      while (held.size > 0 && held.oldest <= upTo) {
        last = held.oldest;
        onRecord(held.pop());
      }
    };
    const { tornTail } = await forEachLine(path, size, (line) => {
      const lt = lineTime(line);
      if (lt > newest) newest = lt;
      let value: unknown;
      try {
        value = line === '' ? undefined : JSON.parse(line);
      } catch {
        out.skippedLines++;
        return;
      }
      if (value === undefined) return;
      if (value === null || typeof value !== 'object' || typeof (value as DatasetRecord).at !== 'string') {
        out.skippedLines++;
        return;
      }
      const record = value as DatasetRecord;
      const t = Date.parse(record.at);
      if (t >= since && t < to) {
        // Only a line whose `at` is not its first "at" could be older than what is out already: it goes out now rather than be lost.
        if (t < last) onRecord(record);
        else held.push(t, record);
        if (held.size > out.maxBuffered) out.maxBuffered = held.size;
      }
      release(newest - lateness);
    });
    if (tornTail) out.skippedLines++;
    release(Number.POSITIVE_INFINITY);
  }
  return out;
}

/** Records of `kind` with since <= at < to, in time order (see streamDataset; all of them in memory: for callers that need them all). */
export async function readDataset(dir: string, kind: DatasetKind, range: { since: Date; to: Date }): Promise<ReadResult> {
  const records: DatasetRecord[] = [];
  const { skippedLines } = await streamDataset(dir, kind, range, (r) => records.push(r));
  return { records, skippedLines };
}
