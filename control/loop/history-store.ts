/**
 * The migration history: every migration the control daemon started or saw (manual ones
 * too), with its reason, outcome and timings. An append-only JSON-lines file in the
 * state directory: a `started` line is written (and fsynced) BEFORE the migration is
 * sent, an `ended` line when its outcome is known, so a restart finds every migration it
 * had started and can ask the hosts how it ended instead of starting it again. A torn
 * last line (a crash mid-write) is skipped when the file is read back.
 */
import { appendFileSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { WireError } from '../../protocol/errors.ts';
import type { MigrationTimings } from '../../protocol/messages.ts';

export const OUTCOMES = ['done', 'failed', 'rolled-back', 'timeout', 'unknown'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface MigrationRecord {
  migrationId: string;
  herdId: string;
  name: string;
  from: string;
  to: string;
  /** Issued by something other than this control loop (herd migrate, another tool). */
  manual: boolean;
  policy?: string;
  reasonCode?: string;
  reason?: string;
  evaluationId?: string;
  startedAt: string;
  endedAt?: string;
  outcome?: Outcome;
  timings?: MigrationTimings;
  error?: WireError;
  /** How the outcome was learned: the migration's reply or events, or by asking the hosts after a restart. */
  learnedBy?: 'reply' | 'events' | 'reconcile';
}

type Line = { type: 'started'; record: MigrationRecord } | { type: 'ended'; migrationId: string; endedAt: string; outcome: Outcome; timings?: MigrationTimings; error?: WireError; learnedBy: MigrationRecord['learnedBy'] };

export class HistoryStore {
  private readonly records = new Map<string, MigrationRecord>();
  /** Lines that could not be read back (a torn last line after a crash). */
  readonly skippedLines: number = 0;

  constructor(private readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    if (!existsSync(file)) return;
    const content = readFileSync(file, 'utf8');
    // A torn last line (a crash mid-write) is ended, so the next record starts on a line of its own.
    if (content.length > 0 && !content.endsWith('\n')) appendFileSync(file, '\n');
    let skipped = 0;
    for (const text of content.split('\n')) {
      if (text.trim() === '') continue;
      const line = parseLine(text);
      if (line === undefined) skipped++;
      else if (line.type === 'started') this.records.set(line.record.migrationId, line.record);
      else this.applyEnd(line);
    }
    this.skippedLines = skipped;
  }

  private append(line: Line): void {
    const fd = openSync(this.file, 'a', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(line)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  private applyEnd(line: Extract<Line, { type: 'ended' }>): void {
    const r = this.records.get(line.migrationId);
    if (r === undefined || r.outcome !== undefined) return;
    r.endedAt = line.endedAt;
    r.outcome = line.outcome;
    if (line.timings !== undefined) r.timings = line.timings;
    if (line.error !== undefined) r.error = line.error;
    if (line.learnedBy !== undefined) r.learnedBy = line.learnedBy;
  }

  /** Records a migration before it is sent (or when a manual one is first seen). Idempotent per migration id. */
  started(record: MigrationRecord): void {
    if (this.records.has(record.migrationId)) return;
    this.append({ type: 'started', record });
    this.records.set(record.migrationId, { ...record });
  }

  /** Records how a migration ended; the first outcome wins. */
  ended(migrationId: string, outcome: Outcome, extra: { timings?: MigrationTimings; error?: WireError; learnedBy: NonNullable<MigrationRecord['learnedBy']>; at?: string }): MigrationRecord | undefined {
    const r = this.records.get(migrationId);
    if (r === undefined || r.outcome !== undefined) return undefined;
    const line: Extract<Line, { type: 'ended' }> = { type: 'ended', migrationId, endedAt: extra.at ?? new Date().toISOString(), outcome, learnedBy: extra.learnedBy };
    if (extra.timings !== undefined) line.timings = extra.timings;
    if (extra.error !== undefined) line.error = extra.error;
    this.append(line);
    this.applyEnd(line);
    return r;
  }

  get(migrationId: string): MigrationRecord | undefined {
    return this.records.get(migrationId);
  }

  /** Every record, oldest first. */
  all(): MigrationRecord[] {
    return [...this.records.values()].sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  /** Migrations without an outcome yet. */
  open(): MigrationRecord[] {
    return this.all().filter((r) => r.outcome === undefined);
  }
}

/** A history line, or undefined when it is not one (torn, or not of this format). */
function parseLine(text: string): Line | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const line = v as Partial<Line> & { record?: Partial<MigrationRecord> };
  const str = (x: unknown) => typeof x === 'string' && x.length > 0;
  if (line.type === 'started') {
    const r = line.record;
    return r !== undefined && str(r.migrationId) && str(r.herdId) && str(r.from) && str(r.to) && str(r.startedAt) && typeof r.manual === 'boolean' ? (line as Line) : undefined;
  }
  if (line.type === 'ended') {
    const l = line as Partial<Extract<Line, { type: 'ended' }>>;
    return str(l.migrationId) && str(l.endedAt) && OUTCOMES.includes(l.outcome as Outcome) ? (line as Line) : undefined;
  }
  return undefined;
}
