/** Migration tracking in the daemon: which copy owns a container's series, and when a move is marked. */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../protocol/log.ts';
import type { ContainerMetrics } from '../protocol/messages.ts';
import { monitorConfigSchema } from './config.ts';
import type { TrackedContainer } from './container-metrics.ts';
import { buildMonitorDaemon } from './daemon.ts';

/** A pmproxy that knows no metric values: enough for samples with state and no rates. */
const emptyPmproxy: typeof fetch = async (input) => {
  const url = new URL(String(input));
  const body = url.pathname === '/pmapi/context' ? { context: 1 } : url.pathname === '/pmapi/fetch' ? { context: 1, timestamp: Date.now() / 1000, values: [] } : { instances: [] };
  return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
};

const copy = (dockerId: string, state: string): TrackedContainer => ({ herdId: 'web-1', name: 'web', dockerId, state });

describe('migration tracking', () => {
  it('marks a move once, and never a stopped copy seen first (start-up) as one', async () => {
    const placement: Record<string, TrackedContainer[]> = { h1: [copy('a'.repeat(64), 'running')], h2: [copy('b'.repeat(64), 'created')] };
    const samples: ContainerMetrics[] = [];
    const config = monitorConfigSchema.parse({
      broker: { url: 'mqtt://127.0.0.1:9' },
      metrics: { enabled: false },
      datasetDir: null,
      containerIntervalSeconds: 0.1,
      hosts: [{ id: 'h2', pmproxyUrl: 'http://pcp-h2' }, { id: 'h1', pmproxyUrl: 'http://pcp-h1' }],
    });
    const daemon = buildMonitorDaemon(config, {
      log: silentLogger,
      fetchImpl: emptyPmproxy,
      listerFor: (h) => ({ list: async () => placement[h.id] ?? [] }),
      onSample: (kind, s) => {
        if (kind === 'container') samples.push(s as ContainerMetrics);
      },
    });
    await daemon.start();
    const waitFor = async (what: () => boolean) => {
      for (let i = 0; i < 100 && !what(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(what()).toBe(true);
    };
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
