import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { ClusterSnapshot } from '../policies/model.ts';
import type { ControlEvent } from '../protocol/messages.ts';
import { registerControlMetrics } from './control-metrics.ts';

const host = (hostId: string, online: boolean, cpuUtil?: number) => ({ hostId, online, cores: 2, sampleCount: 6, missingRatio: 0, ...(cpuUtil === undefined ? {} : { cpuUtil }) });
const snapshot = (hosts: ReturnType<typeof host>[]): ClusterSnapshot => ({ version: 'v1', nowMs: 0, windowSeconds: 30, hosts, containers: [], inFlight: [] }) as unknown as ClusterSnapshot;

async function value(registry: Registry, name: string): Promise<number | undefined> {
  const family = (await registry.getMetricsAsJSON()).find((m) => m.name === name) as { values: { value: number }[] } | undefined;
  return family?.values[0]?.value;
}

describe('control metrics', () => {
  it('CPU imbalance: max minus min over the online hosts, NaN (unknown) once none reports CPU, not the last value', async () => {
    const registry = new Registry();
    let latest: ClusterSnapshot | undefined;
    registerControlMetrics(registry, () => latest);
    expect(await value(registry, 'herd_control_cpu_imbalance_ratio')).toBeNaN(); // no evaluation yet
    latest = snapshot([host('h1', true, 0.9), host('h2', true, 0.1)]);
    expect(await value(registry, 'herd_control_cpu_imbalance_ratio')).toBeCloseTo(0.8);
    latest = snapshot([host('h1', false), host('h2', false)]);
    expect(await value(registry, 'herd_control_cpu_imbalance_ratio')).toBeNaN();
    expect(await registry.metrics()).toMatch(/^herd_control_cpu_imbalance_ratio nan$/im); // prom-client writes "Nan", which Prometheus parses
    latest = snapshot([host('h1', true, 0.5), host('h2', true, 0.5)]);
    expect(await value(registry, 'herd_control_cpu_imbalance_ratio')).toBe(0);
  });

  it('buckets downtimes finely from 0.1 to 2 s', async () => {
    const registry = new Registry();
    const metrics = registerControlMetrics(registry, () => undefined);
    const ended = (downtimeMs: number) => ({ v: 1, nodeId: 'n', at: '2026-11-28T06:00:00.000Z', kind: 'migration', outcome: 'done', downtimeMs, message: 'done' }) as unknown as ControlEvent;
    metrics.observe(ended(810));
    metrics.observe(ended(1860));
    const text = await registry.metrics();
    const bounds = [...text.matchAll(/herd_control_migration_downtime_seconds_bucket\{le="([^"]+)"\}/g)].map((m) => m[1]);
    expect(bounds).toEqual(['0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.75', '0.9', '1', '1.25', '1.5', '2', '3', '5', '10', '30', '60', '+Inf']);
    expect(text).toContain('herd_control_migration_downtime_seconds_bucket{le="0.75"} 0');
    expect(text).toContain('herd_control_migration_downtime_seconds_bucket{le="0.9"} 1');
    expect(text).toContain('herd_control_migration_downtime_seconds_bucket{le="1.5"} 1');
    expect(text).toContain('herd_control_migration_downtime_seconds_bucket{le="2"} 2');
  });
});
