/**
 * Migration records on disk, so that a compute daemon restarted mid-migration (or a
 * machine that lost power) finishes or rolls back every migration it took part in.
 *
 * - An in-flight record (`<id>.<role>.json`) is written atomically: temp file, fsync,
 *   rename, fsync of the directory (without the last one a rename may not survive a crash),
 *   off the event loop (protocol/durable-file.ts).
 * - A finished migration leaves a tombstone (`<id>.<role>.done.json`: its outcome), written
 *   durably before the record is removed, so that a late or repeated command (a prepare
 *   after an abort, a restore after a fence) does nothing, and `herd migrate --status`
 *   can answer after the fact. Tombstones older than TOMBSTONE_DAYS are removed.
 * - Every file is validated when read; one that does not parse is moved to `quarantine/`
 *   and reported, never silently skipped.
 * - A fence marker (`<id>.fence`) is written by a source that could not reach this host's
 *   daemon (over SSH, see fence.ts): a restore not yet begun must then never begin.
 * - A transfer grant (`<id>.grant`, transfer-grants.ts) names the directories a prepared
 *   migration to this host may be sent into; it goes when its restore begins or it ends.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, existsSync } from 'node:fs';
import { replaceFileDurably, syncDirectory } from '../../protocol/durable-file.ts';
import { z } from 'zod';
import { FS_MODES, type MigrationResult, type TargetRestoreResult } from '../../protocol/messages.ts';
import type { WireError } from '../../protocol/errors.ts';
import { GRANT_SUFFIX, removeGrant, writeGrant } from './transfer-grants.ts';

export const SOURCE_PHASES = ['accepted', 'checkpointing', 'checkpointed', 'transferring', 'restoring', 'restored', 'rolling-back'] as const;
export const TARGET_PHASES = ['preparing', 'prepared', 'restoring', 'running'] as const;
export type SourcePhase = (typeof SOURCE_PHASES)[number];
export type TargetPhase = (typeof TARGET_PHASES)[number];

const TOMBSTONE_DAYS = 7;
const GRANT_GRACE_MINUTES = 10;

const base = {
  migrationId: z.string().min(1),
  herdId: z.string().min(1),
  container: z.string().min(1),
  sourceHost: z.string().min(1),
  targetHost: z.string().min(1),
  fsMode: z.enum(FS_MODES),
  checkpointId: z.string().min(1),
  startedAt: z.string(),
  updatedAt: z.string(),
};

const restartPolicySchema = z.object({ name: z.enum(['no', 'always', 'unless-stopped', 'on-failure']), maximumRetryCount: z.number().int().optional() });
const sourceRecordSchema = z.object({
  ...base,
  role: z.literal('source'),
  phase: z.enum(SOURCE_PHASES),
  sourceDockerId: z.string().min(1),
  /** Named volumes carried: removed from the source once the target runs the container. */
  volumes: z.array(z.string()).optional(),
  /** The source's restart policy, set to "no" while it is checkpointed and put back if it resumes here. */
  restartPolicy: restartPolicySchema.optional(),
  /** The migration published its `done` itself although removing the source failed: whoever finishes the removal does not publish it again. */
  doneAnnounced: z.literal(true).optional(),
});
const targetRecordSchema = z.object({
  ...base,
  role: z.literal('target'),
  phase: z.enum(TARGET_PHASES),
  targetDockerId: z.string().optional(),
  /** Where the checkpoint images are received: Docker's checkpoint dir, or outside it for a direct restore. */
  checkpointDir: z.string().optional(),
  /** direct: Docker's checkpoint dir only names checkpointDir (compute/runtime/direct-restore.ts). Absent: docker. */
  restoreWith: z.enum(['direct', 'docker']).optional(),
  upperDir: z.string().optional(),
  /** Named volumes the prepare created: removed if the migration is aborted. */
  volumes: z.array(z.string()).optional(),
  restoreMs: z.number().optional(),
  runningAt: z.string().optional(),
});
const recordSchema = z.discriminatedUnion('role', [sourceRecordSchema, targetRecordSchema]);

export type SourceRecord = z.infer<typeof sourceRecordSchema>;
export type TargetRecord = z.infer<typeof targetRecordSchema>;
export type MigrationRecord = SourceRecord | TargetRecord;

/** lost: the source's container was removed outside Herd while it was checkpointed (the target's copy never ran). */
export const OUTCOMES = ['done', 'rolled-back', 'restarted', 'lost', 'refused', 'aborted', 'committed'] as const;
export type Outcome = (typeof OUTCOMES)[number];

const tombstoneSchema = z.object({
  migrationId: z.string().min(1),
  role: z.enum(['source', 'target']),
  outcome: z.enum(OUTCOMES),
  container: z.string().optional(),
  herdId: z.string().optional(),
  sourceHost: z.string().optional(),
  targetHost: z.string().optional(),
  finishedAt: z.string(),
  detail: z.string().optional(),
  result: z.unknown().optional(),
  error: z.unknown().optional(),
});
export type Tombstone = Omit<z.infer<typeof tombstoneSchema>, 'result' | 'error'> & { result?: MigrationResult | TargetRestoreResult; error?: WireError };

export interface Quarantined {
  file: string;
  reason: string;
}

export class MigrationStore {
  readonly dir: string;
  private readonly quarantineDir: string;

  constructor(stateDir: string) {
    this.dir = `${stateDir}/migrations`;
    this.quarantineDir = `${stateDir}/migrations-quarantine`;
    mkdirSync(this.dir, { recursive: true });
  }

