/**
 * The compute daemon: one per host. Publishes the host's status (retained, with an
 * "offline" last will) and its Herd-managed containers, and executes commands from the
 * host's command topic.
 */
import { brokerCredentials } from '../protocol/config.ts';
import { newHerdId } from '../protocol/ids.ts';
import type { Logger } from 'pino';
import { HerdError } from '../protocol/errors.ts';
import type { ContainerSummary, HostContainers, HostStatus } from '../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { closeBroker, connectBrokerPatiently, publishJson, type MqttClient } from '../protocol/mqtt.ts';
import { serveCommands, type CommandHandlers, type CommandServer } from '../protocol/rpc.ts';
import { topics } from '../protocol/topics.ts';
import { watchCluster, type ClusterView } from '../protocol/cluster-view.ts';
import { CommandClient } from '../protocol/rpc.ts';
import type { ComputeConfig } from './config.ts';
import type { MigrationContext } from './migration/context.ts';
import { readFaults } from './migration/faults.ts';
import { MigrationStore } from './migration/migration-store.ts';
import { recoverMigrations, recoverSource } from './migration/recovery.ts';
import { SerialQueue } from './migration/serial-queue.ts';
import { SourceMigration } from './migration/source-side.ts';
import { SshPool } from './migration/ssh-pool.ts';
import { abortTarget, checkTarget, prepareTarget, restoreTarget } from './migration/target-side.ts';
import { announceAddress } from './runtime/announce-address.ts';
import type { ContainerRuntime, RuntimeInfo } from './runtime/container-runtime.ts';

export interface ComputeDaemonDeps {
  runtime: ContainerRuntime;
  log: Logger;
  criuVersion?: () => Promise<string | undefined>;
}

export interface ComputeDaemon {
  start(): Promise<void>;
  close(): Promise<void>;
  status(): { hostId: string; connected: boolean; startedAt?: string };
}

