/**
 * The control daemon's loop through a REAL broker (aedes in-process): metrics in, a plan
 * with its reason, `migration.start` sent to the source host, the outcome recorded in the
 * history, no ping-pong afterwards, and a restart while a migration is in flight that
 * loses no history and sends no duplicate. The compute hosts and the monitor are small
 * fakes speaking the real wire contract (the lab's e2e suite runs the real ones).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { controlConfigSchema } from '../../control/config.ts';
import { buildControlDaemon, type ControlDaemon } from '../../control/daemon.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { silentLogger } from '../../protocol/log.ts';
import { PROTOCOL_VERSION, type ContainerMetrics, type ContainerSummary, type HostStatus, type MigrationEvent, type MigrationResult } from '../../protocol/messages.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { computeClientId } from '../../protocol/access.ts';
import { serveCommands, type CommandServer } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { eventually, Inbox } from './helpers.ts';

const log = silentLogger;
let broker: EmbeddedBroker;
let fake: MqttClient;
let servers: CommandServer[] = [];
let monitorTimer: NodeJS.Timeout;
let stateDir: string;
let daemon: ControlDaemon | undefined;

/** Where each fake container runs, and the fake compute hosts' migration.start calls. */
const placement = new Map<string, string>([
  ['a', 'h1'],
  ['b', 'h1'],
  ['c', 'h1'],
]);
const starts: string[] = [];
/** Migrations the fake hosts finished, as their source's tombstone would say (migration.status). */
const finished = new Map<string, MigrationResult>();
let migrationDelayMs = 50;

const summary = (name: string, hostId: string): ContainerSummary => ({ herdId: `id-${name}`, name, hostId, dockerId: `d-${name}`, image: 'herd/sysbench', state: 'running' });

async function publishContainers(hostId: string): Promise<void> {
  const containers = [...placement].filter(([, h]) => h === hostId).map(([n]) => summary(n, hostId));
  await publishJson(fake, topics.hostContainers(hostId), { v: 1, hostId, at: new Date().toISOString(), containers }, { retain: true });
}

/** The monitor's view of a CPU-bound workload: each host's single core shared fairly among its containers. */
async function publishMetrics(): Promise<void> {
  const at = new Date().toISOString();
  for (const hostId of ['h1', 'h2']) {
    const names = [...placement].filter(([, h]) => h === hostId).map(([n]) => n);
    await publishJson(fake, topics.hostMetrics(hostId), { v: 1, hostId, at, stale: false, cpus: [hostId === 'h1' ? 0 : 1], cpuUtil: names.length > 0 ? 1 : 0.02, diskOpsPerSec: 5, diskActiveRatio: 0.01 });
    const samples: ContainerMetrics[] = names.map((n) => ({ v: 1, herdId: `id-${n}`, hostId, name: n, dockerId: `d-${n}`, at, state: 'running', cpuCores: 1 / names.length, cpuLimitCores: 1, threadCount: 1, processCount: 1, diskReadOpsPerSec: 0, diskWriteOpsPerSec: 1 }));
    await publishJson(fake, topics.containerMetrics(hostId), { v: 1, hostId, at, samples });
  }
}

/** Replies to a host's commands must come from that host's compute client id. */
const hostClients: MqttClient[] = [];
async function hostClient(hostId: string): Promise<MqttClient> {
  const client = await connectBroker({ url: broker.url, clientId: computeClientId(hostId), reconnectPeriodMs: 0 });
  hostClients.push(client);
  return client;
}

async function fakeComputeHost(hostId: string): Promise<void> {
  const status: HostStatus = { v: 1, hostId, state: 'online', since: new Date().toISOString(), cpus: [hostId === 'h1' ? 0 : 1] };
  await publishJson(fake, topics.hostStatus(hostId), status, { retain: true });
  await publishContainers(hostId);
  servers.push(
    await serveCommands(await hostClient(hostId), hostId, computeClientId(hostId), {
      'migration.start': async (cmd) => {
        const { migrationId, container, targetHost } = cmd.args;
        starts.push(migrationId);
        const name = container.replace(/^id-/, '');
        const event = (phase: MigrationEvent['phase'], status: MigrationEvent['status'], extra: Partial<MigrationEvent> = {}): Promise<void> =>
          publishJson(fake, topics.migrationEvents(migrationId), { v: PROTOCOL_VERSION, migrationId, herdId: `id-${name}`, container: name, sourceHost: hostId, targetHost, phase, status, at: new Date().toISOString(), ...extra });
        await event('accepted', 'started');
        await new Promise((r) => setTimeout(r, migrationDelayMs));
        placement.set(name, targetHost);
        await publishContainers(hostId);
        await publishContainers(targetHost);
        const timings = { checkpointMs: 300, transferMs: 200, restoreMs: 400, totalMs: 1100, downtimeMs: 900, checkpointBytes: 1000, filesystemBytes: 10 };
        const result: MigrationResult = { migrationId, herdId: `id-${name}`, container: name, sourceHost: hostId, targetHost, fsMode: 'diff', timings };
        finished.set(migrationId, result);
        await event('done', 'finished', { timings });
        return result;
      },
      'migration.status': async (cmd) => {
        const result = finished.get(cmd.args.migrationId);
        if (result?.sourceHost !== hostId) return { migrationId: cmd.args.migrationId, hostId, state: 'unknown' };
        return { migrationId: result.migrationId, hostId, role: 'source', state: 'done', container: result.container, targetHost: result.targetHost, result };
      },
    }, log),
  );
}

