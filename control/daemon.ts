/**
 * The control daemon: runs the embedded MQTT broker (unless an external one is
 * configured), watches the cluster and runs the control loop (windows → policies → plan →
 * executor) with, beside it, the exactly-once placement check (loop/placement-guard.ts:
 * duplicates stopped, lost containers reported). It serves the `control.*` commands on
 * herd/v1/control/{nodeId}/commands, publishes what the loop decides on
 * herd/v1/control/{nodeId}/events and keeps a retained status (last will: offline) on
 * herd/v1/control/{nodeId}/status.
 */
import { brokerCredentials, readConfigBytes } from '../protocol/config.ts';
import { controlClientId } from '../protocol/access.ts';
import { newRegistry, serveMetrics, type MetricsServer } from '../protocol/metrics-endpoint.ts';
import { registerControlMetrics } from './control-metrics.ts';
import { serveDashboard, type DashboardServer } from './dashboard/dashboard-server.ts';
import { dashboardState, feedLiveState } from './dashboard/feed.ts';
import { LiveState } from './dashboard/live-state.ts';
import { loadUsersFile, readSecretFile, type UserEntry } from '../protocol/credentials.ts';
import type { Logger } from 'pino';
import { closeBroker, connectBroker, publishJson, type MqttClient } from '../protocol/mqtt.ts';
import { CommandClient, serveCommands, type CommandServer } from '../protocol/rpc.ts';
import { PROTOCOL_VERSION, type ControlEvent, type ControlStatus } from '../protocol/messages.ts';
import { topics } from '../protocol/topics.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from './broker/embedded-broker.ts';
import { watchCluster, type ClusterView } from '../protocol/cluster-view.ts';
import type { ControlConfig } from './config.ts';
import { ControlLoop } from './loop/control-loop.ts';
import { PlacementGuard } from './loop/placement-guard.ts';

export interface ControlDaemon {
  start(): Promise<void>;
  close(): Promise<void>;
  /** Takes the users file again (SIGHUP): the embedded broker admits its identities and closes the sessions of changed ones. */
  reload(): Promise<void>;
  status(): { brokerUrl?: string; hosts: number; online: number };
  /** URL clients use to reach the broker this daemon uses. */
  brokerUrl(): string;
  /** The control loop, once started with the loop enabled. */
  loop(): ControlLoop | undefined;
  /** Where GET /metrics is served, when metrics are on. */
  metricsUrl(): string | undefined;
  /** The web dashboard's URL, when it is on. */
  dashboardUrl(): string | undefined;
}

