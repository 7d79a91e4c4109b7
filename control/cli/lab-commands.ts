/** `herd lab up|down|status|image`. */
import { availableParallelism } from 'node:os';
import { Argument, Command, InvalidArgumentError } from 'commander';
import { HerdError } from '../../protocol/errors.ts';
import { DEBIAN_IMAGES, debianImageTag, type DebianImageName } from '../lab/debian-images.ts';
import { readLabState } from '../lab/state.ts';
import { createLogger } from '../../protocol/log.ts';
import { LAB_MAX_HOSTS, labLayout } from '../lab/layout.ts';
import { printJson } from './context.ts';
import { cliProgress } from './progress.ts';

function parseHosts(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > LAB_MAX_HOSTS) throw new InvalidArgumentError(`must be an integer from 1 to ${LAB_MAX_HOSTS}`);
  return n;
}

function parseDiskIops(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 10 || n > 1_000_000) throw new InvalidArgumentError('must be an integer from 10 to 1000000 (operations per second of each host\'s disk)');
  return n;
}

const say = (line: string) => process.stdout.write(`lab: ${line}\n`);
const labProgress = (json?: boolean) => cliProgress(json, { prefix: 'lab: ', clock: true });

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('a local lab of compute hosts in network namespaces on this machine (needs root)');
  lab
    .command('up')
    .description('build the lab: namespaces, bridge, a Docker daemon and sshd per host, PCP, images, Herd daemons')
    .option('--hosts <n>', `number of compute hosts (1-${LAB_MAX_HOSTS})`, parseHosts, 2)
    .option('--disk-iops <n>', "give each host's disk at most this many operations per second, queued beyond (a real disk's limit: a disk-heavy container then slows its own host only; needs python3-llfuse); default: no limit", parseDiskIops)
    .option('--provision', 'run the Ansible playbook against localhost even if every check passes')
    .option('--json', 'print the lab status as JSON at the end (progress goes to stderr)')
    .action(async (opts: { hosts: number; diskIops?: number; provision?: boolean; json?: boolean }) => {
      const progress = labProgress(opts.json);
      try {
        // Loaded on demand, like the other heavy parts of lab commands: the rest of the CLI starts without them.
        const { labUp } = await import('../lab/lab-up.ts');
        await labUp({ hosts: opts.hosts, ...(opts.diskIops === undefined ? {} : { diskIops: opts.diskIops }), provision: opts.provision === true, log: createLogger('lab', 'warn'), progress });
      } finally {
        progress.end();
      }
      const { formatLabStatus, labStatus } = await import('../lab/lab-status.ts');
      const status = await labStatus();
      if (opts.json === true) printJson(status);
      else process.stdout.write(`${formatLabStatus(status)}\n`);
    });
  lab
    .command('image')
    .description(`build (once per machine) and load an optional lab image on every host: ${Object.entries(DEBIAN_IMAGES).map(([n, i]) => `${n} (${i.what})`).join('; ')}`)
    .addArgument(new Argument('<name>', 'the image').choices(Object.keys(DEBIAN_IMAGES)))
    .option('--json', 'print {image, hosts} as JSON at the end (progress goes to stderr)')
    .action(async (name: DebianImageName, opts: { json?: boolean }) => {
      const state = readLabState();
      if (state === undefined) throw new HerdError('LAB_FAILED', 'the lab is not up: run "herd lab up" first');
      const layout = labLayout({ hosts: state.hosts, cpuCount: availableParallelism() });
      const progress = labProgress(opts.json);
      try {
        const [{ ensureDebianImage }, { default: Docker }] = await Promise.all([import('../lab/debian-images.ts'), import('dockerode')]);
        await ensureDebianImage(name, layout.hosts.map((h) => new Docker({ socketPath: h.dockerSocket })), layout.imagesDir, progress);
      } finally {
        progress.end();
      }
      const hosts = layout.hosts.map((h) => h.id);
      if (opts.json === true) printJson({ image: debianImageTag(name), hosts });
      else say(`${debianImageTag(name)} is on ${hosts.join(', ')}`);
    });
  lab
    .command('down')
    .description('remove everything "lab up" made (also after a crash)')
    .action(async () => {
      const { labDown } = await import('../lab/lab-down.ts');
      await labDown(say);
    });
  lab
    .command('status')
    .description('show what of the lab runs')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const { formatLabStatus, labStatus } = await import('../lab/lab-status.ts');
      const s = await labStatus();
      if (opts.json === true) printJson(s);
      else process.stdout.write(`${formatLabStatus(s)}\n`);
    });
}