function startDaemon(): Promise<ControlDaemon> {
  const config = controlConfigSchema.parse({
    nodeId: 'itest-control',
    broker: { embedded: false, url: broker.url },
    metrics: { port: 0 },
    dashboard: { port: 0 },
    loop: {
      windowSeconds: 4,
      // Evaluations are asked for by the test (and by nothing else).
      evaluationIntervalSeconds: 3600,
      initialDelaySeconds: 3600,
      hostIntervalSeconds: 0.5,
      containerIntervalSeconds: 0.5,
      missingSamplesThreshold: 0.5,
      reactive: { enabled: false },
      policies: [{ policy: 'cpu-greedy-multithread' }],
      safety: { hysteresisEvaluations: 1, cooldownSeconds: 600 },
      stateDir,
    },
  });
  const d = buildControlDaemon(config, { log });
  return d.start().then(() => d);
}

beforeAll(async () => {
  broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, log);
  fake = await connectBroker({ url: broker.url, clientId: 'itest-fake', reconnectPeriodMs: 0 });
  await fakeComputeHost('h1');
  await fakeComputeHost('h2');
  monitorTimer = setInterval(() => void publishMetrics().catch(() => undefined), 500);
  stateDir = mkdtempSync(join(tmpdir(), 'herd-control-itest-'));
});

afterEach(async () => {
  await daemon?.close();
  daemon = undefined;
});

