import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, type HostStatus, type MigrationEvent } from '../../protocol/messages.ts';
import { LiveState, SERIES_POINTS, SILENT_MIGRATION_MS, type DashboardUpdate } from './live-state.ts';

const base = Date.now() - 300_000;
const at = (s: number) => new Date(base + s * 1000).toISOString();
const event = (phase: MigrationEvent['phase'], status: MigrationEvent['status'], extra: Partial<MigrationEvent> = {}): MigrationEvent => ({
  v: PROTOCOL_VERSION, migrationId: 'm1', herdId: 'c1', container: 'web', sourceHost: 'h1', targetHost: 'h2', phase, status, at: at(1), ...extra,
});

describe('LiveState', () => {
  it('keeps a bounded series per host and tells listeners each sample', () => {
    const live = new LiveState();
    const seen: DashboardUpdate[] = [];
    live.subscribe((u) => seen.push(u));
    for (let i = 0; i < SERIES_POINTS + 5; i++) live.host({ v: PROTOCOL_VERSION, hostId: 'h1', at: at(i), stale: false, cpuUtil: 0.5, diskOpsPerSec: i });
    const s = live.hostSeries.get('h1');
    expect(s?.t).toHaveLength(SERIES_POINTS);
    expect(s?.disk.at(-1)).toBe(SERIES_POINTS + 4);
    expect(seen).toHaveLength(SERIES_POINTS + 5);
    expect(seen[0]).toMatchObject({ type: 'host-metrics', hostId: 'h1', cpu: 0.5, disk: 0 });
  });

  it('tells listeners whether each host sample is stale', () => {
    const live = new LiveState();
    const seen: DashboardUpdate[] = [];
    live.subscribe((u) => seen.push(u));
    live.host({ v: PROTOCOL_VERSION, hostId: 'h1', at: at(0), stale: false, cpuUtil: 0.5 });
    live.host({ v: PROTOCOL_VERSION, hostId: 'h1', at: at(1), stale: true, staleReason: 'pmproxy did not answer' } as never);
    expect(seen.map((u) => (u as { stale?: boolean }).stale)).toEqual([false, true]);
    expect(live.latestHost.get('h1')?.stale).toBe(true);
  });

  it('drops the series of a host that left the placement (an offline one keeps them)', () => {
    const live = new LiveState();
    for (const hostId of ['h1', 'h2', 'h3']) live.host({ v: PROTOCOL_VERSION, hostId, at: at(0), stale: false, cpuUtil: 0.5 });
    const status = (hostId: string, state: 'online' | 'offline'): HostStatus => ({ v: PROTOCOL_VERSION, hostId, state, since: at(0) });
    live.placement([status('h1', 'online'), status('h3', 'offline')], []);
    expect([...live.hostSeries.keys()]).toEqual(['h1', 'h3']);
    expect([...live.latestHost.keys()]).toEqual(['h1', 'h3']);
  });

  it('sums container read and write ops, null when the monitor had neither', () => {
    const live = new LiveState();
    live.containers({ v: PROTOCOL_VERSION, hostId: 'h1', at: at(0), samples: [
      { v: PROTOCOL_VERSION, herdId: 'a', hostId: 'h1', name: 'a', dockerId: 'x', at: at(0), state: 'running', cpuCores: 0.25, diskReadOpsPerSec: 3, diskWriteOpsPerSec: 4 },
      { v: PROTOCOL_VERSION, herdId: 'b', hostId: 'h1', name: 'b', dockerId: 'y', at: at(0), state: 'running' },
    ] });
    expect(live.latestContainer.get('a')).toMatchObject({ cpu: 0.25, disk: 7 });
    expect(live.latestContainer.get('b')).toMatchObject({ cpu: null, disk: null });
    // A container that left the placement loses its series.
    live.placement([], [{ herdId: 'a', name: 'a', hostId: 'h1', dockerId: 'x', image: 'i', state: 'running' }]);
    expect([...live.containerSeries.keys()]).toEqual(['a']);
  });

  it('follows a migration phase by phase to its downtime', () => {
    const live = new LiveState();
    live.migration(event('accepted', 'started'));
    live.migration(event('checkpoint', 'finished', { durationMs: 400 }));
    live.migration(event('transfer', 'progress', { bytes: 10, totalBytes: 40 }));
    expect(live.migrationList()[0]).toMatchObject({ state: 'running', phase: 'transfer', bytes: 10, totalBytes: 40, phases: { checkpoint: 400 } });
    live.migration(event('transfer', 'finished', { durationMs: 900, bytes: 40 }));
    live.migration(event('done', 'finished', { timings: { checkpointMs: 400, transferMs: 900, restoreMs: 700, totalMs: 2500, downtimeMs: 2000, checkpointBytes: 30, filesystemBytes: 10 } }));
    expect(live.migrationList()[0]).toMatchObject({ state: 'done', downtimeMs: 2000, totalMs: 2500, bytes: 40, phases: { checkpoint: 400, transfer: 900 } });
  });

  it('shows a running or in-doubt migration that fell silent as unknown, with how to ask', () => {
    let now = Date.parse(at(1));
    const live = new LiveState(() => now);
    live.migration(event('transfer', 'started'));
    live.migration(event('failed', 'failed', { migrationId: 'm2', error: { code: 'IN_DOUBT', message: 'x', retryable: false } }));
    expect(live.migrationList().map((m) => m.state).sort()).toEqual(['in-doubt', 'running']);
    now += SILENT_MIGRATION_MS + 1;
    expect(live.migrationList()).toEqual([expect.objectContaining({ state: 'unknown', error: expect.stringContaining('herd migrate --status m') }), expect.objectContaining({ state: 'unknown' })]);
  });

  it('shows a migration left IN_DOUBT as in doubt, listed with the running ones, until its source announces the end', () => {
    const live = new LiveState();
    live.migration(event('accepted', 'started', { migrationId: 'old', at: at(0) }));
    live.migration(event('done', 'finished', { migrationId: 'old', at: at(0) }));
    live.migration(event('restore', 'started', { at: at(1) }));
    live.migration(event('failed', 'failed', { at: at(2), error: { code: 'IN_DOUBT', message: 'the target cannot be asked', retryable: false } }));
    expect(live.migrationList().map((m) => [m.migrationId, m.state])).toEqual([['m1', 'in-doubt'], ['old', 'done']]);
    live.migration(event('resolve', 'finished', { at: at(3) }));
    expect(live.migrationList()[0]).toMatchObject({ state: 'in-doubt', phase: 'resolve' });
    live.migration(event('done', 'finished', { at: at(4) }));
    expect(live.migrationList()[0]).toMatchObject({ migrationId: 'm1', state: 'done' });
  });

  it('lists running migrations first and forgets the oldest finished ones', () => {
    const live = new LiveState();
    for (let i = 0; i < 60; i++) {
      live.migration(event('accepted', 'started', { migrationId: `m${i}`, at: at(i) }));
      live.migration(event('failed', 'failed', { migrationId: `m${i}`, at: at(i), error: { code: 'ROLLED_BACK', message: 'x', retryable: true } }));
    }
    live.migration(event('accepted', 'started', { migrationId: 'live', at: at(0) }));
    const list = live.migrationList();
    expect(list[0]?.migrationId).toBe('live');
    expect(list).toHaveLength(51);
    expect(list[1]).toMatchObject({ migrationId: 'm59', state: 'failed', error: 'ROLLED_BACK: x' });
  });
});
