import { describe, expect, it, vi } from 'vitest';
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

describe('migrateOnce when the start is lost', () => {
  /** A session whose source (h1) answers every status with `state` and restarts (new `since`) after the start was sent. */
  function lossy(state: 'unknown' | 'refused', restart: boolean): MigrationSession {
    let since = '2026-11-27T00:00:00.000Z';
    const client = { on: () => undefined, off: () => undefined, subscribeAsync: async () => undefined, unsubscribeAsync: async () => undefined };
    const rpc = {
      request: (_host: string, type: string, args: { migrationId: string }) => {
        if (type === 'migration.start') {
          if (restart) since = '2026-11-27T00:00:05.000Z';
          return new Promise(() => undefined); // its reply never comes
        }
        return Promise.resolve({ migrationId: args.migrationId, hostId: 'h1', role: state === 'unknown' ? undefined : 'source', state, ...(state === 'refused' ? { error: { code: 'INSUFFICIENT_DISK', message: 'h2 is full', retryable: false } } : {}) });
      },
    };
    const view = { findContainer: () => copy({ hostId: 'h1', state: 'running' }), requireOnline: () => undefined, host: () => ({ hostId: 'h1', state: 'online', since }) };
    return { client: client as never, rpc: rpc as never, view: view as never };
  }

  it('a source that restarted since and does not know the migration: it never started (ROLLED_BACK, nothing frozen)', async () => {
    vi.useFakeTimers();
    try {
      const done = migrateOnce(lossy('unknown', true), 'busy', 'h2', 'diff', () => undefined, undefined, { migrationId: 'm-lost' });
      const checked = expect(done).rejects.toMatchObject({ code: 'ROLLED_BACK', message: expect.stringMatching(/m-lost never started: the compute daemon of h1 restarted .* nothing was frozen/) });
      await vi.advanceTimersByTimeAsync(10_500);
      await checked;
    } finally {
      vi.useRealTimers();
    }
  });

  it('a source that did not restart and answers unknown is asked again (the start may still be on its way)', async () => {
    vi.useFakeTimers();
    try {
      let settled = false;
      void migrateOnce(lossy('unknown', false), 'busy', 'h2', 'diff', () => undefined, undefined, { migrationId: 'm-late' }).catch(() => undefined).finally(() => (settled = true));
      await vi.advanceTimersByTimeAsync(35_000);
      expect(settled).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a migration the source refused ends with the refusal\'s own error', async () => {
    vi.useFakeTimers();
    try {
      const done = migrateOnce(lossy('refused', false), 'busy', 'h2', 'diff', () => undefined, undefined, { migrationId: 'm-ref' });
      const checked = expect(done).rejects.toMatchObject({ code: 'INSUFFICIENT_DISK', message: expect.stringContaining('refused before anything was frozen: h2 is full') });
      await vi.advanceTimersByTimeAsync(10_500);
      await checked;
    } finally {
      vi.useRealTimers();
    }
  });
});
