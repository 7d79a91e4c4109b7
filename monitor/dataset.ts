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
 */
import { openForAppend } from './append-file.ts';
import { closeSync, existsSync, mkdirSync, readdirSync, statSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
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
      const fd = this.fdFor(kind, join(this.dir, kind, `${day}.jsonl`));
      const buf = Buffer.from(`${jsons.join('\n')}\n`, 'utf8');
      let written = 0;
      // One call for regular files in practice; the loop only guards against a short write.
      while (written < buf.length) written += writeSync(fd, buf, written, buf.length - written);
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

/** Records of `kind` with since <= at < to, in file (time) order. */
export async function readDataset(dir: string, kind: DatasetKind, range: { since: Date; to: Date }): Promise<ReadResult> {
  const folder = join(dir, kind);
  if (!existsSync(folder)) return { records: [], skippedLines: 0 };
  const first = range.since.toISOString().slice(0, 10);
  const last = range.to.toISOString().slice(0, 10);
  const files = readdirSync(folder)
    .filter((f) => /^\d{4}-\d{2}-\d{2}\.jsonl$/.test(f))
    .filter((f) => f.slice(0, 10) >= first && f.slice(0, 10) <= last)
    .sort();
  const out: ReadResult = { records: [], skippedLines: 0 };
  const since = range.since.getTime();
  const to = range.to.getTime();
  for (const f of files) {
    const { records, skippedLines } = parseDatasetText(await readFile(join(folder, f), 'utf8'));
    out.skippedLines += skippedLines;
    for (const r of records) {
      const t = Date.parse(r.at);
      if (t >= since && t < to) out.records.push(r);
    }
  }
  return out;
}