afterAll(async () => {
  clearInterval(monitorTimer);
  for (const s of servers) await s.close();
  servers = [];
  await closeBroker(fake);
  for (const c of hostClients) await closeBroker(c);
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

describe('control loop through a real broker', () => {
  it('moves one container off the overloaded host with its reason, records it, and then holds still', async () => {
    daemon = await startDaemon();
    const watcher = await connectBroker({ url: broker.url, clientId: 'itest-watch', reconnectPeriodMs: 0 });
    const events = await Inbox.open(watcher, topics.controlEvents('itest-control'));
    await new Promise((r) => setTimeout(r, 4500)); // one window of samples
    const loop = daemon.loop()!;
    const first = await loop.evaluateNow();
    expect(first.plan.moves, JSON.stringify(first.allowed.annotations)).toHaveLength(1);
    expect(first.allowed.moves[0]).toMatchObject({ from: 'h1', to: 'h2', reasonCode: 'CPU_OVERLOAD' });
    expect(first.sent).toBe(1);
    await loop.settle();
    const moved = first.allowed.moves[0]!.name;
    expect(placement.get(moved)).toBe('h2');
    const record = loop.historyRecords(10).at(-1)!;
    expect(record).toMatchObject({ name: moved, from: 'h1', to: 'h2', outcome: 'done', manual: false, reasonCode: 'CPU_OVERLOAD' });
    expect(record.timings?.downtimeMs).toBe(900);
    await events.next('a move event', (m) => m.json?.kind === 'move' && m.json?.container === moved);
    await events.next('the migration ended', (m) => m.json?.kind === 'migration' && m.json?.outcome === 'done');

    // h2 is now full, h1 still holds two: no target has room. Several evaluations later nothing else moved.
    await new Promise((r) => setTimeout(r, 4500));
    for (let i = 0; i < 3; i++) {
      const again = await loop.evaluateNow();
      expect(again.sent, JSON.stringify(again.allowed.annotations)).toBe(0);
      expect(again.allowed.annotations.map((a) => a.code)).toContain('NO_TARGET_CAPACITY');
    }
    expect(starts).toHaveLength(1);
    await closeBroker(watcher);

    // The same story in the Prometheus families (types and labels).
    const evaluations = (loop.status() as { evaluations: number }).evaluations;
    expect(evaluations).toBeGreaterThanOrEqual(4);
    const text = await (await fetch(daemon.metricsUrl() as string)).text();
    for (const line of [
      '# TYPE herd_control_evaluations_total counter',
      `herd_control_evaluations_total{policy="cpu-greedy-multithread"} ${evaluations}`,
      'herd_control_moves_proposed_total 1',
      'herd_control_moves_executed_total 1',
      'herd_control_migrations_total{outcome="done"} 1',
      'herd_control_annotations_total{reason="NO_TARGET_CAPACITY"}',
      '# TYPE herd_control_plan_duration_seconds histogram',
      `herd_control_plan_duration_seconds_count ${evaluations}`,
      'herd_control_migration_downtime_seconds_sum 0.9',
      'herd_control_containers{host="h2"}',
      '# TYPE herd_control_cpu_imbalance_ratio gauge',
    ]) expect(text.split('\n').filter((l) => l.includes('herd_control')).join('\n'), line).toContain(line);
  });

  it('restarted while a migration is in flight, it loses no history, sends no duplicate, and learns the outcome from the hosts', async () => {
    // Make room on h2 again (its container finished) so that another move is worth it.
    for (const [n, h] of placement) if (h === 'h2') placement.delete(n);
    await publishContainers('h2');
    placement.set('d', 'h1');
    await publishContainers('h1');
    migrationDelayMs = 3000;
    daemon = await startDaemon();
    await new Promise((r) => setTimeout(r, 4500));
    const before = starts.length;
    const e = await daemon.loop()!.evaluateNow();
    expect(e.sent).toBe(1);
    await eventually('migration.start reached the source host', () => starts.length === before + 1);
    const migrationId = starts.at(-1)!;
    // Stop the control daemon while the migration runs; the host finishes it meanwhile.
    await daemon.close();
    daemon = undefined;
    const lines = readFileSync(join(stateDir, 'history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; record?: { migrationId: string }; migrationId?: string });
    expect(lines.some((l) => l.type === 'started' && l.record?.migrationId === migrationId)).toBe(true);
    expect(lines.some((l) => l.type === 'ended' && l.migrationId === migrationId)).toBe(false);
    await new Promise((r) => setTimeout(r, 3500));

    daemon = await startDaemon();
    const loop = daemon.loop()!;
    expect(loop.status().inFlight.map((f) => f.migrationId)).toEqual([migrationId]);
    await new Promise((r) => setTimeout(r, 4500));
    const after = await loop.evaluateNow(); // reconciles first
    const rec = loop.historyRecords(100).find((r) => r.migrationId === migrationId)!;
    expect(rec).toMatchObject({ outcome: 'done', learnedBy: 'reconcile' });
    expect(loop.historyRecords(100)).toHaveLength(2);
    // The moved container is cooling down; nothing was sent twice.
    expect(after.plan.moves.map((m) => m.herdId)).not.toContain(rec.herdId);
    await loop.settle();
    expect(new Set(starts).size).toBe(starts.length);
  });

  it('restarted after a migration ended unseen and its container was removed since, it asks the hosts how it ended', async () => {
    for (const [n, h] of placement) if (h === 'h2') placement.delete(n);
    await publishContainers('h2');
    placement.set('e', 'h1');
    await publishContainers('h1');
    migrationDelayMs = 3000;
    daemon = await startDaemon();
    await new Promise((r) => setTimeout(r, 4500));
    const before = starts.length;
    expect((await daemon.loop()!.evaluateNow()).sent).toBe(1);
    await eventually('migration.start reached the source host', () => starts.length === before + 1);
    const migrationId = starts.at(-1)!;
    // Down while the host finishes the migration (its events go unseen); then the container is removed.
    await daemon.close();
    daemon = undefined;
    await eventually('the host finished the migration', () => finished.has(migrationId));
    const moved = finished.get(migrationId)!;
    placement.delete(moved.container);
    await publishContainers(moved.sourceHost);
    await publishContainers(moved.targetHost);

    daemon = await startDaemon();
    const loop = daemon.loop()!;
    expect(loop.status().inFlight.map((f) => f.migrationId)).toEqual([migrationId]);
    // Running nowhere: the lists cannot tell; the source host's record says done (with its timings).
    await new Promise((r) => setTimeout(r, 4500));
    await loop.evaluateNow();
    await eventually('the outcome learned from the hosts', () => loop.historyRecords(100).find((r) => r.migrationId === migrationId)?.outcome !== undefined);
    expect(loop.historyRecords(100).find((r) => r.migrationId === migrationId)).toMatchObject({ outcome: 'done', learnedBy: 'reconcile', timings: { downtimeMs: 900 } });
    expect(loop.status().inFlight.map((f) => f.migrationId)).not.toContain(migrationId);
    await loop.settle();
    expect(new Set(starts).size).toBe(starts.length);
  });
});
