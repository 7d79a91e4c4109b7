/**
 * Two compute hosts in memory for the state-machine tests: a fake container runtime per
 * host (containers, their state and checkpoints), real migration stores in temp dirs,
 * and a fake peer link whose replies can be lost, whose commands can be undelivered, and
 * whose target can be offline. The real target-side handlers answer; the fence is done
 * the way fence.ts does it (marker first, then a remove that refuses a running copy).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { HerdError } from '../../../protocol/errors.ts';
import { silentLogger } from '../../../protocol/log.ts';
import type { ContainerSpec, ContainerSummary, HostStatus, MigrationEvent } from '../../../protocol/messages.ts';
import type { CheckpointOptions, ContainerDetails, ContainerRuntime, NetworkInfo, RuntimeInfo } from '../../runtime/container-runtime.ts';
import { HERD_MIGRATION_LABEL } from '../../runtime/container-runtime.ts';
import type { MigrationContext } from '../context.ts';
import type { FenceOutcome } from '../fence.ts';
import { KeyedLock } from '../keyed-lock.ts';
import { MigrationStore } from '../migration-store.ts';
import { SerialQueue } from '../serial-queue.ts';
import { abortTarget, checkTarget, commitTarget, migrationStatus } from '../target-side.ts';

export interface FakeContainer {
  dockerId: string;
  name: string;
  herdId: string;
  state: 'created' | 'running' | 'exited';
  labels: Record<string, string>;
  checkpoints: Set<string>;
  /** The Docker runtime it was created with (create's option). */
  runtime?: string;
  /** A start or restore succeeded once (Docker's StartedAt); set for a container added running. */
  started?: boolean;
}

let nextId = 0;

/** What the fake Docker does on a start from a checkpoint. */
export type RestoreBehaviour = 'ok' | 'fail' | 'fail-but-runs';

export class FakeRuntime implements ContainerRuntime {
  readonly containers = new Map<string, FakeContainer>();
  /** Docker not answering (restarting): every call fails with DOCKER_FAILED. */
  down = false;
  restore: RestoreBehaviour = 'ok';
  readonly root: string;

  constructor(readonly hostId: string) {
    this.root = mkdtempSync(`${tmpdir()}/herd-fake-${hostId}-`);
  }

  private check(): void {
    if (this.down) throw new HerdError('DOCKER_FAILED', `Docker of ${this.hostId} is not answering`);
  }

  add(c: Omit<FakeContainer, 'dockerId' | 'checkpoints' | 'labels'> & { labels?: Record<string, string>; checkpoints?: string[] }): FakeContainer {
    const container: FakeContainer = { dockerId: `d${++nextId}`.padEnd(12, '0'), labels: {}, started: c.state !== 'created', ...c, checkpoints: new Set(c.checkpoints ?? []) };
    this.containers.set(container.dockerId, container);
    return container;
  }

  running(): FakeContainer[] {
    return [...this.containers.values()].filter((c) => c.state === 'running');
  }

  private get(ref: string): FakeContainer {
    const c = this.containers.get(ref) ?? [...this.containers.values()].find((x) => x.name === ref || x.herdId === ref);
    if (c === undefined) throw new HerdError('UNKNOWN_CONTAINER', `no container ${ref} on ${this.hostId}`);
    return c;
  }

