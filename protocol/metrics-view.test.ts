/** The metrics view: samples checked against their schemas, and against the host of their topic (as cluster-view.ts does). */
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, type ContainerMetrics } from './messages.ts';
import { emptyLatest, parseMetricsMessage, takeMessage } from './metrics-view.ts';
import { topics } from './topics.ts';

const at = '2026-11-28T06:00:00.000Z';
const sample = (herdId: string, hostId: string): ContainerMetrics => ({ v: PROTOCOL_VERSION, herdId, hostId, name: herdId, dockerId: 'd'.repeat(64), at, state: 'running', cpuCores: 1 });
const batch = (hostId: string, samples: ContainerMetrics[]) => JSON.stringify({ v: PROTOCOL_VERSION, hostId, at, samples });

describe('parseMetricsMessage', () => {
  it('accepts a host sample and a batch of its topic host', () => {
    expect(parseMetricsMessage(topics.hostMetrics('h1'), JSON.stringify({ v: PROTOCOL_VERSION, hostId: 'h1', at, stale: false }))).toMatchObject({ kind: 'host', sample: { hostId: 'h1' } });
    expect(parseMetricsMessage(topics.containerMetrics('h1'), batch('h1', [sample('web', 'h1')]))).toMatchObject({ kind: 'containers', foreignSamples: 0, batch: { hostId: 'h1', samples: [{ herdId: 'web' }] } });
  });

  it('rejects a host sample naming another host than its topic', () => {
    expect(parseMetricsMessage(topics.hostMetrics('h1'), JSON.stringify({ v: PROTOCOL_VERSION, hostId: 'h9', at, stale: false, cpuUtil: 1 }))).toBe('rejected');
  });

  it('rejects a batch naming another host than its topic', () => {
    expect(parseMetricsMessage(topics.containerMetrics('h1'), batch('h2', [sample('web', 'h2')]))).toBe('rejected');
  });

  it('drops the samples of a batch that name another host, and counts them', () => {
    const m = parseMetricsMessage(topics.containerMetrics('h1'), batch('h1', [sample('web', 'h1'), sample('db', 'h3')]));
    expect(m).toMatchObject({ kind: 'containers', foreignSamples: 1 });
    expect(m !== 'rejected' && m?.kind === 'containers' ? m.batch.samples.map((s) => s.herdId) : undefined).toEqual(['web']);
  });
});

describe('takeMessage', () => {
  it('never lets one host speak for another', () => {
    const latest = emptyLatest();
    takeMessage(latest, topics.containerMetrics('h2'), batch('h2', [sample('db', 'h2')]));
    // On h1's topic: a batch that claims to be h2's, and one whose sample claims h3.
    takeMessage(latest, topics.containerMetrics('h1'), batch('h2', [sample('web', 'h3')]));
    takeMessage(latest, topics.containerMetrics('h1'), batch('h1', [sample('db', 'h3')]));
    expect([...latest.containers.values()].map((s) => `${s.herdId}@${s.hostId}`)).toEqual(['db@h2']);
    expect(latest.rejected).toBe(1);
    expect(latest.foreignSamples).toBe(1);
  });
});
