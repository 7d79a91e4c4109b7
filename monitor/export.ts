/** `herd metrics export --since … --to …`: the dataset as CSV (one header, one row per sample). */
import { containerMetricsSchema, hostMetricsSchema, migrationMarkerSchema, pressureSchema } from '../protocol/messages.ts';
import { HerdError } from '../protocol/errors.ts';
import { DATASET_KINDS, readDataset, type DatasetKind, type DatasetRecord } from './dataset.ts';

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

/** Parses an ISO time or a duration before now ("90s", "15m", "2h", "7d"). */
export function parseTime(text: string, now = new Date()): Date {
  const rel = /^(\d+(?:\.\d+)?)\s*([smhd])$/.exec(text.trim());
  if (rel !== null) {
    const seconds = Number(rel[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - seconds * 1000);
  }
  if (text.trim() === 'now') return now;
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new HerdError('BAD_USAGE', `"${text}" is not a time: use ISO 8601 (2026-11-22T10:00:00Z), a date, "now", or a duration ago such as 2h`);
  return new Date(t);
}

export interface ExportOptions {
  dir: string;
  since: Date;
  to: Date;
  kinds?: readonly DatasetKind[];
  write: (chunk: string) => void;
}

/** Writes the CSV; returns row and skipped-line counts. Rows are ordered by kind, then time. */
export async function exportCsv(options: ExportOptions): Promise<{ rows: number; skippedLines: number }> {
  if (!(options.since < options.to)) throw new HerdError('BAD_USAGE', `--since (${options.since.toISOString()}) must be before --to (${options.to.toISOString()})`);
  options.write(`${CSV_COLUMNS.join(',')}\n`);
  let rows = 0;
  let skippedLines = 0;
  for (const kind of options.kinds ?? DATASET_KINDS) {
    const result = await readDataset(options.dir, kind, { since: options.since, to: options.to });
    skippedLines += result.skippedLines;
    result.records.sort((x, y) => Date.parse(x.at) - Date.parse(y.at));
    for (const r of result.records) {
      options.write(`${toCsvRow(kind, r)}\n`);
      rows++;
    }
  }
  return { rows, skippedLines };
}
