/** Migration tracking in the daemon: which copy owns a container's series, and when a move is marked. */
import { hostname } from 'node:os';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../protocol/log.ts';
import type { ContainerMetrics } from '../protocol/messages.ts';
import { connectBroker } from '../protocol/mqtt.ts';
import { defaultMonitorClientId, monitorConfigSchema } from './config.ts';
import type { TrackedContainer } from './container-metrics.ts';
import { buildMonitorDaemon } from './daemon.ts';

// No broker in these tests: connecting fails (the daemon buffers and retries), and the client id asked for is recorded.
vi.mock('../protocol/mqtt.ts', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../protocol/mqtt.ts')>()),
  connectBroker: vi.fn(async () => {
    throw new Error('no broker in this test');
  }),
}));

/** A logger that keeps its lines (pino's JSON), for asserting what was warned and how often. */
function recordingLogger() {
  const lines: Array<Record<string, unknown> & { level: number; msg: string }> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, warnings: () => lines.filter((l) => l.level === 40) };
}

const waitFor = async (what: () => boolean) => {
  for (let i = 0; i < 150 && !what(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(what()).toBe(true);
};

const configOf = (hosts: string[], extra: Record<string, unknown> = {}) =>
  monitorConfigSchema.parse({ broker: { url: 'mqtt://127.0.0.1:9' }, metrics: { enabled: false }, datasetDir: null, containerIntervalSeconds: 0.1, hostIntervalSeconds: 3600, blkioAccounting: false, hosts: hosts.map((id) => ({ id, pmproxyUrl: `http://pcp-${id}` })), ...extra });

/** A pmproxy that knows no metric values: enough for samples with state and no rates. */
const emptyPmproxy: typeof fetch = async (input) => {
  const url = new URL(String(input));
  const body = url.pathname === '/pmapi/context' ? { context: 1 } : url.pathname === '/pmapi/fetch' ? { context: 1, timestamp: Date.now() / 1000, values: [] } : { instances: [] };
  return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
};

const copy = (dockerId: string, state: string): TrackedContainer => ({ herdId: 'web-1', name: 'web', dockerId, state });

/** A daemon over listings the test changes (`placement`, per host, in round order), its container samples collected. */
function trackingDaemon(hosts: string[], placement: Record<string, TrackedContainer[]>) {
  const samples: ContainerMetrics[] = [];
  const daemon = buildMonitorDaemon(configOf(hosts), {
    log: silentLogger,
    fetchImpl: emptyPmproxy,
    listerFor: (h) => ({ list: async () => placement[h.id] ?? [] }),
    onSample: (kind, s) => {
      if (kind === 'container') samples.push(s as ContainerMetrics);
    },
  });
  return { daemon, samples };
}

describe('migration tracking', () => {
  it('marks a move once, and never a stopped copy seen first (start-up) as one', async () => {
    const placement: Record<string, TrackedContainer[]> = { h1: [copy('a'.repeat(64), 'running')], h2: [copy('b'.repeat(64), 'created')] };
    const { daemon, samples } = trackingDaemon(['h2', 'h1'], placement);
    await daemon.start();
    await waitFor(() => samples.filter((s) => s.hostId === 'h1').length >= 3);
    // h2's round runs first: its prepared copy may show once, but h1's running copy is no move.
    expect(samples.filter((s) => s.migration !== undefined)).toEqual([]);
    const before = samples.length;

    // The move: the source is checkpointed (exited), the target runs.
    placement.h1 = [copy('a'.repeat(64), 'exited')];
    placement.h2 = [{ ...copy('b'.repeat(64), 'running'), migrationId: 'm-1' }];
    await waitFor(() => samples.slice(before).filter((s) => s.hostId === 'h2').length >= 3);
    await daemon.close();
    const after = samples.slice(before);
    const marked = samples.filter((s) => s.migration !== undefined);
    expect(marked).toHaveLength(1);
    expect(marked[0]).toMatchObject({ hostId: 'h2', migration: { fromHost: 'h1', toHost: 'h2', migrationId: 'm-1' } });
    // After the move nothing more from h1 (the stopped source is not a second series).
    const firstOnH2 = after.findIndex((s) => s.hostId === 'h2');
    expect(after.slice(firstOnH2).filter((s) => s.hostId === 'h1')).toEqual([]);
  });
});

describe('migration tracking while both copies run', () => {
  it('keeps the series on the source until its copy stops, then marks the move once', async () => {
    const placement: Record<string, TrackedContainer[]> = { h1: [copy('a'.repeat(64), 'running')], h2: [] };
    const { daemon, samples } = trackingDaemon(['h1', 'h2'], placement);
    await daemon.start();
    await waitFor(() => samples.length >= 2);
    // The target runs; Docker still reports the checkpointed source as running for several rounds.
    placement.h2 = [copy('b'.repeat(64), 'running')];
    const both = samples.length;
    await waitFor(() => samples.length >= both + 6);
    expect(samples.slice(both).every((s) => s.hostId === 'h1')).toBe(true); // one series: the owner's copy
    placement.h1 = [copy('a'.repeat(64), 'exited')];
    const moved = samples.length;
    await waitFor(() => samples.slice(moved).filter((s) => s.hostId === 'h2').length >= 4);
    await daemon.close();
    expect(samples.filter((s) => s.migration !== undefined).map((s) => `${s.migration?.fromHost}->${s.migration?.toHost}`)).toEqual(['h1->h2']);
    const firstOnH2 = samples.findIndex((s) => s.hostId === 'h2');
    expect(samples[firstOnH2]?.migration).toBeDefined();
    expect(samples.slice(firstOnH2).filter((s) => s.hostId === 'h1')).toEqual([]);
  });
});

describe('containers with an invalid io.herd.id', () => {
  it('are left out of the host\'s samples, named once in a warning', async () => {
    const { log, warnings } = recordingLogger();
    const samples: ContainerMetrics[] = [];
    const listed: TrackedContainer[] = [
      { herdId: 'good-1', name: 'good', dockerId: 'a'.repeat(64), state: 'exited' },
      { herdId: 'bad id/../x', name: 'bad', dockerId: 'b'.repeat(64), state: 'exited' },
    ];
    const daemon = buildMonitorDaemon(configOf(['h1']), { log, fetchImpl: emptyPmproxy, listerFor: () => ({ list: async () => listed }), onSample: (k, s) => k === 'container' && samples.push(s as ContainerMetrics) });
    await daemon.start();
    await waitFor(() => samples.length >= 5);
    await daemon.close();
    expect(new Set(samples.map((s) => s.herdId))).toEqual(new Set(['good-1']));
    const named = warnings().filter((w) => w.dockerId === 'b'.repeat(64));
    expect(named).toHaveLength(1);
    expect(named[0]).toMatchObject({ hostId: 'h1', container: 'bad', value: 'bad id/../x' });
    expect(daemon.status().hosts[0]?.containers.count).toBe(1);
  });
});

describe('a host whose pmproxy fails', () => {
  it('still publishes its container samples, and warns once', async () => {
    const { log, warnings } = recordingLogger();
    const samples: ContainerMetrics[] = [];
    const downPmproxy: typeof fetch = async () => {
      throw new TypeError('fetch failed: connect ECONNREFUSED');
    };
    const daemon = buildMonitorDaemon(configOf(['h1']), { log, fetchImpl: downPmproxy, listerFor: () => ({ list: async () => [copy('a'.repeat(64), 'running')] }), onSample: (k, s) => k === 'container' && samples.push(s as ContainerMetrics) });
    await daemon.start();
    await waitFor(() => samples.length >= 5);
    await daemon.close();
    expect(samples[0]).toMatchObject({ herdId: 'web-1', hostId: 'h1', state: 'running' });
    expect(daemon.status().hosts[0]?.containers).toMatchObject({ stale: false, pcp: expect.stringMatching(/^PCP_UNAVAILABLE/) });
    expect(warnings().filter((w) => /container samples go on/.test(w.msg))).toHaveLength(1);
  });
});

describe('MQTT client id', () => {
  it('is herd-monitor-<hostname> (stable across restarts, one per host), or the configured one', async () => {
    const connect = vi.mocked(connectBroker);
    for (const [extra, expected] of [[{}, defaultMonitorClientId()], [{ clientId: 'herd-monitor-lab' }, 'herd-monitor-lab']] as const) {
      connect.mockClear();
      const daemon = buildMonitorDaemon(configOf(['h1'], extra), { log: silentLogger, fetchImpl: emptyPmproxy, listerFor: () => ({ list: async () => [] }) });
      await daemon.start();
      await waitFor(() => connect.mock.calls.length > 0);
      await daemon.close();
      expect(connect.mock.calls[0]?.[0].clientId).toBe(expected);
    }
    expect(defaultMonitorClientId()).toBe(`herd-monitor-${hostname().replace(/[^A-Za-z0-9_.-]/g, '-')}`.slice(0, 64));
  });
});
