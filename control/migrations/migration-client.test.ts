import { afterEach, describe, expect, it, vi } from 'vitest';
import { HerdError } from '../../protocol/errors.ts';
import type { ContainerSummary, MigrationEvent, MigrationResult, MigrationStatus } from '../../protocol/messages.ts';
import { describeEvent, formatTimings, localClock, migrateOnce, outcomeOf, type MigrationOutcome, type MigrationSession } from './migration-client.ts';

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

describe('migrateOnce while the broker is away', () => {
  it('keeps asking the source, says once that the broker is unreachable and when it is back, and ends with the outcome', async () => {
    vi.useFakeTimers();
    try {
      let polls = 0;
      const result: MigrationResult = { migrationId: 'm-away', herdId: 'c0ffee000001', container: 'busy', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff', timings: { checkpointMs: 1, transferMs: 2, restoreMs: 3, totalMs: 9, downtimeMs: 6, checkpointBytes: 10, filesystemBytes: 20 } };
      const client = { on: () => undefined, off: () => undefined, subscribeAsync: async () => undefined, unsubscribeAsync: async () => undefined };
      const rpc = {
        request: (_host: string, type: string) => {
          if (type === 'migration.start') return new Promise(() => undefined); // its reply is lost with the broker
          polls++;
          if (polls <= 3) return Promise.reject(new HerdError('BROKER_UNAVAILABLE', 'the MQTT broker did not take "migration.status" for host h1 within 5000 ms'));
          return Promise.resolve({ migrationId: 'm-away', hostId: 'h1', role: 'source', state: 'done', result });
        },
      };
      const view = { findContainer: () => copy({ hostId: 'h1', state: 'running' }), requireOnline: () => undefined, host: () => ({ hostId: 'h1', state: 'online', since: 'x' }) };
      const lines: string[] = [];
      const done = migrateOnce({ client: client as never, rpc: rpc as never, view: view as never }, 'busy', 'h2', 'diff', () => undefined, (l) => lines.push(l), { migrationId: 'm-away' });
      await vi.advanceTimersByTimeAsync(40_500);
      await expect(done).resolves.toEqual(result);
      expect(polls).toBe(4);
      expect(lines.filter((l) => l.includes('broker is unreachable'))).toHaveLength(1);
      expect(lines.join('\n')).toMatch(/migration m-away goes on on its hosts; asking h1 again every 10 s/);
      expect(lines.at(-1)).toBe('broker reachable again: still following migration m-away');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('outcomeOf and formatTimings', () => {
  it('a done tombstone without its result: what is known, no made-up timings, fs mode or herd id', () => {
    const status: MigrationStatus = { migrationId: 'm-9', hostId: 'h1', role: 'source', state: 'done', container: 'web', targetHost: 'h2' };
    const bare = outcomeOf(status);
    expect(bare).toEqual({ migrationId: 'm-9', container: 'web', sourceHost: 'h1', targetHost: 'h2' });
    expect(outcomeOf({ ...status, container: undefined, targetHost: undefined }, { herdId: 'c0ffee000001', container: 'web', targetHost: 'h2' })).toEqual({ migrationId: 'm-9', herdId: 'c0ffee000001', container: 'web', sourceHost: 'h1', targetHost: 'h2' });
    const text = formatTimings(bare as MigrationOutcome);
    expect(text).toContain('migrated web h1 -> h2 (m-9)');
    expect(text).toContain('timings unknown');
    expect(text).not.toMatch(/fs diff|0\.0 ms/);
  });

  it('each failed ending gives the error the live migration gave: rolled back, restarted, the source lost, refused', () => {
    const base: MigrationStatus = { migrationId: 'm-9', hostId: 'h1', role: 'source', state: 'done', detail: 'why' };
    const cases: [MigrationStatus['state'], string, RegExp][] = [
      ['rolled-back', 'ROLLED_BACK', /was rolled back: why/],
      ['restarted', 'RESTORE_FAILED', /restarted \(memory state lost\): why/],
      ['lost', 'CONFLICT', /source container was removed outside Herd meanwhile: why/],
      ['refused', 'CONFLICT', /refused before anything was frozen: why/],
    ];
    for (const [state, code, message] of cases) {
      const err = outcomeOf({ ...base, state });
      expect(err, state).toBeInstanceOf(HerdError);
      expect((err as HerdError).code, state).toBe(code);
      expect((err as HerdError).message, state).toMatch(message);
    }
    // A target's record is no outcome of the migration.
    expect(outcomeOf({ ...base, role: 'target', state: 'aborted' })).toBeUndefined();
  });

  it('a result prints its timings', () => {
    const r: MigrationResult = { migrationId: 'm-1', herdId: 'c0ffee000001', container: 'web', sourceHost: 'h1', targetHost: 'h2', fsMode: 'full', timings: { checkpointMs: 1, transferMs: 2, restoreMs: 3, totalMs: 9, downtimeMs: 6, checkpointBytes: 0, filesystemBytes: 0 } };
    expect(formatTimings(r)).toMatch(/^migrated web h1 -> h2 \(fs full, m-1\)\n {2}checkpoint 1\.0 ms/);
  });
});

describe('describeEvent', () => {
  const tz = process.env.TZ;
  afterEach(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it('shows the local time (as the dashboard does), with milliseconds', () => {
    process.env.TZ = 'Asia/Kolkata'; // UTC+05:30, no daylight saving
    const e = { v: 1, migrationId: 'm-1', herdId: 'c0ffee000001', container: 'web', sourceHost: 'h1', targetHost: 'h2', at: '2026-11-28T06:00:00.123Z', phase: 'checkpoint', status: 'started' } as MigrationEvent;
    expect(describeEvent(e)).toMatch(/^11:30:00\.123 {2}checkpoint +started$/);
    expect(localClock('2026-11-28T23:59:59.007Z')).toBe('05:29:59.007');
  });
});
