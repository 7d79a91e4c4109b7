/**
 * One container, one thing at a time: a migration (running now, or recorded on this host and
 * not yet settled, as its source or its target) or an operator command (stop, remove,
 * checkpoint, restore). A migration accepted beside another one's unsettled record, or beside
 * a stop, could be undone by the other's rollback: the container would run twice, or again
 * after the operator stopped it. Check and claim in the same tick.
 */
import { HerdError } from '../../protocol/errors.ts';
import type { MigrationStore } from './migration-store.ts';

export interface ContainerClaims {
  hostId: string;
  store: MigrationStore;
  /** Herd id → migration id of the migrations this host is the source of, running now. */
  inFlight: Map<string, string>;
  /** Herd id → the operator command running on it now ("stopped", "removed", ...). */
  operatorCommands: Map<string, string>;
}

/** Herd id → the migration that holds the container here (running, or recorded and not settled). */
export function migrationsHolding(claims: ContainerClaims): Map<string, string> {
  const held = new Map(claims.store.list().map((r) => [r.herdId, r.migrationId]));
  for (const [herdId, migrationId] of claims.inFlight) held.set(herdId, migrationId);
  return held;
}

/** Throws when a migration or an operator command holds the container on this host. */
export function assertUnclaimed(claims: ContainerClaims, herdId: string, name: string): void {
  const migrationId = migrationsHolding(claims).get(herdId);
  if (migrationId !== undefined) throw new HerdError('ALREADY_MIGRATING', `container "${name}" has migration ${migrationId} in flight on ${claims.hostId}; wait for it (herd migrate --status ${migrationId})`);
  const command = claims.operatorCommands.get(herdId);
  if (command !== undefined) throw new HerdError('CONFLICT', `container "${name}" is being ${command} on ${claims.hostId}; try again once that ended`);
}

/** Claims the container for an operator command while `work` runs; refused while anything else holds it. */
export async function withOperatorClaim<T>(claims: ContainerClaims, herdId: string, name: string, command: string, work: () => Promise<T>): Promise<T> {
  assertUnclaimed(claims, herdId, name);
  claims.operatorCommands.set(herdId, command);
  try {
    return await work();
  } finally {
    claims.operatorCommands.delete(herdId);
  }
}
