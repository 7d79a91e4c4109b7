/**
 * The training table as CSV (format in README.md): a header, then one row per sample.
 * Columns: optional keys `at`, `herdId`, `hostId` (ignored by training), every other
 * column a numeric feature, and `label`. Empty cells and `NaN` are missing values.
 */
import { HerdError } from '../../protocol/errors.ts';
import type { TrainingTable } from './build.ts';

export const LABEL_COLUMN = 'label';
export const KEY_COLUMNS = ['at', 'herdId', 'hostId'] as const;

/** A table read back: features (column-major), the label (absent when the CSV has none and it was not required), the key columns it has. */
export interface CsvTable {
  names: string[];
  columns: Float64Array[];
  label?: Float64Array;
  rows: number;
  keys: Partial<Record<(typeof KEY_COLUMNS)[number], string[]>>;
}

const quote = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
const cellOf = (x: number) => (Number.isNaN(x) ? '' : String(x));

export function tableToCsv(t: TrainingTable): string {
  const lines = [[...KEY_COLUMNS, ...t.names, LABEL_COLUMN].join(',')];
  for (let r = 0; r < t.rows; r++) {
    const cells = [new Date(t.atMs[r] as number).toISOString(), quote(t.herdIds[r] as string), quote(t.hostIds[r] as string)];
    for (const c of t.columns) cells.push(cellOf(c[r] as number));
    cells.push(cellOf(t.label[r] as number));
    lines.push(cells.join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** Splits one CSV line (RFC 4180 quotes; no newline inside a quoted cell). */
export function splitCsvLine(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let cur = '';
  let inQuotes = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (inQuotes) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') inQuotes = false;
      else cur += ch;
    } else if (ch === '"') inQuotes = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * Parses a training table. `requireLabel` (training, evaluation) makes a missing `label`
 * column an error; prediction reads tables without one. Errors (BAD_CONFIG) name the file,
 * the row (1 = the first data row; the file line is row + 1) and the column.
 */
export function parseCsvTable(text: string, options: { file?: string; requireLabel?: boolean } = {}): CsvTable {
  const file = options.file ?? 'the table';
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const headerLine = lines[0];
  if (headerLine === undefined || headerLine.trim() === '') throw new HerdError('BAD_CONFIG', `${file}: empty, expected a CSV header line (feature columns and "${LABEL_COLUMN}")`);
  const header = splitCsvLine(headerLine).map((h) => h.trim());
  const seen = new Set<string>();
  header.forEach((h, i) => {
    if (h === '') throw new HerdError('BAD_CONFIG', `${file}: header column ${i + 1} has no name`);
    if (seen.has(h)) throw new HerdError('BAD_CONFIG', `${file}: column "${h}" appears twice in the header`);
    seen.add(h);
  });
  const labelAt = header.indexOf(LABEL_COLUMN);
  if (labelAt < 0 && options.requireLabel === true) throw new HerdError('BAD_CONFIG', `${file}: no "${LABEL_COLUMN}" column (header: ${header.join(', ')}); the label is the value to predict, e.g. ops/s`);
  const featureAt = header.map((h, i) => ({ h, i })).filter(({ h }) => h !== LABEL_COLUMN && !(KEY_COLUMNS as readonly string[]).includes(h));
  if (featureAt.length === 0) throw new HerdError('BAD_CONFIG', `${file}: no feature column (header: ${header.join(', ')})`);
  const rows = lines.length - 1;
  const columns = featureAt.map(() => new Float64Array(rows));
  const label = labelAt < 0 ? undefined : new Float64Array(rows);
  const keyAt = KEY_COLUMNS.map((k) => ({ k, i: header.indexOf(k) })).filter(({ i }) => i >= 0);
  const keys: CsvTable['keys'] = Object.fromEntries(keyAt.map(({ k }) => [k, new Array<string>(rows)]));
  for (let r = 0; r < rows; r++) {
    const cells = splitCsvLine(lines[r + 1] as string);
    if (cells.length !== header.length) throw new HerdError('BAD_CONFIG', `${file}: row ${r + 1} (line ${r + 2}) has ${cells.length} cells, the header ${header.length}`);
    for (const { k, i } of keyAt) (keys[k] as string[])[r] = cells[i] as string;
    featureAt.forEach(({ h, i }, k) => ((columns[k] as Float64Array)[r] = numeric(cells[i] as string, file, r, h)));
    if (label !== undefined) {
      const y = numeric(cells[labelAt] as string, file, r, LABEL_COLUMN);
      if (Number.isNaN(y)) throw new HerdError('BAD_CONFIG', `${file}: row ${r + 1} (line ${r + 2}) column "${LABEL_COLUMN}" is empty: every row needs a label`);
      label[r] = y;
    }
  }
  return { names: featureAt.map(({ h }) => h), columns, ...(label === undefined ? {} : { label }), rows, keys };
}

function numeric(cell: string, file: string, r: number, column: string): number {
  const s = cell.trim();
  if (s === '' || s === 'NaN') return Number.NaN;
  const x = Number(s);
  if (!Number.isFinite(x)) throw new HerdError('BAD_CONFIG', `${file}: row ${r + 1} (line ${r + 2}) column "${column}": "${cell.length > 40 ? `${cell.slice(0, 40)}…` : cell}" is not a number`);
  return x;
}

/** Column-major matrix for the learner (row r, column c at data[c * rows + r]). */
export function toMatrix(t: { names: string[]; columns: Float64Array[]; rows: number }): { data: Float64Array; rows: number; cols: number; names: string[] } {
  const data = new Float64Array(t.rows * t.columns.length);
  t.columns.forEach((c, k) => data.set(c, k * t.rows));
  return { data, rows: t.rows, cols: t.columns.length, names: [...t.names] };
}
