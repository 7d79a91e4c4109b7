/** The lab's record of what `up` did, so that `down` undoes exactly that. */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LAB_STATE_FILE = '/var/lib/herd-lab/lab.json';

export interface LabState {
  hosts: number;
  createdAt: string;
  /** Whether / had shared propagation before `up` (if not, `down` makes it private again). */
  rootWasShared: boolean;
  /** Whether `up` started pmcd/pmproxy (then `down` stops them). */
  startedPcp: boolean;
  brokerUrl: string;
  /** Operations per second of each host's disk (`lab up --disk-iops`); no limit when absent. */
  diskIops?: number;
  /** The lab operator's broker credentials (herd auth init), used by the CLI for the lab's broker. */
  credentialsFile?: string;
  /** The CA of the lab broker's TLS certificate. */
  caFile?: string;
}

export function readLabState(file = LAB_STATE_FILE): LabState | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

export function writeLabState(state: LabState, file = LAB_STATE_FILE): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** The repository root (where bin/herd lives). */
export function herdRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '../..');
}
