/**
 * The migration history: every migration the control daemon started or saw (manual ones
 * too), with its reason, outcome and timings. An append-only JSON-lines file in the
 * state directory: a `started` line is written (and fsynced) BEFORE the migration is
 * sent, an `ended` line when its outcome is known, so a restart finds every migration it
 * had started and can ask the hosts how it ended instead of starting it again. A torn
 * last line (a crash mid-write) is skipped when the file is read back.
 *
 * The records in memory change at once; the lines are written in the same order, off the
 * event loop (the control daemon's broker must not wait on an fsync).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { appendFileDurably, WriteQueue } from '../../protocol/durable-file.ts';
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
  private readonly writes = new WriteQueue();

  /** `onWriteError`: a line that could not be written (the record stays in memory). */
  constructor(private readonly file: string, private readonly onWriteError: (err: Error) => void = () => undefined) {
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

  /** A write failed: part of its line may be in the file, so the next line starts on a line of its own. */
  private torn = false;

  private append(line: Line): Promise<void> {
    const text = `${JSON.stringify(line)}\n`;
    const written = this.writes.run(async () => {
      const startOnNewLine = this.torn;
      this.torn = true;
      await appendFileDurably(this.file, startOnNewLine ? `\n${text}` : text);
      this.torn = false;
    });
    written.catch((err: unknown) => this.onWriteError(err instanceof Error ? err : new Error(String(err))));
    return written;
  }

  /** Resolves when every line recorded so far is on disk (or failed to be written). */
  flush(): Promise<void> {
    return this.writes.idle();
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

  /**
   * Records a migration before it is sent (or when a manual one is first seen). Idempotent
   * per migration id. Resolves when its line is durable: send the migration only then.
   */
  started(record: MigrationRecord): Promise<void> {
    if (this.records.has(record.migrationId)) return this.flush();
    this.records.set(record.migrationId, { ...record });
    return this.append({ type: 'started', record }).catch((err: unknown) => {
      // Not durable: not recorded (the caller does not send it).
      if (this.records.get(record.migrationId)?.outcome === undefined) this.records.delete(record.migrationId);
      throw err;
    });
  }

  /** Records how a migration ended; the first outcome wins. */
  ended(migrationId: string, outcome: Outcome, extra: { timings?: MigrationTimings; error?: WireError; learnedBy: NonNullable<MigrationRecord['learnedBy']>; at?: string }): MigrationRecord | undefined {
    const r = this.records.get(migrationId);
    if (r === undefined || r.outcome !== undefined) return undefined;
    const line: Extract<Line, { type: 'ended' }> = { type: 'ended', migrationId, endedAt: extra.at ?? new Date().toISOString(), outcome, learnedBy: extra.learnedBy };
    if (extra.timings !== undefined) line.timings = extra.timings;
    if (extra.error !== undefined) line.error = extra.error;
    this.applyEnd(line);
    // Not awaited: an outcome not yet on disk at a crash is asked of the hosts after the restart.
    this.append(line).catch(() => undefined);
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
