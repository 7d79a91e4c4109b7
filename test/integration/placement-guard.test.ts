/**
 * The control daemon's exactly-once check through a REAL broker (aedes in-process): two
 * fake compute hosts publish their retained status and container lists and answer
 * `container.stop`; the placement guard, over a real cluster view, finds the Herd id
 * running on both, publishes a `placement` event and stops the older copy exactly once.
 * Intervals are shortened through the guard's options (the daemon checks every 15 s).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { PlacementGuard, type PlacementGuardOptions } from '../../control/loop/placement-guard.ts';
import { watchCluster, type ClusterView } from '../../protocol/cluster-view.ts';
import { decode } from '../../protocol/codec.ts';
import { silentLogger } from '../../protocol/log.ts';
import { controlEventSchema, type ContainerSummary, type HostContainers, type HostStatus } from '../../protocol/messages.ts';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../../protocol/mqtt.ts';
import { computeClientId } from '../../protocol/access.ts';
import { CommandClient, serveCommands } from '../../protocol/rpc.ts';
import { topics } from '../../protocol/topics.ts';
import { eventually, Inbox } from './helpers.ts';

const log = silentLogger;
const NODE = 'itest-placement';
const OPTIONS: PlacementGuardOptions = { intervalMs: 100, graceMs: 300, stopTimeoutSeconds: 1, requestTimeoutMs: 5_000 };

let broker: EmbeddedBroker;
let watcher: MqttClient;
let events: Inbox;
const cleanups: Array<() => Promise<unknown>> = [];

/** A fake compute host: retained status and container list on its own connection; `container.stop` marks the copy exited and republishes the list, like the real daemon. */
async function fakeHost(hostId: string, containers: ContainerSummary[], stopDelayMs = 0) {
  const client = await connectBroker({ url: broker.url, clientId: computeClientId(hostId), reconnectPeriodMs: 0 });
  const stops: string[] = [];
  const list = containers.map((c) => ({ ...c }));
  const publishList = () => publishJson(client, topics.hostContainers(hostId), { v: 1, hostId, at: new Date().toISOString(), containers: list } satisfies HostContainers, { retain: true });
  await publishJson(client, topics.hostStatus(hostId), { v: 1, hostId, state: 'online', since: new Date().toISOString() } satisfies HostStatus, { retain: true });
  await publishList();
  const server = await serveCommands(
    client,
    hostId,
    computeClientId(hostId),
    {
      'container.stop': async (cmd) => {
        stops.push(cmd.args.container);
        await new Promise((r) => setTimeout(r, stopDelayMs));
        const c = list.find((x) => x.dockerId === cmd.args.container || x.name === cmd.args.container);
        if (c === undefined) throw new Error(`no container ${cmd.args.container}`);
        c.state = 'exited';
        await publishList();
        return { herdId: c.herdId, name: c.name };
      },
    },
    log,
  );
  cleanups.push(async () => {
    await server.close();
    // Clear the retained messages so the next test starts from an empty cluster.
    await client.publishAsync(topics.hostContainers(hostId), '', { qos: 1, retain: true });
    await client.publishAsync(topics.hostStatus(hostId), '', { qos: 1, retain: true });
    await closeBroker(client);
  });
  return { stops };
}

/** The control side: a cluster view and a command client on one connection, and the guard. */
async function startGuard(holdRepairs?: () => string | undefined): Promise<{ guard: PlacementGuard; view: ClusterView }> {
  const clientId = 'itest-control';
  const client = await connectBroker({ url: broker.url, clientId, reconnectPeriodMs: 0 });
  const view = await watchCluster(client, log, 200);
  const rpc = await CommandClient.create(client, clientId, log);
  const guard = new PlacementGuard(
    {
      view,
      rpc,
      log,
      nodeId: NODE,
      publishEvent: (e) => void publishJson(client, topics.controlEvents(NODE), e),
      ...(holdRepairs === undefined ? {} : { holdRepairs }),
    },
    OPTIONS,
  );
  cleanups.push(async () => {
    await guard.close();
    await guard.settle();
    await rpc.close();
    await view.close();
    await closeBroker(client);
  });
  guard.start();
  return { guard, view };
}

const copy = (hostId: string, herdId: string, createdAt: string, o: Partial<ContainerSummary> = {}): ContainerSummary => ({
  herdId,
  name: herdId.replace(/^id-/, ''),
  hostId,
  dockerId: `${hostId}${herdId}`.replace(/[^a-z0-9]/g, '').padEnd(64, '0'),
  image: 'busybox:1.36',
  state: 'running',
  createdAt,
  ...o,
});
const OLD = '2026-11-26T11:00:00.000Z';
const NEW = '2026-11-26T11:59:00.000Z';

const placementEvents = (herdId: string, code?: string) =>
  events.messages.map((m) => decode(controlEventSchema, m.text, 'control event')).filter((e) => e.kind === 'placement' && e.herdId === herdId && (code === undefined || e.code === code));

beforeAll(async () => {
  broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, log);
  watcher = await connectBroker({ url: broker.url, clientId: 'itest-watch', reconnectPeriodMs: 0 });
  events = await Inbox.open(watcher, topics.controlEvents(NODE));
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await events.close();
  await closeBroker(watcher);
  await broker.close();
});