export function buildControlDaemon(config: ControlConfig, deps: { log: Logger }): ControlDaemon {
  const { log } = deps;
  let broker: EmbeddedBroker | undefined;
  /** The broker's identities (broker.auth.usersFile), taken again on SIGHUP. */
  let users: UserEntry[] | undefined;
  const registry = newRegistry();
  let metricsServer: MetricsServer | undefined;
  let client: MqttClient | undefined;
  let view: ClusterView | undefined;
  let url: string | undefined;
  let rpc: CommandClient | undefined;
  let loop: ControlLoop | undefined;
  let guard: PlacementGuard | undefined;
  let server: CommandServer | undefined;
  let dashboard: DashboardServer | undefined;
  let stopFeed: (() => Promise<void>) | undefined;
  const live = new LiveState();
  const startedAt = new Date().toISOString();

  const publishStatus = () => {
    if (client === undefined || !client.connected) return;
    const s = loop?.status();
    const status: ControlStatus = {
      v: PROTOCOL_VERSION,
      nodeId: config.nodeId,
      state: 'online',
      since: startedAt,
      ...(s === undefined ? {} : { mode: s.mode, paused: s.paused, draining: s.draining }),
      ...(s?.pausedReason === undefined ? {} : { pausedReason: s.pausedReason }),
      ...(s?.lastEvaluationAt === undefined ? {} : { lastEvaluationAt: s.lastEvaluationAt }),
      ...(s?.nextEvaluationAt === undefined ? {} : { nextEvaluationAt: s.nextEvaluationAt }),
      ...(dashboard === undefined ? {} : { dashboardUrl: dashboard.url }),
    };
    publishJson(client, topics.controlStatus(config.nodeId), status, { retain: true }).catch((err: unknown) => log.warn({ err: String(err) }, 'could not publish control status'));
  };

  return {
    async start() {
      if (config.metrics.enabled) metricsServer = await serveMetrics(registry, config.metrics, log);
      // The broker's identities: who the embedded broker admits, and who may act on the dashboard.
      users = config.broker.auth.usersFile === undefined ? undefined : loadUsersFile(config.broker.auth.usersFile);
      if (config.broker.embedded) {
        broker = await startEmbeddedBroker(
          {
            host: config.broker.host,
            port: config.broker.port,
            maxPacketBytes: config.broker.maxPacketBytes,
            ...(users === undefined ? {} : { users }),
            ...(config.broker.tls === undefined ? {} : { tls: { cert: readConfigBytes(config.broker.tls.certFile, 'broker.tls.certFile'), key: Buffer.from(readSecretFile(config.broker.tls.keyFile, 'broker TLS key')) } }),
          },
          log,
        );
        url = broker.url;
      } else {
        url = config.broker.url as string;
      }
      const clientId = controlClientId(config.nodeId);
      client = await connectBroker({
        url,
        clientId,
        ...brokerCredentials(config.broker),
        will: { topic: topics.controlStatus(config.nodeId), payload: { v: PROTOCOL_VERSION, nodeId: config.nodeId, state: 'offline', since: startedAt } satisfies ControlStatus },
      });
      client.on('error', (err) => log.warn({ err: err.message }, 'broker error'));
      client.on('connect', publishStatus);
      view = await watchCluster(client, log);
      const seen = new Map<string, string>();
      const report = () => {
        for (const h of view?.hosts() ?? []) {
          if (seen.get(h.hostId) !== h.state) log.info({ hostId: h.hostId, state: h.state, since: h.since }, 'host state');
          seen.set(h.hostId, h.state);
        }
      };
      client.on('message', report);
      report();
      if (config.loop.enabled) {
        rpc = await CommandClient.create(client, clientId, log);
        const c = client;
        const metrics = registerControlMetrics(registry, () => loop?.latestSnapshot());
        const publishEvent = (e: ControlEvent) => {
          metrics.observe(e);
          live.control(e);
          publishJson(c, topics.controlEvents(config.nodeId), e).catch((err: unknown) => log.warn({ err: String(err) }, 'could not publish a control event'));
        };
        loop = new ControlLoop(config.loop, {
          session: { client: c, rpc, view },
          log,
          nodeId: config.nodeId,
          publishEvent,
          onStateChange: publishStatus,
        });
        const l = loop;
        server = await serveCommands(
          client,
          config.nodeId,
          clientId,
          {
            'control.status': async () => l.status(),
            'control.plan': async (cmd) => l.planOnly(cmd.args.policy),
            'control.evaluate': async () => {
              const e = await l.evaluateNow('manual');
              return { evaluationId: e.evaluationId, policy: e.plan.policy, proposed: e.plan.moves.length, allowed: e.allowed.moves, sent: e.sent, annotations: e.allowed.annotations };
            },
            'control.history': async (cmd) => l.historyReply(cmd.args.limit ?? 100, cmd.args.container),
            'control.events': async (cmd) => ({ events: l.recentEvents(cmd.args.limit ?? 100) }),
            'control.pause': async (cmd) => {
              await l.pause(cmd.args.reason);
              return l.status();
            },
            'control.resume': async () => {
              await l.resume();
              return l.status();
            },
            'control.drain': async (cmd) => l.drain(cmd.args.host, cmd.args.cancel === true),
          },
          log,
          { topic: topics.controlCommands(config.nodeId), limits: config.commands },
        );
        await loop.start();
        // Exactly-once check: duplicates are stopped (a repair, not a move: done while paused too;
        // held in recommend mode, where Herd only reports), lost containers reported.
        const holdRepairs = () => (l.status().mode !== 'act' ? 'recommend mode' : undefined);
        guard = new PlacementGuard({ view, rpc, log, nodeId: config.nodeId, publishEvent: (e) => l.keepEvent(e), holdRepairs });
        guard.start();
      }
      if (config.dashboard.enabled) {
        const v = view;
        stopFeed = await feedLiveState(client, v, live, log);
        const l = loop;
        dashboard = await serveDashboard(config.dashboard, {
          nodeId: config.nodeId,
          live,
          state: () => dashboardState(v, live, l, config.loop.policies),
          ...(l === undefined
            ? {}
            : {
                actions: {
                  pause: async (reason) => (await l.pause(reason), l.status()),
                  resume: async () => (await l.resume(), l.status()),
                  drain: (host, cancel) => l.drain(host, cancel),
                },
              }),
          ...(users === undefined ? {} : { users: () => users ?? [] }),
          ...(config.dashboard.tls === undefined ? {} : { tls: { cert: readConfigBytes(config.dashboard.tls.certFile, 'dashboard.tls.certFile'), key: Buffer.from(readSecretFile(config.dashboard.tls.keyFile, 'dashboard TLS key')) } }),
          log,
        });
      }
      publishStatus();
      log.info({ broker: url, embedded: config.broker.embedded, loop: config.loop.enabled ? config.loop.mode : 'off' }, 'control daemon started');
    },
    // A users file with errors changes nothing.
    async reload() {
      const file = config.broker.auth.usersFile;
      if (file === undefined) {
        log.info('SIGHUP: there is no users file to reload (broker.auth.usersFile)');
        return;
      }
      let next: UserEntry[];
      try {
        next = loadUsersFile(file);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'SIGHUP: the users file was not reloaded; the broker keeps the identities it had');
        return;
      }
      users = next;
      const closed = broker?.setUsers(next) ?? [];
      log.info({ usersFile: file, users: next.length, sessionsClosed: closed }, 'SIGHUP: users file reloaded');
    },
    async close() {
      await dashboard?.close();
      await stopFeed?.();
      await guard?.close();
      await loop?.close();
      await server?.close();
      await rpc?.close();
      await view?.close();
      if (client !== undefined) await closeBroker(client);
      await broker?.close();
      await metricsServer?.close();
      log.info('control daemon stopped');
    },
    status() {
      const hosts = view?.hosts() ?? [];
      return { ...(url === undefined ? {} : { brokerUrl: url }), hosts: hosts.length, online: hosts.filter((h) => h.state === 'online').length };
    },
    brokerUrl() {
      if (url === undefined) throw new Error('control daemon not started');
      return url;
    },
    loop: () => loop,
    metricsUrl: () => metricsServer?.url,
    dashboardUrl: () => dashboard?.url,
  };
}
