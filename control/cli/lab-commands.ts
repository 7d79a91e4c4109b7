/** `herd lab up|down|status`. */
import { Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../../protocol/log.ts';
import { labDown } from '../lab/lab-down.ts';
import { formatLabStatus, labStatus } from '../lab/lab-status.ts';
import { labUp } from '../lab/lab-up.ts';
import { LAB_MAX_HOSTS } from '../lab/layout.ts';
import { printJson } from './context.ts';

function parseHosts(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > LAB_MAX_HOSTS) throw new InvalidArgumentError(`must be an integer from 1 to ${LAB_MAX_HOSTS}`);
  return n;
}

const say = (line: string) => process.stdout.write(`lab: ${line}\n`);

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('a local lab of compute hosts in network namespaces on this machine (needs root)');
  lab
    .command('up')
    .description('build the lab: namespaces, bridge, a Docker daemon and sshd per host, PCP, images, Herd daemons')
    .option('--hosts <n>', `number of compute hosts (1-${LAB_MAX_HOSTS})`, parseHosts, 2)
    .option('--provision', 'run the Ansible playbook against localhost even if every check passes')
    .action(async (opts: { hosts: number; provision?: boolean }) => {
      await labUp({ hosts: opts.hosts, provision: opts.provision === true, log: createLogger('lab', 'warn'), say });
      process.stdout.write(`${formatLabStatus(await labStatus())}\n`);
    });
  lab
    .command('down')
    .description('remove everything "lab up" made (also after a crash)')
    .action(async () => {
      await labDown(say);
    });
  lab
    .command('status')
    .description('show what of the lab runs')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const s = await labStatus();
      if (opts.json === true) printJson(s);
      else process.stdout.write(`${formatLabStatus(s)}\n`);
    });
}
