import { describe, expect, it } from 'vitest';
import type { ContainerMetrics, HostMetrics } from '../../protocol/messages.ts';
import { clusterSnapshotSchema } from '../../policies/model.ts';
import { buildSnapshot } from './snapshot-builder.ts';
import { SampleWindows } from './windows.ts';

const T0 = Date.parse('2026-11-26T12:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const hostSample = (hostId: string, s: number, o: Partial<HostMetrics> = {}): HostMetrics => ({ v: 1, hostId, at: at(s), stale: false, cpus: [0, 1], cpuUtil: 0.5, ...o });
const cSample = (name: string, hostId: string, s: number, o: Partial<ContainerMetrics> = {}): ContainerMetrics => ({ v: 1, herdId: `id-${name}`, hostId, name, dockerId: 'd', at: at(s), state: 'running', cpuCores: 1, threadCount: 2, ...o });

describe('sample windows (danfojs aggregation)', () => {
  it('means, maxima and counts per entity and metric; a metric a sample lacks is not counted as zero', async () => {
    const w = new SampleWindows({ windowSeconds: 10, hostIntervalSeconds: 2, containerIntervalSeconds: 2 });
    for (let s = 0; s < 10; s += 2) w.addHost(hostSample('h1', s, { cpuUtil: s / 10, ...(s === 4 ? { diskOpsPerSec: 30 } : {}) }));
    w.addContainers({ v: 1, hostId: 'h1', at: at(8), samples: [cSample('a', 'h1', 8, { cpuCores: 0.5 }), cSample('b', 'h1', 8, { state: 'exited' })] });
    w.addContainers({ v: 1, hostId: 'h1', at: at(6), samples: [cSample('a', 'h1', 6, { cpuCores: 1.5, threadCount: 4 })] });
    const agg = await w.aggregate(T0 + 9_000);
    const h1 = agg.hosts.get('h1')!;
    expect(h1.sampleCount).toBe(5);
    expect(h1.metrics.cpuUtil?.mean).toBeCloseTo(0.4);
    expect(h1.metrics.cpuUtil?.max).toBeCloseTo(0.8);
    expect(h1.metrics.diskOpsPerSec).toEqual({ mean: 30, max: 30, count: 1 });
    expect(h1.missingRatio).toBe(0); // 10 s / 2 s = 5, less one for the edges: 4 expected
    const a = agg.containers.get('id-a')!;
    expect(a.metrics.cpuCores?.mean).toBeCloseTo(1);
    expect(a.metrics.threadCount?.max).toBe(4);
    expect(a.missingRatio).toBeCloseTo(0.5);
    expect(agg.containers.has('id-b')).toBe(false); // not running
    expect(w.hostCores('h1')).toBe(2);
  });

  it('drops samples older than the window, and a migration\'s hosts\' samples from before it', async () => {
    const w = new SampleWindows({ windowSeconds: 10, hostIntervalSeconds: 2, containerIntervalSeconds: 2 });
    w.addHost(hostSample('h1', 0));
    w.addHost(hostSample('h1', 8));
    w.addHost(hostSample('h2', 8));
    expect((await w.aggregate(T0 + 12_000)).hosts.get('h1')?.sampleCount).toBe(1);
    w.forgetHosts(['h1'], T0 + 9_000);
    const agg = await w.aggregate(T0 + 12_000);
    expect(agg.hosts.has('h1')).toBe(false);
    expect(agg.hosts.get('h2')?.sampleCount).toBe(1);
    // The restart is remembered while it is within the window, for the policies' reasons.
    expect(w.restartedAt('h1', T0 + 12_000)).toBe(T0 + 9_000);
    expect(w.restartedAt('h2', T0 + 12_000)).toBeUndefined();
    await w.aggregate(T0 + 19_500);
    expect(w.restartedAt('h1', T0 + 19_500)).toBeUndefined();
  });

  it('builds the policies\' snapshot: hosts online or not, drains, running containers only, in-flight migrations', async () => {
    const w = new SampleWindows({ windowSeconds: 10, hostIntervalSeconds: 2, containerIntervalSeconds: 2 });
    for (let s = 0; s < 10; s += 2) {
      w.addHost(hostSample('h1', s, { cpuUtil: 1, pressure: { cpuSomeAvg10sPct: 40 } }));
      w.addContainers({ v: 1, hostId: 'h1', at: at(s), samples: [cSample('a', 'h1', s)] });
    }
    const snap = buildSnapshot({
      version: 'e-1',
      nowMs: T0 + 9_000,
      windowSeconds: 10,
      view: {
        hosts: () => [
          { v: 1, hostId: 'h1', state: 'online', since: at(0), cpus: [0] },
          { v: 1, hostId: 'h2', state: 'offline', since: at(0) },
          { v: 1, hostId: 'h3', state: 'online', since: at(0) },
        ],
        containers: () => [
          { herdId: 'id-a', name: 'a', hostId: 'h1', dockerId: 'd', image: 'i', state: 'running', createdAt: new Date(T0 + 2_000).toISOString() },
          { herdId: 'id-a', name: 'a', hostId: 'h2', dockerId: 'd2', image: 'i', state: 'created', migrationId: 'm1' },
          // h3's list, published on its own, already shows the copy running: one entry per container.
          { herdId: 'id-a', name: 'a', hostId: 'h3', dockerId: 'd3', image: 'i', state: 'running', migrationId: 'm1' },
        ],
      },
      aggregates: await w.aggregate(T0 + 9_000),
      inFlight: [],
      draining: new Set(['h1']),
      hostCores: (h) => w.hostCores(h),
      windowRestartedAt: (h) => (h === 'h1' ? T0 + 1_000 : undefined),
    });
    expect(snap.hosts).toEqual([
      expect.objectContaining({ hostId: 'h1', online: true, draining: true, cores: 1, cpuUtil: 1, cpuPressurePct: 40, sampleCount: 5 }),
      expect.objectContaining({ hostId: 'h2', online: false, sampleCount: 0, missingRatio: 1 }),
      expect.objectContaining({ hostId: 'h3', online: true, sampleCount: 0 }),
    ]);
    // No CPUs in its status, no sample: its core count is unknown, not invented.
    expect(snap.hosts[1]).not.toHaveProperty('cores');
    expect(snap.hosts[2]).not.toHaveProperty('cores');
    expect(snap.containers).toEqual([expect.objectContaining({ herdId: 'id-a', hostId: 'h1', cpuCores: 1, threadCount: 2, migrating: false, sampleCount: 5 })]);
    // A restarted window is said on the host and on its containers.
    expect(snap.hosts[0]?.windowRestartedAtMs).toBe(T0 + 1_000);
    expect(snap.hosts[2]).not.toHaveProperty('windowRestartedAtMs');
    expect(snap.containers[0]?.windowRestartedAtMs).toBe(T0 + 1_000);
    // Created within the window: its samples before that are awaited, not missing.
    expect(snap.containers[0]?.createdAtMs).toBe(T0 + 2_000);
    // The loop's own snapshots are consistent (what `herd plan --save` writes, `--snapshot` reads back).
    expect(clusterSnapshotSchema.safeParse(snap).error?.issues).toBeUndefined();
  });
});
