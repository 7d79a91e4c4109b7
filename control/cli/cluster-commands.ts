/** Commands that talk to the cluster through the broker: hosts, containers, run, stop, rm. */
import { HerdError } from '../../protocol/errors.ts';
import { Command, InvalidArgumentError, Option } from 'commander';
import { newHerdId } from '../../protocol/ids.ts';
import type { ContainerSpec, ContainerSummary } from '../../protocol/messages.ts';
import { printJson, table, withBrokerOption, withSession } from './context.ts';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

export function registerClusterCommands(program: Command): void {
  withBrokerOption(program.command('hosts'))
    .description('list compute hosts and their state')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withSession(cmd, async ({ view }) => {
        const hosts = view.hosts();
        if (opts.json === true) return printJson(hosts);
        process.stdout.write(`${table(['HOST', 'STATE', 'SINCE', 'ADDRESS', 'DOCKER', 'CRIU', 'RESTORE', 'CPUS'], hosts.map((h) => [h.hostId, h.state, h.since, h.address ?? '', h.dockerVersion ?? '', h.criuVersion ?? '', h.restoreWith ?? '', (h.cpus ?? []).join(',')]))}\n`);
      });
    });

  withBrokerOption(program.command('containers'))
    .description('list Herd-managed containers and where they run')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withSession(cmd, async ({ view }) => {
        const containers = view.containers();
        if (opts.json === true) return printJson(containers);
        process.stdout.write(`${table(['NAME', 'HERD ID', 'HOST', 'STATE', 'IMAGE', 'IP'], containers.map((c) => [c.name, c.herdId, c.hostId, c.state, c.image, c.ip ?? '']))}\n`);
      });
    });

  withBrokerOption(program.command('run'))
    .description('start a Herd-managed container on a host')
    .requiredOption('--host <host>', 'compute host to run on')
    .requiredOption('--name <name>', 'container name (kept across migrations)')
    .option('--network <network>', 'Docker network (the lab\'s macvlan network is herd-lan); default: none')
    .option('--ip <ip>', 'fixed IPv4 address on that network')
    .option('-e, --env <NAME=value>', 'environment variable (repeatable)', collect)
    .option('--user <user>', 'user[:group] the process runs as (default: the image\'s, root)')
    .option('--cpus <cores>', 'CPU limit in cores', positiveNumber)
    .option('--memory <bytes>', 'memory limit in bytes', positiveNumber)
    .option('-v, --volume <name:/path[:ro]>', 'named Docker volume mounted at /path (repeatable; migrations carry its contents)', collect)
    .addOption(new Option('--restart <policy>', 'Docker restart policy (carried to the target of a migration)').choices(['no', 'always', 'unless-stopped', 'on-failure']))
    .option('--hostname <name>', 'host name inside the container')
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('--entrypoint <program>', "overrides the image's entrypoint (the command's arguments follow the image)")
    .option('-p, --publish <[ip:]hostPort:containerPort[/tcp|udp]>', 'publish a container port on the host (repeatable; on a network with Docker\'s port mapping, e.g. bridge)', collect)
    .option('--cap-add <cap>', 'add a Linux capability (repeatable; one that reaches beyond the container, such as SYS_ADMIN, keeps it from migrating)', collect)
    .option('--cap-drop <cap>', 'drop a Linux capability (repeatable)', collect)
    .option('--tmpfs <path[:options]>', 'mount a tmpfs (repeatable; a migration carries its contents)', collect)
    .option('--read-only', "mount the container's root filesystem read-only")
    .option('--init', "run Docker's init (tini) as pid 1")
    .option('--json', 'print JSON')
    .argument('<image>', 'image (e.g. herd/busybox)')
    .argument('[command...]', 'command and arguments (options after the image belong to the command)')
    .passThroughOptions()
    .action(async (image: string, command: string[], opts: RunOptions, cmd: Command) => {
      if (opts.ip !== undefined && opts.network === undefined) throw new HerdError('BAD_USAGE', '--ip needs --network');
      const volumes = (opts.volume ?? []).map((v) => {
        const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*):(\/[^:]*)(:ro)?$/.exec(v);
        if (m === null) throw new HerdError('BAD_USAGE', `--volume ${JSON.stringify(v)}: expected name:/path or name:/path:ro (a named volume; host directories are not taken here)`);
        return { name: m[1]!, target: m[2]!, ...(m[3] === undefined ? {} : { readOnly: true }) };
      });
      const spec: ContainerSpec = { herdId: newHerdId(), name: opts.name, image };
      if (command.length > 0) spec.cmd = command;
      if (opts.env !== undefined) spec.env = opts.env;
      if (opts.network !== undefined) spec.network = { network: opts.network, ...(opts.ip === undefined ? {} : { ip: opts.ip }) };
      if (opts.user !== undefined) spec.user = opts.user;
      if (opts.cpus !== undefined) spec.cpuLimitCores = opts.cpus;
      if (opts.memory !== undefined) spec.memoryLimitBytes = Math.round(opts.memory);
      if (volumes.length > 0) spec.volumes = volumes;
      if (opts.restart !== undefined && opts.restart !== 'no') spec.restartPolicy = { name: opts.restart };
      Object.assign(spec, dockerSettingsOf(opts));
      await withSession(cmd, async ({ view, rpc }) => {
        view.requireOnline(opts.host);
        const started = await rpc.request<ContainerSummary>(opts.host, 'container.run', spec, { timeoutMs: 60_000 });
        if (opts.json === true) printJson(started);
        else process.stdout.write(`started ${started.name} (herd id ${started.herdId}) on ${started.hostId}${started.ip ? ` at ${started.ip}` : ''}\n`);
      });
    });

  for (const [name, type, description] of [
    ['stop', 'container.stop', 'stop a Herd-managed container'],
    ['rm', 'container.remove', 'remove a Herd-managed container'],
  ] as const) {
    const c = withBrokerOption(program.command(name))
      .description(description)
      .argument('<container>', 'name or Herd id');
    if (name === 'rm') c.option('-f, --force', 'remove even if running');
    c.action(async (container: string, opts: { force?: boolean }, cmd: Command) => {
      await withSession(cmd, async ({ view, rpc }) => {
        const found = view.findContainer(container);
        view.requireOnline(found.hostId);
        const args = type === 'container.remove' ? { container: found.herdId, force: opts.force === true } : { container: found.herdId };
        await rpc.request(found.hostId, type, args, { timeoutMs: 60_000 });
        process.stdout.write(`${name === 'rm' ? 'removed' : 'stopped'} ${found.name} on ${found.hostId}\n`);
      });
    });
  }
}

