import { describe, expect, it } from 'vitest';
import type { ContainerSummary } from '../../protocol/messages.ts';
import { migrateOnce, type MigrationSession } from './migration-client.ts';

/** A session whose view finds `found` and whose every other use fails the test. */
function session(found: ContainerSummary): MigrationSession {
  const unused = new Proxy({}, { get: (_t, key) => { throw new Error(`unexpected use of ${String(key)}`); } });
  return { view: { findContainer: () => found, requireOnline: () => undefined } as never, rpc: unused as never, client: unused as never };
}

const copy = (over: Partial<ContainerSummary>): ContainerSummary => ({ herdId: 'c0ffee000001', name: 'busy', hostId: 'h2', dockerId: 'd2', image: 'herd/busybox', state: 'created', ...over });

describe('migrateOnce', () => {
  it('refuses, without asking any host, a container no copy of which runs while one takes part in a migration (frozen source, prepared target)', async () => {
    await expect(migrateOnce(session(copy({ migrationId: 'm-1' })), 'busy', 'h2', 'diff', () => undefined)).rejects.toMatchObject({ code: 'ALREADY_MIGRATING', message: expect.stringContaining('migration m-1 in flight') });
  });
});
