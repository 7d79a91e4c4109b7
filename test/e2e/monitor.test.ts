/**
 * The monitor end to end on the lab: real Docker, PCP (pmcd/pmproxy) and the lab's own
 * monitor daemon (started by `herd lab up`), samples received over MQTT from the lab's
 * broker. A CPU burner shows about one core, a disk writer shows write operations, a
 * migrated container's series continues on its new host with the move marked and no
 * duplicate or orphan series, its log shows lines from both hosts, and restarts by
 * Docker's restart policy show in restartCount. Waits poll (up to ~30 s); nothing is timed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabLayout } from '../../control/lab/layout.ts';
import { containerMetricsBatchSchema, type ContainerMetrics } from '../../protocol/messages.ts';
import { closeBroker, type MqttClient } from '../../protocol/mqtt.ts';
import { topics } from '../../protocol/topics.ts';
import { herdOk } from '../support/herd-cli.ts';
import { connectLabBroker, dockerOf, readyLab } from '../support/lab.ts';

const POLL_MS = 500;
const WAIT_MS = 30_000;

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, waitMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting (${waitMs / 1000} s) for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function herdIdOf(name: string): Promise<string> {
  return until(`${name} in herd containers`, async () => (JSON.parse(await herdOk(['containers', '--json'])) as Array<{ name: string; herdId: string }>).find((c) => c.name === name)?.herdId);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

describe('monitor on the lab (real Docker, PCP, the lab monitor daemon)', () => {
  let layout: LabLayout;
  let client: MqttClient;
  /** Every container sample received, in arrival order. */
  const received: ContainerMetrics[] = [];
  const samplesOf = (herdId: string) => received.filter((s) => s.herdId === herdId);

  beforeAll(async () => {
    layout = await readyLab(2);
    client = await connectLabBroker(layout, 'e2e-monitor');
    client.on('message', (_topic, payload) => received.push(...containerMetricsBatchSchema.parse(JSON.parse(payload.toString('utf8'))).samples));
    await client.subscribeAsync(topics.allContainerMetrics, { qos: 0 });
  });

  afterAll(async () => {
    if (client !== undefined) await closeBroker(client);
  });

  it('a CPU-burning container shows about one core', async () => {
    await herdOk(['run', '--host', 'h1', '--name', 'burner', 'herd/sysbench', 'sysbench', 'cpu', '--time=0', '--threads=1', 'run']);
    const herdId = await herdIdOf('burner');
    const cores = await until('three CPU samples of the burner', () => {
      const xs = samplesOf(herdId).flatMap((s) => (s.cpuCores === undefined ? [] : [s.cpuCores]));
      return xs.length >= 3 ? xs.slice(-3) : undefined;
    });
    expect(median(cores)).toBeGreaterThan(0.6);
    expect(median(cores)).toBeLessThan(1.2);
    const last = samplesOf(herdId).at(-1)!;
    expect(last).toMatchObject({ hostId: 'h1', name: 'burner', state: 'running', restartCount: 0 });
    expect(last.cpuLimitCores).toBeGreaterThan(0);
    expect(last.processCount).toBeGreaterThanOrEqual(1);
    expect(last.memoryBytes).toBeGreaterThan(0);
    await herdOk(['rm', '--force', 'burner']).catch(() => dockerOf(layout, 'h1').getContainer('burner').remove({ force: true }));
  });

  it('a disk-writing container shows disk write operations', async () => {
    const writer = "while true; do dd if=/dev/zero of=/data/f bs=4k count=256 oflag=direct 2>/dev/null || dd if=/dev/zero of=/data/f bs=4k count=256 conv=fsync 2>/dev/null; done";
    await herdOk(['run', '--host', 'h2', '--name', 'writer', 'herd/busybox', 'sh', '-c', `mkdir -p /data; ${writer}`]);
    const herdId = await herdIdOf('writer');
    const sample = await until('a sample of the writer with disk writes', () => samplesOf(herdId).find((s) => (s.diskWriteOpsPerSec ?? 0) > 0));
    expect(sample.hostId).toBe('h2');
    expect(sample.diskWriteOpsPerSec).toBeGreaterThan(0);
    await herdOk(['rm', '--force', 'writer']).catch(() => dockerOf(layout, 'h2').getContainer('writer').remove({ force: true }));
  });

  it('shows a new memory limit soon after `docker update` (from its event, not a periodic re-read)', async () => {
    const docker = dockerOf(layout, 'h2');
    const herdId = `e2e-update-${process.pid}`;
    const mib = 2 ** 20;
    const limited = await docker.createContainer({
      name: 'limited',
      Image: 'herd/busybox',
      Cmd: ['sleep', '3600'],
      Labels: { 'io.herd.id': herdId },
      HostConfig: { NetworkMode: 'none', Memory: 64 * mib, MemorySwap: 128 * mib },
    });
    try {
      await limited.start();
      await until('a sample with the 64 MiB limit', () => samplesOf(herdId).find((s) => s.memoryLimitBytes === 64 * mib));
      const updatedAt = Date.now();
      await limited.update({ Memory: 96 * mib, MemorySwap: 192 * mib });
      const sample = await until('a sample with the 96 MiB limit', () => samplesOf(herdId).find((s) => s.memoryLimitBytes === 96 * mib));
      // Limits are re-read periodically only every LIMITS_REFRESH_SECONDS (300 s): within a few rounds means the event did it.
      expect(Date.parse(sample.at) - updatedAt).toBeLessThan(30_000);
    } finally {
      await limited.remove({ force: true });
    }
  });

  it('after a migration the series continues on the other host, marked once, and the log shows both sides', async () => {
    const talk = 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.3; done';
    await herdOk(['run', '--host', 'h1', '--name', 'talker', 'herd/busybox', 'sh', '-c', talk]);
    const herdId = await herdIdOf('talker');
    await until('two samples of the talker on h1', () => (samplesOf(herdId).filter((s) => s.hostId === 'h1' && s.state === 'running').length >= 2 ? true : undefined));
    await until('its log on h1', async () => ((await herdOk(['logs', 'talker', '-t'])).includes(' h1 tick ') ? true : undefined));

    await herdOk(['migrate', 'talker', '--to', 'h2'], { timeoutMs: 180_000 });
    await until('three samples of the talker on h2', () => (samplesOf(herdId).filter((s) => s.hostId === 'h2').length >= 3 ? true : undefined));

    const series = samplesOf(herdId);
    const firstOnH2 = series.findIndex((s) => s.hostId === 'h2');
    // The first sample on h2 carries the marker, and it is the only marked sample.
    expect(series[firstOnH2]?.migration).toMatchObject({ fromHost: 'h1', toHost: 'h2' });
    expect(series.filter((s) => s.migration !== undefined)).toHaveLength(1);
    // No duplicate series: nothing from h1 after the series moved (not the stopped source either).
    expect(series.slice(firstOnH2).filter((s) => s.hostId === 'h1')).toEqual([]);
    // No orphan series: every sample named talker is keyed by the one Herd id.
    expect(new Set(received.filter((s) => s.name === 'talker').map((s) => s.herdId))).toEqual(new Set([herdId]));
    // The series goes on with rates on h2.
    await until('a CPU rate on h2', () => samplesOf(herdId).find((s) => s.hostId === 'h2' && s.cpuCores !== undefined));

    // One log for both hosts: lines from h1, then h2, counting on (not restarted), none twice.
    const lines = await until('log lines from h2', async () => {
      const text = await herdOk(['logs', 'talker', '--json']);
      const records = text.trim().split('\n').map((l) => JSON.parse(l) as { hostId: string; text: string; at: string; dockerId: string });
      return records.filter((r) => r.hostId === 'h2').length >= 3 ? records : undefined;
    });
    const hosts = lines.map((r) => r.hostId);
    expect(hosts[0]).toBe('h1');
    expect(hosts.lastIndexOf('h1')).toBeLessThan(hosts.indexOf('h2'));
    const ticks = lines.map((r) => Number(/^tick (\d+)$/.exec(r.text)?.[1]));
    expect(ticks.every((n) => Number.isInteger(n))).toBe(true);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]).toBeGreaterThan(ticks[i - 1]!);
    expect(new Set(lines.map((r) => `${r.dockerId}|${r.at}`)).size).toBe(lines.length);
    // The plain form, as a user reads it; the Herd id works as well as the name.
    expect(await herdOk(['logs', 'talker', '--tail', '2'])).toMatch(/^tick \d+\ntick \d+\n$/);
    expect(await herdOk(['logs', herdId, '--timestamps', '--tail', '1'])).toMatch(/ h2 tick \d+\n$/);
    await herdOk(['rm', '--force', 'talker']);
  });

  it("shows restarts by Docker's restart policy in restartCount", async () => {
    const docker = dockerOf(layout, 'h1');
    const herdId = `e2e-restarts-${process.pid}`;
    const crasher = await docker.createContainer({
      name: 'crasher',
      Image: 'herd/busybox',
      Cmd: ['sh', '-c', 'echo starting; sleep 1; exit 3'],
      Labels: { 'io.herd.id': herdId },
      HostConfig: { NetworkMode: 'none', RestartPolicy: { Name: 'on-failure' } },
    });
    try {
      await crasher.start();
      const sample = await until('a sample with restartCount >= 2', () => samplesOf(herdId).find((s) => (s.restartCount ?? 0) >= 2));
      expect(sample.hostId).toBe('h1');
      expect((await crasher.inspect()).RestartCount).toBeGreaterThanOrEqual(sample.restartCount!);
      // Every run's output is in the one log, the container's restarts notwithstanding.
      await until('two runs in the log', async () => ((await herdOk(['logs', herdId])).split('\n').filter((l) => l === 'starting').length >= 2 ? true : undefined));
    } finally {
      await crasher.remove({ force: true });
    }
  });
});