interface RunOptions {
  host: string;
  name: string;
  network?: string;
  ip?: string;
  env?: string[];
  user?: string;
  cpus?: number;
  memory?: number;
  volume?: string[];
  restart?: 'no' | 'always' | 'unless-stopped' | 'on-failure';
  hostname?: string;
  workdir?: string;
  entrypoint?: string;
  publish?: string[];
  capAdd?: string[];
  capDrop?: string[];
  tmpfs?: string[];
  readOnly?: boolean;
  init?: boolean;
  json?: boolean;
}

/** `herd run`'s Docker settings (the ones a migration carries: compute/runtime/docker-settings.ts), checked as docker run checks them. */
export function dockerSettingsOf(opts: Pick<RunOptions, 'hostname' | 'workdir' | 'entrypoint' | 'publish' | 'capAdd' | 'capDrop' | 'tmpfs' | 'readOnly' | 'init'>): Partial<ContainerSpec> {
  const spec: Partial<ContainerSpec> = {};
  if (opts.hostname !== undefined) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(opts.hostname)) throw new HerdError('BAD_USAGE', `--hostname ${JSON.stringify(opts.hostname)}: not a host name (letters, digits, dots and hyphens)`);
    spec.hostname = opts.hostname;
  }
  if (opts.workdir !== undefined) {
    if (!opts.workdir.startsWith('/')) throw new HerdError('BAD_USAGE', `--workdir ${JSON.stringify(opts.workdir)}: must be an absolute path`);
    spec.workingDir = opts.workdir;
  }
  if (opts.entrypoint !== undefined) spec.entrypoint = [opts.entrypoint];
  if (opts.publish !== undefined) {
    spec.ports = opts.publish.map((p) => {
      const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})?:(\d{1,5})(?:\/(tcp|udp|sctp))?$/.exec(p);
      const port = (x: string | undefined) => x === undefined || (Number(x) >= 1 && Number(x) <= 65535);
      if (m === null || !port(m[2]) || !port(m[3])) throw new HerdError('BAD_USAGE', `--publish ${JSON.stringify(p)}: expected [ip:]hostPort:containerPort[/tcp|udp|sctp], ports 1-65535 (e.g. 8080:80)`);
      return { containerPort: Number(m[3]), protocol: (m[4] ?? 'tcp') as 'tcp' | 'udp' | 'sctp', ...(m[1] === undefined ? {} : { hostIp: m[1] }), ...(m[2] === undefined ? {} : { hostPort: m[2] }) };
    });
  }
  const caps = (flag: string, list: string[] | undefined) =>
    list?.map((c) => {
      if (!/^(CAP_)?[A-Za-z_]+$/.test(c)) throw new HerdError('BAD_USAGE', `${flag} ${JSON.stringify(c)}: not a capability name (e.g. NET_ADMIN)`);
      return c.toUpperCase();
    });
  const capAdd = caps('--cap-add', opts.capAdd);
  if (capAdd !== undefined) spec.capAdd = capAdd;
  const capDrop = caps('--cap-drop', opts.capDrop);
  if (capDrop !== undefined) spec.capDrop = capDrop;
  if (opts.tmpfs !== undefined) {
    spec.tmpfs = {};
    for (const t of opts.tmpfs) {
      const at = t.indexOf(':');
      const path = at < 0 ? t : t.slice(0, at);
      if (!path.startsWith('/')) throw new HerdError('BAD_USAGE', `--tmpfs ${JSON.stringify(t)}: expected /path or /path:options (e.g. /run:size=64m)`);
      spec.tmpfs[path] = at < 0 ? '' : t.slice(at + 1);
    }
  }
  if (opts.readOnly === true) spec.readOnlyRootfs = true;
  if (opts.init === true) spec.init = true;
  return spec;
}
