/** ContainerRuntime over the Docker Engine API (dockerode, API version negotiated by the daemon). */
import { execFile } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { HerdError } from '../../protocol/errors.ts';
import type { ContainerSpec, ContainerSummary } from '../../protocol/messages.ts';
import { freeze, freezerOf, thaw } from './cgroup-freezer.ts';
import { readNetwork, readSettings, writeSettings } from './docker-settings.ts';
import { HERD_ID_LABEL, HERD_MIGRATION_LABEL, type CheckpointOptions, type ContainerDetails, type ContainerRuntime, type NetworkInfo, type RuntimeInfo } from './container-runtime.ts';

const execFileAsync = promisify(execFile);

interface DockerApiError extends Error {
  statusCode?: number;
  json?: { message?: string };
}

function dockerMessage(err: unknown): string {
  const e = err as DockerApiError;
  return e.json?.message ?? e.message ?? String(err);
}

/** Maps a dockerode failure to a HerdError, keeping 404/409 meaningful. */
export function dockerError(err: unknown, what: string): HerdError {
  if (err instanceof HerdError) return err;
  const e = err as DockerApiError;
  if (e.statusCode === 404) return new HerdError('UNKNOWN_CONTAINER', `${what}: ${dockerMessage(err)}`, { cause: err });
  if (e.statusCode === 409) return new HerdError('CONFLICT', `${what}: ${dockerMessage(err)}`, { cause: err });
  return new HerdError('DOCKER_FAILED', `${what}: ${dockerMessage(err)}`, { cause: err });
}

