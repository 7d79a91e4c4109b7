/**
 * The compute daemon: one per host. Publishes the host's status (retained, with an
 * "offline" last will) and its Herd-managed containers, and executes commands from the
 * host's command topic.
 */
import { brokerCredentials } from '../protocol/config.ts';
import { computeClientId } from '../protocol/access.ts';
import { newRegistry, serveMetrics, type MetricsServer } from '../protocol/metrics-endpoint.ts';
import { registerComputeMetrics } from './compute-metrics.ts';
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
import { killRuncJobs } from './migration/runc-jobs.ts';
import { MigrationStore } from './migration/migration-store.ts';
import { fenceTarget } from './migration/fence.ts';
import { KeyedLock } from './migration/keyed-lock.ts';
import { migrationsHolding, withOperatorClaim, type ContainerClaims } from './migration/container-claims.ts';
import { Reconciler } from './migration/reconciler.ts';
import { announceEnd, resolveInDoubt, rollBackSource, rollForward } from './migration/source-settle.ts';
import { SerialQueue } from './migration/serial-queue.ts';
import { SourceMigration } from './migration/source-side.ts';
import { SshPool } from './migration/ssh-pool.ts';
import { abortTarget, checkTarget, commitTarget, migrationStatus, prepareTarget, restoreTarget } from './migration/target-side.ts';
import { announceAddress } from './runtime/announce-address.ts';
import { addressesInUse, assertAddressFree, chooseAddress, isSharedL2Driver } from './runtime/shared-network-address.ts';
import type { ContainerRuntime, RuntimeInfo } from './runtime/container-runtime.ts';
import { DIRECT_RESTORE_RUNTIME, resolveRestorePath } from './runtime/direct-restore.ts';
import { assertCompressionAvailable } from './migration/ssh-transfer.ts';
import type { RestorePath } from '../protocol/messages.ts';
import { coalesced } from '../protocol/coalesced.ts';

