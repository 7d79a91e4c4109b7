/** `herd migrate <container> --to <host>`: live-migrates a container, printing each phase and the timings. */
import { Command, Option } from 'commander';
import { FS_MODES, type FsMode } from '../../protocol/messages.ts';
import { describeEvent, formatTimings, migrateOnce } from '../migrations/migration-client.ts';
import { printJson, withBrokerOption, withSession } from './context.ts';

export function registerMigrateCommand(program: Command): void {
  withBrokerOption(program.command('migrate'))
    .description('live-migrate a running container to another host (exits non-zero if it failed or was rolled back)')
    .argument('<container>', 'name or Herd id')
    .requiredOption('--to <host>', 'target host')
    .addOption(new Option('--fs <mode>', 'filesystem to carry: diff = overlay upper dir, full = whole filesystem, none = memory only').choices(FS_MODES).default('diff'))
    .option('--json', 'print the result as JSON (events still go to stderr)')
    .action(async (container: string, opts: { to: string; fs: FsMode; json?: boolean }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const out = opts.json === true ? process.stderr : process.stdout;
        const result = await migrateOnce(session, container, opts.to, opts.fs, (e) => out.write(`${describeEvent(e)}\n`), (line) => out.write(`${line}\n`));
        if (opts.json === true) printJson(result);
        else process.stdout.write(`${formatTimings(result)}\n`);
      });
    });
}