  async info(): Promise<RuntimeInfo> {
    this.check();
    return { dockerVersion: 'fake', dataRoot: this.root, storageDriver: 'overlay2', experimental: true, runtimes: ['runc'] };
  }
  async list(hostId: string): Promise<ContainerSummary[]> {
    this.check();
    return [...this.containers.values()].map((c) => ({ herdId: c.herdId, name: c.name, hostId, dockerId: c.dockerId, image: 'busybox', state: c.state }));
  }
  async inspect(ref: string, hostId: string): Promise<ContainerDetails> {
    this.check();
    const c = this.get(ref);
    return {
      herdId: c.herdId,
      name: c.name,
      hostId,
      dockerId: c.dockerId,
      image: 'busybox',
      state: c.state,
      running: c.state === 'running',
      spec: { herdId: c.herdId, name: c.name, image: 'busybox' },
      upperDir: `${this.root}/${c.dockerId}/upper`,
      mounts: [],
    };
  }
  async hasImage(): Promise<boolean> {
    this.check();
    return true;
  }
  async findByMigration(migrationId: string): Promise<string[]> {
    this.check();
    return [...this.containers.values()].filter((c) => c.labels[HERD_MIGRATION_LABEL] === migrationId).map((c) => c.dockerId);
  }
  async migrationCopies(): Promise<{ dockerId: string; migrationId: string; state: string }[]> {
    this.check();
    return [...this.containers.values()].filter((c) => c.labels[HERD_MIGRATION_LABEL] !== undefined).map((c) => ({ dockerId: c.dockerId, migrationId: c.labels[HERD_MIGRATION_LABEL]!, state: c.state }));
  }
  checkpointNames(dockerId: string): string[] {
    return [...(this.containers.get(dockerId)?.checkpoints ?? [])];
  }
  async create(spec: ContainerSpec & { herdId: string }, extraLabels: Record<string, string> = {}, options: { runtime?: string } = {}): Promise<string> {
    this.check();
    if ([...this.containers.values()].some((c) => c.name === spec.name)) throw new HerdError('CONFLICT', `name ${spec.name} in use on ${this.hostId}`);
    return this.add({ name: spec.name, herdId: spec.herdId, state: 'created', labels: extraLabels, ...(options.runtime === undefined ? {} : { runtime: options.runtime }) }).dockerId;
  }
  async start(dockerId: string): Promise<void> {
    this.check();
    Object.assign(this.get(dockerId), { state: 'running', started: true });
  }
  async stop(dockerId: string): Promise<void> {
    this.check();
    this.get(dockerId).state = 'exited';
  }
  async remove(dockerId: string, force = false): Promise<void> {
    this.check();
    const c = this.containers.get(dockerId);
    if (c === undefined) return;
    if (c.state === 'running' && !force) throw new HerdError('CONFLICT', 'running');
    this.containers.delete(dockerId);
  }
  async removeUnlessStarted(dockerId: string): Promise<'removed' | 'started' | 'gone'> {
    this.check();
    const c = this.containers.get(dockerId);
    if (c === undefined) return 'gone';
    if (c.state === 'running' || c.started === true) return 'started';
    this.containers.delete(dockerId);
    return 'removed';
  }
  async checkpoint(dockerId: string, checkpointId: string, options: CheckpointOptions): Promise<void> {
    this.check();
    const c = this.get(dockerId);
    options.onFrozen?.();
    c.checkpoints.add(checkpointId);
    if (options.exit) c.state = 'exited';
  }
  async thawAfterCheckpoint(): Promise<boolean> {
    return false;
  }
  async startFromCheckpoint(dockerId: string, checkpointId: string): Promise<void> {
    this.check();
    const c = this.get(dockerId);
    if (this.restore === 'fail' || !c.checkpoints.has(checkpointId)) throw new HerdError('RESTORE_FAILED', `restore of ${dockerId} from ${checkpointId} failed (fake)`);
    Object.assign(c, { state: 'running', started: true });
    if (this.restore === 'fail-but-runs') throw new HerdError('DOCKER_FAILED', 'the restore call failed but Docker ran it (fake)');
  }
  async deleteCheckpoint(dockerId: string, checkpointId: string): Promise<void> {
    this.check();
    this.containers.get(dockerId)?.checkpoints.delete(checkpointId);
  }
  checkpointPath(dockerId: string, checkpointId: string): string {
    return `${this.root}/${dockerId}/checkpoints/${checkpointId}`;
  }
  stagedImagesPath(dockerId: string, checkpointId: string): string {
    return `${this.root}/${dockerId}/herd-images/${checkpointId}`;
  }
  async exportFilesystem(): Promise<NodeJS.ReadableStream> {
    throw new HerdError('DOCKER_FAILED', 'not in the fake');
  }
  async freeBytes(): Promise<number> {
    return 10 * 2 ** 30;
  }
  async volumeInfo(): Promise<undefined> {
    this.check();
    return undefined;
  }
  async removeVolume(): Promise<void> {
    this.check();
  }
  async setRestartPolicy(): Promise<void> {
    this.check();
  }
  async networkInfo(): Promise<NetworkInfo> {
    throw new HerdError('DOCKER_FAILED', 'not in the fake');
  }
}

/** How the link to a host behaves for the next commands. */
export type LinkMode = 'ok' | 'lost-replies' | 'undelivered' | 'offline';

function noReply(message: string): HerdError {
  const error = new HerdError('TIMEOUT', message);
  Object.defineProperty(error, 'noReply', { value: true });
  return error;
}

export class FakeCluster {
  readonly runtimes = new Map<string, FakeRuntime>();
  readonly contexts = new Map<string, MigrationContext>();
  readonly links = new Map<string, LinkMode>();
  /** How the SSH fence of each host behaves: "real" does what fence.ts does. */
  readonly fences = new Map<string, 'real' | 'fails'>();
  /** The migration events each host published, in order. */
  readonly events = new Map<string, MigrationEvent[]>();