export function buildComputeDaemon(config: ComputeConfig, deps: ComputeDaemonDeps): ComputeDaemon {
  const { runtime, log } = deps;
  const hostId = config.hostId;
  const clientId = `herd-compute-${hostId}`.slice(0, 64);
  let client: MqttClient | undefined;
  let server: CommandServer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopWatching: (() => void) | undefined;
  let startedAt: string | undefined;
  let runtimeInfo: RuntimeInfo | undefined;
  let criuVersion: string | undefined;

  const onlineStatus = (): HostStatus => {
    const status: HostStatus = {
      v: PROTOCOL_VERSION,
      hostId,
      state: 'online',
      since: startedAt ?? new Date().toISOString(),
      address: config.ssh.address,
      sshPort: config.ssh.port,
    };
    if (runtimeInfo !== undefined) status.dockerVersion = runtimeInfo.dockerVersion;
    if (criuVersion !== undefined) status.criuVersion = criuVersion;
    if (config.cpus !== undefined) status.cpus = [...config.cpus];
    return status;
  };

  const publishContainers = async (): Promise<void> => {
    if (client === undefined || !client.connected) return;
    let containers: ContainerSummary[];
    try {
      containers = await runtime.list(hostId);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot list containers');
      return;
    }
    // A container taking part in a migration says so (the control loop counts it as in flight):
    // the source's copy while this host migrates it, a target's prepared copy until it is restored.
    const targets = new Map(store.list().filter((r) => r.role === 'target').map((r) => [r.herdId, r.migrationId]));
    for (const c of containers) {
      const migrationId = inFlight.get(c.herdId) ?? targets.get(c.herdId);
      if (migrationId !== undefined) c.migrationId = migrationId;
    }
    const message: HostContainers = { v: PROTOCOL_VERSION, hostId, at: new Date().toISOString(), containers };
    await publishJson(client, topics.hostContainers(hostId), message, { retain: true });
  };

  const store = new MigrationStore(config.stateDir);
  const criu = new SerialQueue();
  const ssh = new SshPool({ user: config.ssh.user, privateKeyPath: config.ssh.privateKeyPath, knownHostsPath: config.ssh.knownHostsPath });
  let rpc: CommandClient | undefined;
  let view: ClusterView | undefined;
  let migration: MigrationContext | undefined;
  const inFlight = new Map<string, string>();
  const migrations = (): MigrationContext => {
    if (migration === undefined) throw new HerdError('HOST_OFFLINE', `compute daemon of ${hostId} is still starting`);
    return migration;
  };

  const handlers: CommandHandlers = {
    'host.info': async () => ({ ...onlineStatus(), runtime: await runtime.info() }),
    'container.list': async () => runtime.list(hostId),
    'container.run': async (cmd) => {
      const spec = { ...cmd.args, herdId: cmd.args.herdId ?? newHerdId() };
      const dockerId = await runtime.create(spec);
      try {
        await runtime.start(dockerId);
      } catch (err) {
        await runtime.remove(dockerId, true).catch(() => undefined);
        throw err;
      }
      log.info({ herdId: spec.herdId, name: spec.name, dockerId }, 'container started');
      if (spec.network !== undefined) await announceAddress(runtime, dockerId, hostId, log);
      await publishContainers();
      return runtime.inspect(dockerId, hostId).then(({ spec: _spec, ...summary }) => summary);
    },
    'container.stop': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      await runtime.stop(c.dockerId, cmd.args.timeoutSeconds);
      await publishContainers();
      return { herdId: c.herdId, name: c.name };
    },
    'container.remove': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      if (c.running && cmd.args.force !== true) {
        throw new HerdError('CONFLICT', `container "${c.name}" is running; stop it first or pass force`);
      }
      await runtime.remove(c.dockerId, cmd.args.force ?? false);
      await publishContainers();
      return { herdId: c.herdId, name: c.name };
    },
    'container.checkpoint': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      const checkpointId = cmd.args.checkpointId ?? `cp-${Date.now()}`;
      await criu.run(() => runtime.checkpoint(c.dockerId, checkpointId, { exit: cmd.args.leaveRunning !== true }));
      await publishContainers();
      return { herdId: c.herdId, name: c.name, checkpointId, path: runtime.checkpointPath(c.dockerId, checkpointId) };
    },
    'container.restore': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      if (c.running) throw new HerdError('CONFLICT', `container "${c.name}" is running; checkpoint it (without leaveRunning) first`);
      await criu.run(() => runtime.startFromCheckpoint(c.dockerId, cmd.args.checkpointId));
      await publishContainers();
      return { herdId: c.herdId, name: c.name };
    },
    'migration.start': async (cmd) => new SourceMigration(migrations(), cmd.args).run(),
    'migration.check': async (cmd) => checkTarget(migrations(), cmd.args),
    'migration.prepare': async (cmd) => prepareTarget(migrations(), cmd.args),
    'migration.restore': async (cmd) => restoreTarget(migrations(), cmd.args),
    'migration.abort': async (cmd) => abortTarget(migrations(), cmd.args),
    'migration.rollback': async (cmd) => {
      const record = store.get('source', cmd.args.migrationId);
      if (record === undefined) throw new HerdError('CONFLICT', `no migration ${cmd.args.migrationId} in flight with ${hostId} as its source`);
      if (inFlight.has(record.herdId)) throw new HerdError('ALREADY_MIGRATING', `migration ${cmd.args.migrationId} is still running; it rolls back by itself on failure`);
      return { outcome: await recoverSource(migrations(), record) };
    },
  };

  return {
    async start() {
      runtimeInfo = await runtime.info();
      criuVersion = await deps.criuVersion?.().catch(() => undefined);
      startedAt = new Date().toISOString();
      client = await connectBrokerPatiently({
        url: config.broker.url,
        clientId,
        ...brokerCredentials(config.broker),
        will: { topic: topics.hostStatus(hostId), payload: { v: PROTOCOL_VERSION, hostId, state: 'offline', since: startedAt, reason: 'connection lost' } satisfies HostStatus },
      });
      const c = client;
      // Our last will may have overwritten the retained status: say "online" on every (re)connect.
      const announce = () => {
        publishJson(c, topics.hostStatus(hostId), onlineStatus(), { retain: true })
          .then(() => publishContainers())
          .catch((err: unknown) => log.warn({ err: String(err) }, 'cannot publish status'));
      };
      c.on('connect', announce);
      c.on('offline', () => log.warn('broker connection lost; reconnecting'));
      c.on('error', (err) => log.warn({ err: err.message }, 'broker error'));
      rpc = await CommandClient.create(c, clientId, log);
      view = await watchCluster(c, log);
      migration = {
        hostId,
        runtime,
        store,
        criu,
        log,
        rpc,
        view,
        ssh,
        inFlight,
        publishContainers,
        publishEvent: (event) => publishJson(c, topics.migrationEvents(event.migrationId), event),
        faults: () => readFaults(config.stateDir),
        sharedPaths: config.sharedPaths,
      };
      await recoverMigrations(migration);
      server = await serveCommands(c, hostId, clientId, handlers, log);
      announce();
      timer = setInterval(() => void publishContainers(), config.containersIntervalSeconds * 1000);
      // Changes made outside Herd (docker rm, a crash) reach the retained list at once, not at the next interval.
      let pending: NodeJS.Timeout | undefined;
      stopWatching = runtime.watchChanges?.(() => {
        if (pending === undefined) pending = setTimeout(() => ((pending = undefined), void publishContainers()), 200);
      });
      log.info({ hostId, broker: config.broker.url, docker: runtimeInfo.dockerVersion, criu: criuVersion }, 'compute daemon started');
    },
    async close() {
      if (timer !== undefined) clearInterval(timer);
      stopWatching?.();
      await server?.close();
      await rpc?.close();
      await view?.close();
      ssh.close();
      if (client !== undefined) {
        const offline: HostStatus = { v: PROTOCOL_VERSION, hostId, state: 'offline', since: new Date().toISOString(), reason: 'daemon stopped' };
        if (client.connected) await publishJson(client, topics.hostStatus(hostId), offline, { retain: true }).catch(() => undefined);
        await closeBroker(client);
      }
      log.info('compute daemon stopped');
    },
    status() {
      return { hostId, connected: client?.connected ?? false, ...(startedAt === undefined ? {} : { startedAt }) };
    },
  };
}
