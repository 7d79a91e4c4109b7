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
    .option('--json', 'print JSON')
    .argument('<image>', 'image (e.g. herd/busybox)')
    .argument('[command...]', 'command and arguments (options after the image belong to the command)')
    .passThroughOptions()
    .action(async (image: string, command: string[], opts: { host: string; name: string; network?: string; ip?: string; env?: string[]; user?: string; cpus?: number; memory?: number; volume?: string[]; restart?: 'no' | 'always' | 'unless-stopped' | 'on-failure'; json?: boolean }, cmd: Command) => {
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