  constructor(hostIds: string[]) {
    for (const hostId of hostIds) {
      const runtime = new FakeRuntime(hostId);
      this.runtimes.set(hostId, runtime);
      this.links.set(hostId, 'ok');
      this.fences.set(hostId, 'real');
      this.contexts.set(hostId, this.context(hostId, runtime));
    }
  }

  ctx(hostId: string): MigrationContext {
    return this.contexts.get(hostId)!;
  }

  runtime(hostId: string): FakeRuntime {
    return this.runtimes.get(hostId)!;
  }

  private hostStatus(hostId: string): HostStatus {
    return { v: 1, hostId, state: this.links.get(hostId) === 'offline' ? 'offline' : 'online', since: new Date(0).toISOString() };
  }

  private async deliver(hostId: string, type: string, args: Record<string, unknown>): Promise<unknown> {
    const mode = this.links.get(hostId);
    if (mode === 'offline' || mode === 'undelivered') throw noReply(`no reply from ${hostId} to ${type} (fake link ${mode})`);
    const ctx = this.ctx(hostId);
    const migrationId = String(args.migrationId);
    let result: unknown;
    if (type === 'migration.check') result = await checkTarget(ctx, args as never);
    else if (type === 'migration.abort') result = await abortTarget(ctx, { migrationId, reason: String(args.reason ?? '') });
    else if (type === 'migration.commit') result = await commitTarget(ctx, { migrationId });
    else if (type === 'migration.status') result = migrationStatus(ctx, migrationId);
    else throw new HerdError('UNKNOWN_COMMAND', `fake link does not carry ${type}`);
    if (mode === 'lost-replies') throw noReply(`reply of ${hostId} to ${type} lost (fake link)`);
    return result;
  }

  /** The fence of fence.ts, done on the fake host: tombstone answer, marker, plain removes. */
  private async fence(hostId: string, migrationId: string): Promise<FenceOutcome> {
    if (this.fences.get(hostId) === 'fails') throw new HerdError('IN_DOUBT', `SSH to ${hostId} failed (fake)`);
    const ctx = this.ctx(hostId);
    const tomb = ctx.store.tombstone('target', migrationId);
    if (tomb !== undefined) return tomb.outcome === 'committed' ? 'running' : 'fenced';
    if (ctx.store.get('target', migrationId)?.phase === 'running') return 'running';
    const { writeFileSync } = await import('node:fs');
    writeFileSync(ctx.store.fenceFile(migrationId), '');
    const runtime = this.runtime(hostId);
    for (const id of await runtime.findByMigration(migrationId)) if ((await runtime.removeUnlessStarted(id)) === 'started') return 'running';
    return 'fenced';
  }

  private context(hostId: string, runtime: FakeRuntime): MigrationContext {
    const cluster = this;
    const rpc = {
      request: (target: string, type: string, args: Record<string, unknown>) => cluster.deliver(target, type, args),
    };
    const view = {
      hosts: () => [...cluster.runtimes.keys()].map((h) => cluster.hostStatus(h)),
      host: (h: string) => cluster.hostStatus(h),
      containers: () => [],
      requireOnline: (h: string) => cluster.hostStatus(h),
      onHostStatus: () => () => undefined,
      findContainer: () => {
        throw new HerdError('UNKNOWN_CONTAINER', 'fake');
      },
      close: async () => undefined,
    };
    return {
      hostId,
      runtime,
      store: new MigrationStore(mkdtempSync(`${tmpdir()}/herd-fake-state-${hostId}-`)),
      criu: new SerialQueue(),
      log: silentLogger,
      rpc: rpc as unknown as MigrationContext['rpc'],
      view: view as unknown as MigrationContext['view'],
      ssh: {} as MigrationContext['ssh'],
      publishContainers: async () => undefined,
      publishEvent: async (event: MigrationEvent) => {
        cluster.events.set(hostId, [...(cluster.events.get(hostId) ?? []), event]);
      },
      inFlight: new Map(),
      operatorCommands: new Map(),
      sharedPaths: [],
      preCopyFilesystem: false,
      preCopyFilesystemMinBytes: 0,
      preCopyMemory: false,
      preCopyMemoryMinBytes: 0,
      transferCompression: 'none',
      restorePath: 'docker',
      faults: () => new Set(),
      locks: new KeyedLock(),
      stopping: () => false,
      fence: (target, migrationId) => cluster.fence(target, migrationId),
    };
  }

  /** Running copies of a Herd id across the cluster. */
  runningCopies(herdId: string): string[] {
    return [...this.runtimes.entries()].flatMap(([h, r]) => r.running().filter((c) => c.herdId === herdId).map(() => h));
  }
}
