/**
 * In-flight migrations recorded on disk (one JSON file each, written atomically with
 * fsync), so that a compute daemon restarted mid-migration can finish or roll back.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import type { FsMode } from '../../protocol/messages.ts';

export type SourcePhase = 'accepted' | 'checkpointing' | 'checkpointed' | 'transferring' | 'restoring' | 'restored' | 'rolling-back';
export type TargetPhase = 'preparing' | 'prepared' | 'restoring';

interface RecordBase {
  migrationId: string;
  herdId: string;
  container: string;
  sourceHost: string;
  targetHost: string;
  fsMode: FsMode;
  checkpointId: string;
  startedAt: string;
  updatedAt: string;
}

export interface SourceRecord extends RecordBase {
  role: 'source';
  phase: SourcePhase;
  sourceDockerId: string;
}

export interface TargetRecord extends RecordBase {
  role: 'target';
  phase: TargetPhase;
  targetDockerId?: string;
  checkpointDir?: string;
}

export type MigrationRecord = SourceRecord | TargetRecord;

export class MigrationStore {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = `${stateDir}/migrations`;
    mkdirSync(this.dir, { recursive: true });
  }

  private file(role: MigrationRecord['role'], migrationId: string): string {
    return `${this.dir}/${migrationId}.${role}.json`;
  }

  async save(record: MigrationRecord): Promise<void> {
    record.updatedAt = new Date().toISOString();
    const final = this.file(record.role, record.migrationId);
    const tmp = `${final}.tmp`;
    const handle = await open(tmp, 'w');
    try {
      await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, final);
  }

  get<R extends MigrationRecord['role']>(role: R, migrationId: string): Extract<MigrationRecord, { role: R }> | undefined {
    try {
      return JSON.parse(readFileSync(this.file(role, migrationId), 'utf8')) as Extract<MigrationRecord, { role: R }>;
    } catch {
      return undefined;
    }
  }

  list(): MigrationRecord[] {
    const records: MigrationRecord[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue;
      try {
        records.push(JSON.parse(readFileSync(`${this.dir}/${name}`, 'utf8')) as MigrationRecord);
      } catch {
        // a torn temp file cannot end in .json; anything unreadable is skipped
      }
    }
    return records;
  }

  remove(role: MigrationRecord['role'], migrationId: string): void {
    rmSync(this.file(role, migrationId), { force: true });
  }
}