/** How long one container-list publish may wait for the broker's acknowledgement. */
const PUBLISH_TIMEOUT_MS = 10_000;

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
  const clientId = computeClientId(hostId);
  let client: MqttClient | undefined;
  let server: CommandServer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopWatching: (() => void) | undefined;
  let startedAt: string | undefined;
  let runtimeInfo: RuntimeInfo | undefined;
  let criuVersion: string | undefined;
  let restorePath: RestorePath = 'docker';

  /** How peers reach this host's sshd (transfers, and fencing its migrations when this daemon is gone: fence.ts): in every status, the offline ones too. */
  const reachability = () => ({ address: config.ssh.address, sshPort: config.ssh.port });

  const onlineStatus = (): HostStatus => {
    const status: HostStatus = { ...reachability(), v: PROTOCOL_VERSION, hostId, state: 'online', since: startedAt ?? new Date().toISOString() };
    if (runtimeInfo !== undefined) Object.assign(status, { dockerVersion: runtimeInfo.dockerVersion, restoreWith: restorePath });
    if (criuVersion !== undefined) status.criuVersion = criuVersion;
    if (config.cpus !== undefined) status.cpus = [...config.cpus];
    return status;
  };

  // One at a time: two overlapping publishes could retain an older list after a newer one
  // (a migrated container would stay listed on its source until the next interval).
  const publishContainers = coalesced(async (): Promise<void> => {
    if (client === undefined || !client.connected) return;
    let containers: ContainerSummary[];
    try {
      containers = await runtime.list(hostId);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot list containers');
      return;
    }
    // A container taking part in a migration says so (the control loop counts it as in flight):
    // the source's copy while this host migrates it or holds its unsettled record, a target's
    // copy until the migration commits.
    const held = migrationsHolding(claims);
    for (const c of containers) {
      const migrationId = held.get(c.herdId);
      if (migrationId !== undefined) c.migrationId = migrationId;
    }
    const message: HostContainers = { v: PROTOCOL_VERSION, hostId, at: new Date().toISOString(), containers };
    // Bounded: a publish held by a lost connection must not hold the next ones (the client still sends it, in order).
    let timer: NodeJS.Timeout | undefined;
    const unacknowledged = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not acknowledged within ${PUBLISH_TIMEOUT_MS} ms`)), PUBLISH_TIMEOUT_MS)));
    await Promise.race([publishJson(client, topics.hostContainers(hostId), message, { retain: true }), unacknowledged])
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not publish the container list (published again at the next change or interval)'))
      .finally(() => clearTimeout(timer));
  });

  const store = new MigrationStore(config.stateDir);
  const criu = new SerialQueue();
  const registry = newRegistry();
  registerComputeMetrics(registry, { store, criu });
  let metricsServer: MetricsServer | undefined;
  const addressing = new SerialQueue();
  const ssh = new SshPool({ user: config.ssh.user, privateKeyPath: config.ssh.privateKeyPath, knownHostsPath: config.ssh.knownHostsPath });
  let rpc: CommandClient | undefined;
  let view: ClusterView | undefined;
  let migration: MigrationContext | undefined;
  const inFlight = new Map<string, string>();
  /** Stop, remove, checkpoint and restore wait for no migration (refused while one holds the container), and no migration starts during them. */
  const claims: ContainerClaims = { hostId, store, inFlight, operatorCommands: new Map() };
  const locks = new KeyedLock();
  let stopping = false;
  let reconciler: Reconciler | undefined;
  const migrations = (): MigrationContext => {
    if (migration === undefined) throw new HerdError('HOST_OFFLINE', `compute daemon of ${hostId} is still starting`);
    return migration;
  };

  const handlers: CommandHandlers = {
    'host.info': async () => ({ ...onlineStatus(), runtime: await runtime.info() }),
    'container.list': async () => runtime.list(hostId),
    'container.run': async (cmd) => {
      const spec = { ...cmd.args, herdId: cmd.args.herdId ?? newHerdId() };
      const createAndStart = async (): Promise<string> => {
        // On a shared L2 network (macvlan/ipvlan) a migrated container keeps its address, which
        // the IPAM of the host that gave it out then thinks free: the address is chosen (or an
        // explicit one checked) against the whole cluster and pinned, never left to Docker.
        const attachment = spec.network;
        if (attachment !== undefined) {
          const net = await runtime.networkInfo(attachment.network);
          if (isSharedL2Driver(net.driver) && net.subnet !== undefined) {
            if (view === undefined) throw new HerdError('HOST_OFFLINE', `compute daemon of ${hostId} is still starting`);
            const inUse = addressesInUse(view.containers(), net.addressesInUse, hostId);
            if (attachment.ip !== undefined) assertAddressFree(attachment.ip, inUse, { network: attachment.network, gateway: net.gateway });
            else spec.network = { ...attachment, ip: chooseAddress({ network: attachment.network, subnet: net.subnet, ipRange: net.ipRange, gateway: net.gateway, inUse }) };
          }
        }
        const id = await runtime.create(spec);
        try {
          await runtime.start(id);
        } catch (err) {
          await runtime.remove(id, true).catch(() => undefined);
          throw err;
        }
        return id;
      };
      // Until started, a pinned address is nowhere in Docker's view: one run at a time on a network, so two cannot pick the same one.
      const dockerId = spec.network === undefined ? await createAndStart() : await addressing.run(createAndStart, { timeoutMs: 120_000 });
      log.info({ herdId: spec.herdId, name: spec.name, dockerId, ip: spec.network?.ip }, 'container started');
      if (spec.network !== undefined) await announceAddress(runtime, dockerId, hostId, log);
      await publishContainers();
      return runtime.inspect(dockerId, hostId).then(({ spec: _spec, ...summary }) => summary);
    },
    'container.stop': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      await withOperatorClaim(claims, c.herdId, c.name, 'stopped', () => runtime.stop(c.dockerId, cmd.args.timeoutSeconds));
      await publishContainers();
      return { herdId: c.herdId, name: c.name };
    },
    'container.remove': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      await withOperatorClaim(claims, c.herdId, c.name, 'removed', async () => {
        if (c.running && cmd.args.force !== true) {
          throw new HerdError('CONFLICT', `container "${c.name}" is running; stop it first or pass force`);
        }
        await runtime.remove(c.dockerId, cmd.args.force ?? false);
      });
      await publishContainers();
      return { herdId: c.herdId, name: c.name };
    },
    'container.checkpoint': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      const checkpointId = cmd.args.checkpointId ?? `cp-${Date.now()}`;
      await withOperatorClaim(claims, c.herdId, c.name, 'checkpointed', () => criu.run(() => runtime.checkpoint(c.dockerId, checkpointId, { exit: cmd.args.leaveRunning !== true }), { onTimeout: () => killRuncJobs(c.dockerId) }));
      await publishContainers();
      return { herdId: c.herdId, name: c.name, checkpointId, path: runtime.checkpointPath(c.dockerId, checkpointId) };
    },
    'container.restore': async (cmd) => {
      const c = await runtime.inspect(cmd.args.container, hostId);
      await withOperatorClaim(claims, c.herdId, c.name, 'restored', async () => {
        if (c.running) throw new HerdError('CONFLICT', `container "${c.name}" is running; checkpoint it (without leaveRunning) first`);
        await criu.run(() => runtime.startFromCheckpoint(c.dockerId, cmd.args.checkpointId), { onTimeout: () => killRuncJobs(c.dockerId) });
      });
      await publishContainers();
      return { herdId: c.herdId, name: c.name };
    },
    'migration.start': async (cmd) => new SourceMigration(migrations(), cmd.args).run(),
    'migration.check': async (cmd) => checkTarget(migrations(), cmd.args),
    'migration.prepare': async (cmd) => prepareTarget(migrations(), cmd.args, cmd.from),
    'migration.restore': async (cmd) => {
      const result = await restoreTarget(migrations(), cmd.args, cmd.from);
      // Fault injection (tests): the restore happened, its reply is lost or late.
      if (readFaults(config.stateDir).has('drop-restore-reply')) return new Promise<never>(() => undefined);
      if (readFaults(config.stateDir).has('delay-restore-reply')) await new Promise((r) => setTimeout(r, 30_000));
      return result;
    },
    'migration.abort': async (cmd) => abortTarget(migrations(), cmd.args, cmd.from),
    'migration.commit': async (cmd) => commitTarget(migrations(), cmd.args, cmd.from),
    'migration.status': async (cmd) => migrationStatus(migrations(), cmd.args.migrationId),
    'migration.rollback': async (cmd) => {
      const ctx = migrations();
      const id = cmd.args.migrationId;
      const settled = ctx.locks.tryRun(id, async () => {
        const record = store.get('source', id);
        if (record === undefined) return undefined;
        const outcome =
          record.phase === 'restored' ? await rollForward(ctx, record)
          : record.phase === 'restoring' ? await resolveInDoubt(ctx, record)
          : await rollBackSource(ctx, record, new HerdError('ROLLED_BACK', `rolled back on request${cmd.args.reason ? ` (${cmd.args.reason})` : ''}`));
        announceEnd(ctx, record, outcome, `an operator's request to ${hostId}`);
        return outcome;
      });
      if (settled === undefined) throw new HerdError('ALREADY_MIGRATING', `migration ${id} is still running on ${hostId}; it rolls back by itself on failure`);
      const outcome = await settled;
      if (outcome === undefined) return { ...migrationStatus(ctx, id), outcome: 'nothing to do: not in flight here' };
      return { ...migrationStatus(ctx, id), outcome };
    },
  };

  return {
    async start() {
      if (config.metrics.enabled) metricsServer = await serveMetrics(registry, config.metrics, log);
      runtimeInfo = await runtime.info();
      restorePath = resolveRestorePath(config.docker.restoreWith, runtimeInfo);
      await assertCompressionAvailable(config.transferCompression);
      criuVersion = await deps.criuVersion?.().catch(() => undefined);
      startedAt = new Date().toISOString();
      client = await connectBrokerPatiently({
        url: config.broker.url,
        clientId,
        ...brokerCredentials(config.broker),
        // The offline statuses keep what a peer needs to fence this host over SSH when its daemon is gone.
        will: { topic: topics.hostStatus(hostId), payload: { ...reachability(), v: PROTOCOL_VERSION, hostId, state: 'offline', since: startedAt, reason: 'connection lost' } satisfies HostStatus },
      });
      const c = client;
      // Our last will may have overwritten the retained status: say "online" on every (re)connect.
      const announce = () => {
        publishJson(c, topics.hostStatus(hostId), onlineStatus(), { retain: true })
          .then(() => publishContainers())
          .catch((err: unknown) => log.warn({ err: String(err) }, 'cannot publish status'));
      };
      // Attached once connected: every 'connect' from here on is a reconnect.
      c.on('connect', () => {
        log.info('broker connection back');
        announce();
      });
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
        operatorCommands: claims.operatorCommands,
        publishContainers,
        publishEvent: (event) => publishJson(c, topics.migrationEvents(event.migrationId), event),
        faults: () => readFaults(config.stateDir),
        sharedPaths: config.sharedPaths,
        preCopyFilesystem: config.preCopyFilesystem,
        preCopyFilesystemMinBytes: config.preCopyFilesystemMinBytes,
        preCopyMemory: config.preCopyMemory,
        preCopyMemoryMinBytes: config.preCopyMemoryMinBytes,
        transferCompression: config.transferCompression,
        restorePath,
        locks,
        stopping: () => stopping,
        fence: async (targetHost, migrationId) => {
          const t = view?.host(targetHost);
          return fenceTarget(ssh.peer(t?.address ?? targetHost, t?.sshPort ?? 22), migrationId);
        },
      };
      // Serve first: settling an interrupted migration may need this host's answers (and a peer's).
      server = await serveCommands(c, hostId, clientId, handlers, log, { limits: config.commands });
      announce();
      reconciler = new Reconciler(migration, config.reconcileIntervalSeconds * 1000);
      reconciler.start();
      timer = setInterval(() => void publishContainers(), config.containersIntervalSeconds * 1000);
      // Changes made outside Herd (docker rm, a crash) reach the retained list at once, not at the next interval.
      let pending: NodeJS.Timeout | undefined;
      stopWatching = runtime.watchChanges?.(() => {
        if (pending === undefined) pending = setTimeout(() => ((pending = undefined), void publishContainers()), 200);
      });
      log.info({ hostId, broker: config.broker.url, docker: runtimeInfo.dockerVersion, criu: criuVersion, restoreWith: restorePath }, 'compute daemon started');
      if (restorePath === 'docker' && config.docker.restoreWith === 'auto') log.warn(`Docker has no "${DIRECT_RESTORE_RUNTIME}" runtime: restores go through Docker's copies of the images (slower; see docs/benchmark-migration.md)`);
    },
    async close() {
      // Graceful: no new migration; those in flight end (done or rolled back) before the daemon goes.
      stopping = true;
      if (!(await locks.idle(config.shutdownGraceSeconds * 1000))) log.warn('migrations still in flight at shutdown: the reconciler settles them at the next start');
      await reconciler?.stop();
      if (timer !== undefined) clearInterval(timer);
      stopWatching?.();
      await server?.close();
      await rpc?.close();
      await view?.close();
      ssh.close();
      await metricsServer?.close();
      if (client !== undefined) {
        const offline: HostStatus = { ...reachability(), v: PROTOCOL_VERSION, hostId, state: 'offline', since: new Date().toISOString(), reason: 'daemon stopped' };
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