function stripName(name: string | undefined): string {
  return (name ?? '').replace(/^\//, '');
}

/**
 * Deadline of Docker calls that should take a moment (inspect, list, create, start, remove):
 * a hung dockerd fails them instead of stalling a migration. Calls that legitimately take
 * long (checkpoint, restore, stop, export, a remove that waits for a restore, events) use
 * the client without one; CRIU jobs have their own deadline (the CRIU queue).
 */
const QUICK_CALL_DEADLINE_MS = 60_000;

export class DockerRuntime implements ContainerRuntime {
  readonly docker: Docker;
  private readonly quick: Docker;

  readonly socketPath: string;
  readonly dataRoot: string;

  constructor(private readonly options: { socketPath: string; dataRoot: string; execRoot: string; checkpointWith: 'runc' | 'docker' }) {
    this.socketPath = options.socketPath;
    this.dataRoot = options.dataRoot;
    this.docker = new Docker({ socketPath: options.socketPath });
    this.quick = new Docker({ socketPath: options.socketPath, timeout: QUICK_CALL_DEADLINE_MS });
  }

  async info(): Promise<RuntimeInfo> {
    try {
      const [version, info] = await Promise.all([this.quick.version(), this.quick.info() as Promise<Record<string, unknown>>]);
      return {
        dockerVersion: version.Version,
        dataRoot: String(info.DockerRootDir),
        storageDriver: String(info.Driver),
        experimental: Boolean((version as unknown as { Experimental?: boolean }).Experimental ?? info.ExperimentalBuild),
        runtimes: Object.keys((info.Runtimes as Record<string, unknown> | undefined) ?? {}),
      };
    } catch (err) {
      throw new HerdError('DOCKER_FAILED', `Docker daemon at ${this.socketPath} is not answering: ${dockerMessage(err)}`, { cause: err });
    }
  }

  async list(hostId: string): Promise<ContainerSummary[]> {
    let rows: Docker.ContainerInfo[];
    try {
      rows = await this.quick.listContainers({ all: true, filters: { label: [HERD_ID_LABEL] } });
    } catch (err) {
      throw dockerError(err, 'listing containers');
    }
    return rows.map((row) => {
      const networks = Object.values(row.NetworkSettings?.Networks ?? {});
      const net = networks[0];
      const summary: ContainerSummary = {
        herdId: row.Labels[HERD_ID_LABEL] ?? '',
        name: stripName(row.Names[0]),
        hostId,
        dockerId: row.Id,
        image: row.Image,
        state: row.State,
        createdAt: new Date(row.Created * 1000).toISOString(),
      };
      const health = /\((healthy|unhealthy|health: starting)\)/.exec(row.Status)?.[1];
      if (health !== undefined) summary.health = health;
      if (net?.IPAddress) summary.ip = net.IPAddress;
      if (net?.MacAddress) summary.mac = net.MacAddress;
      return summary;
    });
  }

  async inspect(ref: string, hostId: string): Promise<ContainerDetails> {
    let data: Docker.ContainerInspectInfo;
    try {
      data = await this.quick.getContainer(ref).inspect();
    } catch (err) {
      if ((err as DockerApiError).statusCode !== 404) throw dockerError(err, `inspecting container "${ref}"`);
      // Not a name or Docker id: try the Herd id label.
      const byLabel = await this.quick.listContainers({ all: true, filters: { label: [`${HERD_ID_LABEL}=${ref}`] } }).catch((e: unknown) => {
        throw dockerError(e, 'listing containers');
      });
      const first = byLabel[0];
      if (first === undefined) throw new HerdError('UNKNOWN_CONTAINER', `no container named "${ref}" (or with Herd id "${ref}") on host ${hostId}`);
      data = await this.quick.getContainer(first.Id).inspect();
    }
    const labels = data.Config.Labels ?? {};
    const herdId = labels[HERD_ID_LABEL];
    const name = stripName(data.Name);
    if (herdId === undefined) {
      throw new HerdError('NOT_MANAGED', `container "${name}" on host ${hostId} is not managed by Herd (it has no ${HERD_ID_LABEL} label)`);
    }
    const spec: ContainerSpec & { herdId: string } = {
      herdId,
      name,
      image: data.Config.Image,
      cmd: data.Config.Cmd ?? [],
      env: data.Config.Env ?? [],
      labels: Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('io.herd.'))),
    };
    if (data.Config.WorkingDir) spec.workingDir = data.Config.WorkingDir;
    if (data.Config.User) spec.user = data.Config.User;
    if (data.HostConfig.NanoCpus) spec.cpuLimitCores = data.HostConfig.NanoCpus / 1e9;
    if (data.HostConfig.Memory) spec.memoryLimitBytes = data.HostConfig.Memory;
    const notCarried = readSettings(data, spec);
    if ((data.HostConfig as { Init?: boolean | null }).Init === true && data.State.Running) {
      const problem = this.initMountProblem(data.Id);
      if (problem !== undefined) notCarried.push(problem);
    }
    const network = readNetwork(data, notCarried);
    if (network !== undefined) spec.network = network;
    const mounts = (data.Mounts ?? []).map((m) => ({ type: m.Type, ...(m.Name === undefined ? {} : { name: m.Name }), ...(m.Driver ? { driver: m.Driver } : {}), source: m.Source, destination: m.Destination, readOnly: m.RW === false }));
    const binds = mounts.filter((m) => m.type === 'bind').map((m) => ({ source: m.source, target: m.destination, ...(m.readOnly ? { readOnly: true } : {}) }));
    if (binds.length > 0) spec.binds = binds;
    const volumes = mounts.filter((m) => m.type === 'volume' && m.name !== undefined).map((m) => ({ name: m.name as string, target: m.destination, ...(m.readOnly ? { readOnly: true } : {}) }));
    if (volumes.length > 0) spec.volumes = volumes;
    const restart = data.HostConfig.RestartPolicy;
    if (restart?.Name && restart.Name !== 'no') {
      spec.restartPolicy = { name: restart.Name as 'always' | 'unless-stopped' | 'on-failure', ...(restart.Name === 'on-failure' && restart.MaximumRetryCount ? { maximumRetryCount: restart.MaximumRetryCount } : {}) };
    }
    const graph = data.GraphDriver?.Data as Record<string, string> | undefined;
    const details: ContainerDetails = {
      mounts,
      notCarried,
      herdId,
      name,
      hostId,
      dockerId: data.Id,
      image: data.Config.Image,
      state: data.State.Status,
      running: data.State.Running,
      createdAt: data.Created,
      spec,
    };
    if (data.State.Health?.Status) details.health = data.State.Health.Status;
    if (spec.network?.ip) details.ip = spec.network.ip;
    if (spec.network?.mac) details.mac = spec.network.mac;
    if (graph?.UpperDir) details.upperDir = graph.UpperDir;
    if (graph?.MergedDir) details.mergedDir = graph.MergedDir;
    if (graph?.LowerDir) details.lowerDirs = graph.LowerDir.split(':');
    if (data.State.Pid) details.pid = data.State.Pid;
    return details;
  }

  async findByMigration(migrationId: string): Promise<string[]> {
    try {
      const rows = await this.quick.listContainers({ all: true, filters: { label: [`${HERD_MIGRATION_LABEL}=${migrationId}`] } });
      return rows.map((r) => r.Id);
    } catch (err) {
      throw dockerError(err, 'listing containers');
    }
  }

  async migrationCopies(): Promise<{ dockerId: string; migrationId: string; state: string }[]> {
    try {
      const rows = await this.quick.listContainers({ all: true, filters: { label: [HERD_MIGRATION_LABEL] } });
      return rows.map((r) => ({ dockerId: r.Id, migrationId: r.Labels[HERD_MIGRATION_LABEL] ?? '', state: r.State }));
    } catch (err) {
      throw dockerError(err, 'listing containers');
    }
  }

  checkpointNames(dockerId: string): string[] {
    try {
      return readdirSync(`${this.dataRoot}/containers/${dockerId}/checkpoints`);
    } catch {
      return [];
    }
  }

  async hasImage(image: string): Promise<boolean> {
    try {
      await this.quick.getImage(image).inspect();
      return true;
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) return false;
      throw dockerError(err, `inspecting image "${image}"`);
    }
  }

  async create(spec: ContainerSpec & { herdId: string }, extraLabels: Record<string, string> = {}, createOptions: { runtime?: string } = {}): Promise<string> {
    if (!(await this.hasImage(spec.image))) {
      throw new HerdError('IMAGE_MISSING', `image "${spec.image}" is not present on this host (load it with docker load, or provision the host)`);
    }
    const options: Docker.ContainerCreateOptions = {
      name: spec.name,
      Image: spec.image,
      Labels: { ...(spec.labels ?? {}), ...extraLabels, [HERD_ID_LABEL]: spec.herdId },
      HostConfig: createOptions.runtime === undefined ? {} : { Runtime: createOptions.runtime },
    };
    if (spec.cmd !== undefined && spec.cmd.length > 0) options.Cmd = spec.cmd;
    writeSettings(spec, options);
    if (spec.env !== undefined) options.Env = spec.env;
    if (spec.workingDir !== undefined) options.WorkingDir = spec.workingDir;
    if (spec.user !== undefined) options.User = spec.user;
    if (spec.cpuLimitCores !== undefined) options.HostConfig!.NanoCpus = Math.round(spec.cpuLimitCores * 1e9);
    if (spec.memoryLimitBytes !== undefined) options.HostConfig!.Memory = spec.memoryLimitBytes;
    const binds = [...(spec.binds ?? []).map((b) => `${b.source}:${b.target}${b.readOnly === true ? ':ro' : ''}`), ...(spec.volumes ?? []).map((v) => `${v.name}:${v.target}${v.readOnly === true ? ':ro' : ''}`)];
    if (binds.length > 0) options.HostConfig!.Binds = binds;
    if (spec.restartPolicy !== undefined) options.HostConfig!.RestartPolicy = { Name: spec.restartPolicy.name, ...(spec.restartPolicy.maximumRetryCount === undefined ? {} : { MaximumRetryCount: spec.restartPolicy.maximumRetryCount }) };
    if (spec.network === undefined) {
      options.HostConfig!.NetworkMode = 'none';
    } else {
      options.HostConfig!.NetworkMode = spec.network.network;
      const endpoint: Docker.EndpointSettings = {};
      if (spec.network.ip !== undefined) endpoint.IPAMConfig = { IPv4Address: spec.network.ip };
      options.NetworkingConfig = { EndpointsConfig: { [spec.network.network]: endpoint } };
      // Docker 20.10 takes the MAC address at container level (API < 1.44).
      if (spec.network.mac !== undefined) options.MacAddress = spec.network.mac;
    }
    try {
      const container = await this.quick.createContainer(options);
      return container.id;
    } catch (err) {
      throw dockerError(err, `creating container "${spec.name}"`);
    }
  }

  async start(dockerId: string): Promise<void> {
    try {
      await this.quick.getContainer(dockerId).start();
    } catch (err) {
      if ((err as DockerApiError).statusCode === 304) return; // already running
      throw dockerError(err, `starting container ${dockerId.slice(0, 12)}`);
    }
  }

  async stop(dockerId: string, timeoutSeconds = 10): Promise<void> {
    try {
      await this.docker.getContainer(dockerId).stop({ t: timeoutSeconds });
    } catch (err) {
      if ((err as DockerApiError).statusCode === 304) return; // already stopped
      throw dockerError(err, `stopping container ${dockerId.slice(0, 12)}`);
    }
  }

  async remove(dockerId: string, force = false): Promise<void> {
    try {
      await this.quick.getContainer(dockerId).remove({ force, v: true });
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) return; // already gone
      throw dockerError(err, `removing container ${dockerId.slice(0, 12)}`);
    }
  }

  async removeUnlessStarted(dockerId: string): Promise<'removed' | 'started' | 'gone'> {
    const container = this.docker.getContainer(dockerId);
    const state = await container.inspect().then(
      (d) => d.State,
      (e: unknown) => ((e as DockerApiError).statusCode === 404 ? undefined : Promise.reject(dockerError(e, `inspecting ${dockerId.slice(0, 12)}`))),
    );
    if (state === undefined) return 'gone';
    // Docker sets StartedAt only once a start (a restore included) succeeded; never started: the zero time.
    if (state.Running || !state.StartedAt.startsWith('0001-')) return 'started';
    try {
      await container.remove({ force: false, v: true });
      return 'removed';
    } catch (err) {
      const status = (err as DockerApiError).statusCode;
      if (status === 404) return 'gone';
      if (status === 409) {
        // A start that began after the inspect: Docker refuses the removal while it runs.
        const running = await container.inspect().then((d) => d.State.Running, (e: unknown) => ((e as DockerApiError).statusCode === 404 ? false : Promise.reject(dockerError(e, `inspecting ${dockerId.slice(0, 12)}`))));
        if (running) return 'started';
        // 409 for another reason (a removal already in progress): say so, it is retried.
      }
      throw dockerError(err, `removing container ${dockerId.slice(0, 12)} unless it started`);
    }
  }

  async checkpoint(dockerId: string, checkpointId: string, options: CheckpointOptions): Promise<void> {
    if (this.options.checkpointWith === 'runc') return this.checkpointWithRunc(dockerId, options.checkpointDir ?? this.checkpointPath(dockerId, checkpointId), options);
    // Docker's checkpoint freezes inside: the nearest moment before it is now.
    options.onFrozen?.();
    const container = this.docker.getContainer(dockerId) as Docker.Container & { createCheckpoint(opts: object): Promise<unknown> };
    try {
      await container.createCheckpoint({ CheckpointID: checkpointId, Exit: options.exit, ...(options.checkpointDir === undefined ? {} : { CheckpointDir: options.checkpointDir }) });
    } catch (err) {
      throw new HerdError('CHECKPOINT_FAILED', `checkpoint of ${dockerId.slice(0, 12)} failed: ${dockerMessage(err)}`, { cause: err });
    }
  }

  /**
   * Dumps with runc (and so CRIU, with /etc/criu/runc.conf) straight into `imageDir`, the
   * layout Docker's `start --checkpoint` reads. On failure runc thaws the container, which
   * keeps running. With `exit`, the container is killed after the dump and Docker sees it
   * exit, so that it can later be started from the checkpoint.
   */
  private async checkpointWithRunc(dockerId: string, imageDir: string, { exit, onFrozen, onDumped }: CheckpointOptions): Promise<void> {
    // runc creates the image dir itself (and fails for real if it cannot); CRIU's logs go to a temp work dir.
    const workDir = await mkdtemp(`${tmpdir()}/herd-criu-`);
    const args = ['--root', this.runcRoot, 'checkpoint', '--image-path', imageDir, '--work-path', workDir];
    if (!exit) args.push('--leave-running');
    args.push(dockerId);
    // Frozen here, so that CRIU does not wait for its own freeze's first 100 ms poll (cgroup-freezer.ts).
    const freezer = await freezerOf(this.runcStateFile(dockerId));
    const frozenHere = await freeze(freezer);
    try {
      onFrozen?.();
      await execFileAsync('runc', args, { timeout: 10 * 60_000 });
      // A dump that leaves the container running puts back the state CRIU found: frozen.
      if (frozenHere && !exit) await thaw(freezer);
    } catch (err) {
      // A failed dump leaves the cgroup as CRIU found it (or never touched it): the container runs on.
      if (frozenHere) await thaw(freezer);
      const log = await readFile(`${workDir}/dump.log`, 'utf8').catch(() => '');
      const tail = log.trim().split('\n').filter((l) => /Error|error/.test(l)).slice(-3).join(' | ');
      const stderr = String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim();
      throw new HerdError('CHECKPOINT_FAILED', `checkpoint of ${dockerId.slice(0, 12)} failed: ${stderr}${tail ? ` (CRIU: ${tail})` : ''}`, { cause: err });
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
    onDumped?.();
    if (!exit) return;
    // Docker learns of the exit through containerd (25-40 ms in the lab); wait so that a rollback can start it again.
    for (let i = 0; i < 200; i++) {
      const state = await this.quick.getContainer(dockerId).inspect().then((d) => d.State.Running).catch(() => false);
      if (!state) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new HerdError('CHECKPOINT_FAILED', `container ${dockerId.slice(0, 12)} was checkpointed but Docker still reports it running after 5 s`);
  }

  private get runcRoot(): string {
    return `${this.options.execRoot}/runtime-runc/moby`;
  }

  private runcStateFile(dockerId: string): string {
    return `${this.runcRoot}/${dockerId}/state.json`;
  }

  /**
   * Docker's init (--init) is bind-mounted from the daemon's init path, on Debian a symlink
   * (/usr/bin/docker-init -> tini-static). CRIU cannot restore a bind mount whose source is a
   * symlink (mount-v2: "Can't remount ... with MS_PRIVATE"), on the target nor back on the
   * source, so such a container is not migrated. Provisioning sets daemon.json's "init-path"
   * to the real file (ansible docker role, the lab), which containers created since then use.
   */
  private initMountProblem(dockerId: string): string | undefined {
    try {
      const state = JSON.parse(readFileSync(this.runcStateFile(dockerId), 'utf8')) as { config?: { mounts?: { source?: string; destination?: string }[] } };
      const source = state.config?.mounts?.find((m) => m.destination === '/sbin/docker-init')?.source;
      if (source === undefined || !lstatSync(source).isSymbolicLink()) return undefined;
      const real = realpathSync(source);
      return `Docker's init (--init) bind-mounted from the symlink ${source}, which CRIU cannot restore (set "init-path": "${real}" in Docker's daemon.json as Herd's provisioning does, restart Docker, recreate the container)`;
    } catch {
      return undefined; // no runc state to read (not running under this runtime root): nothing known against it
    }
  }

  async thawAfterCheckpoint(dockerId: string): Promise<boolean> {
    return thaw(await freezerOf(this.runcStateFile(dockerId)));
  }

  async startFromCheckpoint(dockerId: string, checkpointId: string): Promise<void> {
    // Docker rejects a JSON body on start: send the checkpoint as a query parameter only.
    try {
      await this.docker.getContainer(dockerId).start({ _query: { checkpoint: checkpointId }, _body: {} } as object);
    } catch (err) {
      throw new HerdError('RESTORE_FAILED', `restore of ${dockerId.slice(0, 12)} from checkpoint ${checkpointId} failed: ${dockerMessage(err)}`, { cause: err });
    }
  }

  async deleteCheckpoint(dockerId: string, checkpointId: string): Promise<void> {
    const container = this.quick.getContainer(dockerId) as Docker.Container & { deleteCheckpoint(id: string, opts?: object): Promise<unknown> };
    try {
      await container.deleteCheckpoint(checkpointId, {});
    } catch (err) {
      const status = (err as DockerApiError).statusCode;
      if (status === 404 || /no such file|not found/i.test(dockerMessage(err))) return;
      throw dockerError(err, `deleting checkpoint ${checkpointId}`);
    }
  }

  checkpointPath(dockerId: string, checkpointId: string): string {
    return `${this.dataRoot}/containers/${dockerId}/checkpoints/${checkpointId}`;
  }

  stagedImagesPath(dockerId: string, checkpointId: string): string {
    return `${this.dataRoot}/containers/${dockerId}/herd-images/${checkpointId}`;
  }

  async exportFilesystem(dockerId: string): Promise<NodeJS.ReadableStream> {
    try {
      return await this.docker.getContainer(dockerId).export();
    } catch (err) {
      throw dockerError(err, `exporting the filesystem of ${dockerId.slice(0, 12)}`);
    }
  }

  watchChanges(onChange: () => void): () => void {
    let stopped = false;
    let stream: NodeJS.ReadableStream | undefined;
    const follow = () => {
      if (stopped) return;
      this.docker.getEvents({ filters: { type: ['container'], label: [HERD_ID_LABEL] } }).then(
        (s) => {
          stream = s;
          s.on('data', () => onChange());
          // Docker restarted or the socket dropped: follow again.
          s.on('end', () => setTimeout(follow, 1000));
          s.on('error', () => undefined);
        },
        () => setTimeout(follow, 1000),
      );
    };
    follow();
    return () => {
      stopped = true;
      (stream as unknown as { destroy?: () => void } | undefined)?.destroy?.();
    };
  }

  async volumeInfo(name: string): Promise<{ mountpoint: string; driver: string; usedBy: string[] } | undefined> {
    try {
      const v = (await this.quick.getVolume(name).inspect()) as { Mountpoint: string; Driver: string };
      const users = await this.quick.listContainers({ all: true, filters: { volume: [name] } });
      return { mountpoint: v.Mountpoint, driver: v.Driver, usedBy: users.map((u) => u.Id) };
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) return undefined;
      throw dockerError(err, `inspecting volume "${name}"`);
    }
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await this.quick.getVolume(name).remove();
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) return;
      throw dockerError(err, `removing volume "${name}"`);
    }
  }

  async setRestartPolicy(dockerId: string, policy: { name: string; maximumRetryCount?: number }): Promise<void> {
    try {
      await this.quick.getContainer(dockerId).update({ RestartPolicy: { Name: policy.name, ...(policy.maximumRetryCount === undefined ? {} : { MaximumRetryCount: policy.maximumRetryCount }) } });
    } catch (err) {
      throw dockerError(err, `setting the restart policy of ${dockerId.slice(0, 12)} to "${policy.name}"`);
    }
  }

  async freeBytes(): Promise<number> {
    const s = await statfs(this.dataRoot);
    return Number(s.bavail) * Number(s.bsize);
  }

  async networkInfo(name: string): Promise<NetworkInfo> {
    let data: Docker.NetworkInspectInfo;
    let rows: Docker.ContainerInfo[];
    try {
      data = await this.quick.getNetwork(name).inspect();
      // Stopped containers have no endpoint (not in the inspect) but take their pinned address back when started.
      rows = await this.quick.listContainers({ all: true, filters: { network: [name] } });
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) throw new HerdError('DOCKER_FAILED', `no Docker network named "${name}" on this host`, { cause: err, retryable: false });
      throw dockerError(err, `inspecting network "${name}"`);
    }
    const ipam = (data.IPAM?.Config ?? []).find((c) => c.Subnet !== undefined && !c.Subnet.includes(':'));
    const bare = (a: string | undefined) => (a ?? '').split('/')[0] ?? '';
    const addresses = new Set<string>([
      ...Object.values(data.Containers ?? {}).map((c) => bare(c.IPv4Address)),
      ...rows.flatMap((r) => {
        const endpoint = r.NetworkSettings?.Networks?.[data.Name];
        return [bare((endpoint?.IPAMConfig as { IPv4Address?: string } | null | undefined)?.IPv4Address), bare(endpoint?.IPAddress)];
      }),
      ...Object.values(ipam?.AuxiliaryAddresses ?? {}).map((a) => bare(a)),
    ]);
    addresses.delete('');
    const info: NetworkInfo = { driver: data.Driver, addressesInUse: [...addresses] };
    if (ipam?.Subnet) info.subnet = ipam.Subnet;
    if (ipam?.IPRange) info.ipRange = ipam.IPRange;
    if (ipam?.Gateway) info.gateway = bare(ipam.Gateway);
    return info;
  }
}