  private file(role: MigrationRecord['role'], migrationId: string): string {
    return `${this.dir}/${migrationId}.${role}.json`;
  }

  private tombstoneFile(role: MigrationRecord['role'], migrationId: string): string {
    return `${this.dir}/${migrationId}.${role}.done.json`;
  }

  fenceFile(migrationId: string): string {
    return `${this.dir}/${migrationId}.fence`;
  }

  /** Makes a rename or unlink in the records' directory durable (sync: for the rare quarantine, from a sync read). */
  private syncDirNow(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Temp files this process is writing now: any other `.tmp` was left by a crash mid-write. */
  private readonly writing = new Set<string>();

  private async writeDurably(final: string, value: unknown): Promise<void> {
    const tmp = `${final}.tmp`;
    this.writing.add(tmp);
    try {
      await replaceFileDurably(final, `${JSON.stringify(value, null, 2)}\n`, 0o600, tmp);
    } finally {
      this.writing.delete(tmp);
    }
  }

  async save(record: MigrationRecord): Promise<void> {
    record.updatedAt = new Date().toISOString();
    await this.writeDurably(this.file(record.role, record.migrationId), record);
  }

  private read<T>(file: string, schema: z.ZodType<T>): T | undefined {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return schema.parse(JSON.parse(text));
    } catch (err) {
      this.quarantine(file, (err as Error).message);
      return undefined;
    }
  }

  private readonly quarantined: Quarantined[] = [];

  private quarantine(file: string, reason: string): void {
    mkdirSync(this.quarantineDir, { recursive: true });
    const name = file.slice(file.lastIndexOf('/') + 1);
    renameSync(file, `${this.quarantineDir}/${name}.${Date.now()}`);
    this.syncDirNow();
    this.quarantined.push({ file: name, reason: reason.slice(0, 300) });
  }

  /** Records that failed validation since the last call (moved to migrations-quarantine/). */
  takeQuarantined(): Quarantined[] {
    return this.quarantined.splice(0);
  }

  get<R extends MigrationRecord['role']>(role: R, migrationId: string): Extract<MigrationRecord, { role: R }> | undefined {
    const record = this.read(this.file(role, migrationId), recordSchema);
    return record?.role === role ? (record as Extract<MigrationRecord, { role: R }>) : undefined;
  }

  tombstone(role: MigrationRecord['role'], migrationId: string): Tombstone | undefined {
    return this.read(this.tombstoneFile(role, migrationId), tombstoneSchema) as Tombstone | undefined;
  }

  /** In-flight records, valid ones only (the others are quarantined and reported by takeQuarantined). */
  list(): MigrationRecord[] {
    const records: MigrationRecord[] = [];
    for (const name of readdirSync(this.dir)) {
      const m = /^(.+)\.(source|target)\.json$/.exec(name);
      if (m === null) continue;
      const record = this.read(`${this.dir}/${name}`, recordSchema);
      if (record !== undefined) records.push(record);
    }
    return records;
  }

  /** Called with each migration this host ends (its tombstone and the record it ended, when there was one): metrics. */
  onFinish?: (tombstone: Tombstone, record: MigrationRecord | undefined) => void;

  /** Ends a migration on this host: the tombstone is durable before the record goes. */
  async finish(role: MigrationRecord['role'], migrationId: string, outcome: Omit<Tombstone, 'migrationId' | 'role' | 'finishedAt'>): Promise<void> {
    const record = this.onFinish === undefined ? undefined : this.get(role, migrationId);
    const tombstone: Tombstone = { migrationId, role, finishedAt: new Date().toISOString(), ...outcome };
    await this.writeDurably(this.tombstoneFile(role, migrationId), tombstone);
    rmSync(this.file(role, migrationId), { force: true });
    rmSync(this.fenceFile(migrationId), { force: true });
    removeGrant(this.dir, migrationId);
    await syncDirectory(this.dir);
    this.onFinish?.(tombstone, record);
  }

  fenced(migrationId: string): boolean {
    return existsSync(this.fenceFile(migrationId));
  }

  /** Lets the migration's source write into `dirs` with the transfer key (a target's, while it is prepared). */
  grantTransfers(migrationId: string, sourceHost: string, dirs: readonly string[]): void {
    writeGrant(this.dir, migrationId, sourceHost, dirs);
  }

  revokeTransfers(migrationId: string): void {
    removeGrant(this.dir, migrationId);
  }

  /**
   * Removes tombstones older than TOMBSTONE_DAYS, temp files left by a crash mid-write (any
   * this process is not writing), and grants older than GRANT_GRACE_MINUTES of no migration
   * prepared here (a migration's own goes with its restore or end; one an operator wrote for a
   * copy by hand, as the benchmark's bare row does, is left that long).
   */
  collectGarbage(nowMs = Date.now()): number {
    let removed = 0;
    for (const name of readdirSync(this.dir)) {
      const path = `${this.dir}/${name}`;
      const old = (days: number) => nowMs - statSync(path).mtimeMs > days * 86_400_000;
      const staleGrant = () => name.endsWith(GRANT_SUFFIX) && old(GRANT_GRACE_MINUTES / 1440) && this.get('target', name.slice(0, -GRANT_SUFFIX.length))?.phase !== 'prepared';
      if ((name.endsWith('.done.json') && old(TOMBSTONE_DAYS)) || (name.endsWith('.tmp') && !this.writing.has(path)) || staleGrant()) {
        rmSync(path, { force: true });
        removed++;
      }
    }
    return removed;
  }
}
