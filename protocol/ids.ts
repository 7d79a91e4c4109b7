/** Generated ids: short, URL- and topic-safe. */
import { randomBytes } from 'node:crypto';

/** A new stable Herd id for a container (12 hex characters). */
export function newHerdId(): string {
  return randomBytes(6).toString('hex');
}

/** A new migration id: sortable by time, then random (e.g. m-20261122T225301-a1b2c3). */
export function newMigrationId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `m-${stamp}-${randomBytes(3).toString('hex')}`;
}
