/** `herd metrics export --since … --to …`: the dataset as CSV (one header, one row per sample). */
import { containerMetricsSchema, hostMetricsSchema, migrationMarkerSchema, pressureSchema } from '../protocol/messages.ts';
import { HerdError } from '../protocol/errors.ts';
import { DATASET_KINDS, streamDataset, type DatasetKind, type DatasetRecord } from './dataset.ts';

const NESTED: Record<string, string[]> = {
  pressure: Object.keys(pressureSchema.shape),
  migration: Object.keys(migrationMarkerSchema.shape),
};

/** Columns: kind, then every field of both sample schemas (nested objects as `a.b`), `v` left out. */
export const CSV_COLUMNS: string[] = (() => {
  const cols = ['kind'];
  for (const key of [...Object.keys(hostMetricsSchema.shape), ...Object.keys(containerMetricsSchema.shape)]) {
    const names = NESTED[key]?.map((k) => `${key}.${k}`) ?? [key];
    for (const name of names) if (name !== 'v' && !cols.includes(name)) cols.push(name);
  }
  return cols;
})();

function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsvRow(kind: DatasetKind, record: DatasetRecord): string {
  return CSV_COLUMNS.map((col) => {
    if (col === 'kind') return kind === 'hosts' ? 'host' : 'container';
    const [a, b] = col.split('.');
    const value = b === undefined ? record[a as string] : (record[a as string] as Record<string, unknown> | undefined)?.[b];
    return cell(value);
  }).join(',');
}

const DURATION = /^(\d+(?:\.\d+)?)\s*([smhd])$/;
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;
/** ISO 8601 as RFC 3339 has it: a date, or a date and time (minutes at least) with an optional fraction and zone. */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-](\d{2}):(\d{2}))?)?$/;
const TIME_FORMS = 'a duration ago (90s, 15m, 2h, 7d), "now", an ISO 8601 date (2026-11-22, UTC midnight) or date-time (2026-11-22T10:00:00Z; without a zone, local time)';

const daysIn = (year: number, month: number): number => new Date(Date.UTC(year, month, 0)).getUTCDate();

/**
 * Parses a time a command was given: a duration before now ("90s", "15m", "2h", "7d"),
 * "now", or an ISO 8601 date or date-time, checked strictly (Date.parse alone reads "1" as
 * 2001-01-01 and rolls 2026-02-30 over to March 2). BAD_USAGE naming `flag`, the value and
 * the accepted forms otherwise.
 */
export function parseTime(text: string, now = new Date(), flag?: string): Date {
  const value = text.trim();
  const bad = (why = 'is not a time') => new HerdError('BAD_USAGE', `${flag === undefined ? '' : `${flag} `}"${text}" ${why}: use ${TIME_FORMS}`);
  const rel = DURATION.exec(value);
  if (rel !== null) return new Date(now.getTime() - Number(rel[1]) * UNIT_SECONDS[rel[2] as keyof typeof UNIT_SECONDS] * 1000);
  if (value === 'now') return now;
  const m = ISO_TIME.exec(value);
  if (m === null) throw bad();
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) throw bad('is not a calendar date');
  if (m[4] !== undefined && (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59)) throw bad('is not a time of day');
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) throw bad('has no valid zone offset');
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw bad();
  return new Date(t);
}

export interface ExportOptions {
  dir: string;
  since: Date;
  to: Date;
  kinds?: readonly DatasetKind[];
  write: (chunk: string) => void;
}

/** Rows go to `write` in chunks of about this many characters (one write per row cost a system call each). */
const CHUNK_CHARS = 64 * 1024;

/**
 * Writes the CSV; returns row and skipped-line counts. Rows are ordered by kind, then time.
 * The dataset is streamed (streamDataset): rows are written as the day files are read, never
 * the range's records all at once.
 */
export async function exportCsv(options: ExportOptions): Promise<{ rows: number; skippedLines: number }> {
  if (!(options.since < options.to)) throw new HerdError('BAD_USAGE', `--since (${options.since.toISOString()}) must be before --to (${options.to.toISOString()})`);
  let chunk = `${CSV_COLUMNS.join(',')}\n`;
  let rows = 0;
  let skippedLines = 0;
  for (const kind of options.kinds ?? DATASET_KINDS) {
    const result = await streamDataset(options.dir, kind, { since: options.since, to: options.to }, (r) => {
      chunk += `${toCsvRow(kind, r)}\n`;
      rows++;
      if (chunk.length >= CHUNK_CHARS) {
        options.write(chunk);
        chunk = '';
      }
    });
    skippedLines += result.skippedLines;
  }
  if (chunk !== '') options.write(chunk);
  return { rows, skippedLines };
}
