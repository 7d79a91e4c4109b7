import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, type ContainerMetrics, type HostMetrics } from '../protocol/messages.ts';
import { topics } from '../protocol/topics.ts';
import { emptyLatest, takeMessage } from '../protocol/metrics-view.ts';
import { renderTop } from './metrics-top.ts';

const at = '2026-11-23T03:00:00.000Z';
const host = (hostId: string, extra: Partial<HostMetrics> = {}): HostMetrics => ({ v: PROTOCOL_VERSION, hostId, at, stale: false, cpuUtil: 0.5, load1: 1.25, memoryUsedBytes: 2 * 2 ** 30, memoryAvailableBytes: 20 * 2 ** 30, ...extra });
const sample = (herdId: string, hostId: string, extra: Partial<ContainerMetrics> = {}): ContainerMetrics => ({ v: PROTOCOL_VERSION, herdId, hostId, name: `n-${herdId}`, dockerId: 'd'.repeat(64), at, state: 'running', ...extra });
const batch = (hostId: string, samples: ContainerMetrics[]) => JSON.stringify({ v: PROTOCOL_VERSION, hostId, at, samples });

describe('herd metrics top', () => {
  it('keeps the latest host samples and, per host, the containers of its latest batch', () => {
    const latest = emptyLatest();
    takeMessage(latest, topics.hostMetrics('h1'), JSON.stringify(host('h1')));
    takeMessage(latest, topics.containerMetrics('h1'), batch('h1', [sample('a', 'h1', { cpuCores: 0.98, cpuUtil: 0.98, memoryBytes: 50 * 2 ** 20 }), sample('b', 'h1')]));
    takeMessage(latest, topics.containerMetrics('h2'), batch('h2', [sample('c', 'h2')]));
    // h1's next batch: b is gone, a moved to h2 (h2's batch now has it).
    takeMessage(latest, topics.containerMetrics('h1'), batch('h1', []));
    takeMessage(latest, topics.containerMetrics('h2'), batch('h2', [sample('c', 'h2'), sample('a', 'h2')]));
    expect([...latest.containers.keys()].sort()).toEqual(['a', 'c']);
    expect(latest.containers.get('a')?.hostId).toBe('h2');
    expect(latest.hosts.get('h1')?.load1).toBe(1.25);
  });

  it('counts messages that are not JSON or not their schema, and ignores other topics', () => {
    const latest = emptyLatest();
    takeMessage(latest, topics.containerMetrics('h1'), '{not json');
    takeMessage(latest, topics.containerMetrics('h1'), JSON.stringify({ v: PROTOCOL_VERSION, hostId: 'h1', at, samples: [{ herdId: 'x' }] }));
    takeMessage(latest, topics.hostMetrics('h1'), JSON.stringify({ hostId: 'h1' }));
    takeMessage(latest, topics.hostStatus('h1'), '{}');
    expect(latest.rejected).toBe(3);
    expect(latest.containers.size + latest.hosts.size).toBe(0);
    expect(renderTop(latest)).toContain('3 message(s) rejected');
  });

  it('renders hosts and containers with units, and stale hosts with their reason', () => {
    const latest = emptyLatest();
    takeMessage(latest, topics.hostMetrics('h1'), JSON.stringify(host('h1')));
    takeMessage(latest, topics.hostMetrics('h2'), JSON.stringify({ v: PROTOCOL_VERSION, hostId: 'h2', at, stale: true, staleReason: 'PCP_UNAVAILABLE: no answer' }));
    takeMessage(latest, topics.containerMetrics('h1'), batch('h1', [sample('a', 'h1', { cpuCores: 0.98, cpuUtil: 0.49, memoryBytes: 50 * 2 ** 20, netInBytesPerSec: 2048, processCount: 2, health: 'healthy' })]));
    const text = renderTop(latest);
    expect(text).toMatch(/^HOST\s+CPU\s+LOAD1/m);
    expect(text).toMatch(/^h1\s+50\.0 %\s+1\.25\s+2\.0 GiB\s+20\.0 GiB/m);
    expect(text).toMatch(/^h2\s+stale: PCP_UNAVAILABLE: no answer/m);
    expect(text).toMatch(/^n-a\s+a\s+h1\s+running \(healthy\)\s+0\.98\s+49\.0 %\s+50\.0 MiB\s+-\s+-\s+2\.0 KiB\/s\s+-\s+2$/m);
  });
});