describe('placement guard through a real broker', () => {
  it('publishes a duplicate event and stops the older copy exactly once, keeping the one created last', async () => {
    // h1 runs the source again (created long ago); h2 runs the migration's target (created later).
    const h1 = await fakeHost('h1', [copy('h1', 'id-web', OLD), copy('h1', 'id-db', OLD)]);
    const h2 = await fakeHost('h2', [copy('h2', 'id-web', NEW)]);
    await startGuard();

    const found = (await events.next('a DUPLICATE event for id-web', (m) => m.json?.code === 'DUPLICATE' && m.json?.herdId === 'id-web')).json;
    expect(decode(controlEventSchema, JSON.stringify(found), 'control event')).toMatchObject({ v: 1, nodeId: NODE, kind: 'placement', code: 'DUPLICATE', herdId: 'id-web', container: 'web', hosts: ['h1', 'h2'] });
    expect(found.message).toContain('web (id-web) runs 2 times');
    expect(found.message).toContain('repair: stop the copy on h1, keeping the copy on h2');

    const outcome = (await events.next('the repair outcome for id-web', (m) => m.json?.code === 'DUPLICATE_STOPPED' && m.json?.herdId === 'id-web')).json;
    expect(outcome).toMatchObject({ kind: 'placement', outcome: 'done', hosts: ['h1'], container: 'web' });
    expect(outcome.message).toMatch(/^stopped the duplicate of web \(id-web\) on h1 .*the copy on h2 .* runs on$/);

    // Many more checks and grace periods: nothing more is sent or reported.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(h1.stops).toEqual([copy('h1', 'id-web', OLD).dockerId]);
    expect(h2.stops).toEqual([]);
    expect(placementEvents('id-web').map((e) => e.code)).toEqual(['DUPLICATE', 'DUPLICATE_STOPPED']);
    // The other container, running once, is not touched.
    expect(placementEvents('id-db')).toEqual([]);
  });

  it('sends no second stop for a Herd id while the first is pending', async () => {
    const h1 = await fakeHost('h1', [copy('h1', 'id-slow', OLD)], 2_000);
    const h2 = await fakeHost('h2', [copy('h2', 'id-slow', NEW)]);
    const { guard } = await startGuard();
    await events.next('a DUPLICATE event for id-slow', (m) => m.json?.code === 'DUPLICATE' && m.json?.herdId === 'id-slow');
    // The stop takes 2 s: about 20 checks run meanwhile, each still seeing the duplicate.
    await eventually('the stop is sent', () => h1.stops.length > 0);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(h1.stops).toHaveLength(1);
    await guard.settle();
    await events.next('the repair outcome for id-slow', (m) => m.json?.code === 'DUPLICATE_STOPPED' && m.json?.herdId === 'id-slow');
    await new Promise((r) => setTimeout(r, 800));
    expect(h1.stops).toHaveLength(1);
    expect(h2.stops).toEqual([]);
  });

  it('holds repairs back when told to (recommend mode, paused), and says so', async () => {
    const h1 = await fakeHost('h1', [copy('h1', 'id-held', OLD)]);
    const h2 = await fakeHost('h2', [copy('h2', 'id-held', NEW)]);
    await startGuard(() => 'the loop is paused');
    const found = (await events.next('a DUPLICATE event for id-held', (m) => m.json?.code === 'DUPLICATE' && m.json?.herdId === 'id-held')).json;
    expect(found.message).toMatch(/\(repair held: the loop is paused\)$/);
    await new Promise((r) => setTimeout(r, 800));
    expect([...h1.stops, ...h2.stops]).toEqual([]);
    expect(placementEvents('id-held').map((e) => e.code)).toEqual(['DUPLICATE']);
  });

  it("believes no host about a peer's containers: a compromised h1 listing a newer copy of h2's container as h2's gets no stop sent to h2", async () => {
    const h1 = await fakeHost('h1', [copy('h2', 'id-victim', NEW, { dockerId: 'f'.repeat(64) })]);
    const h2 = await fakeHost('h2', [copy('h2', 'id-victim', OLD)]);
    const { view } = await startGuard();
    await new Promise((r) => setTimeout(r, 1_000)); // ten checks, three grace periods
    expect(view.containers().map((c) => c.dockerId)).toEqual([copy('h2', 'id-victim', OLD).dockerId]);
    expect([...h1.stops, ...h2.stops]).toEqual([]);
    expect(placementEvents('id-victim')).toEqual([]);
  });

  it('reports a container that stopped running on its online host, and restarts nothing', async () => {
    const h1 = await fakeHost('h1', [copy('h1', 'id-lost', OLD)]);
    await startGuard();
    await new Promise((r) => setTimeout(r, 300)); // a few checks see it running
    // It exits (an operator's docker stop): the host publishes its list.
    const client = await connectBroker({ url: broker.url, clientId: 'itest-h1-list', reconnectPeriodMs: 0 });
    await publishJson(client, topics.hostContainers('h1'), { v: 1, hostId: 'h1', at: new Date().toISOString(), containers: [copy('h1', 'id-lost', OLD, { state: 'exited' })] }, { retain: true });
    await closeBroker(client);
    const lost = (await events.next('a NOT_RUNNING event for id-lost', (m) => m.json?.code === 'NOT_RUNNING' && m.json?.herdId === 'id-lost')).json;
    expect(lost).toMatchObject({ kind: 'placement', hosts: ['h1'], container: 'lost' });
    expect(lost.message).toContain('not restarted automatically');
    await new Promise((r) => setTimeout(r, 500));
    expect(placementEvents('id-lost').map((e) => e.code)).toEqual(['NOT_RUNNING']);
    expect(h1.stops).toEqual([]);
  });
});
