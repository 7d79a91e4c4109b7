/**
 * The `herd` command. Daemons (`compute`, `control`) run in the foreground; the rest
 * are clients of the broker or manage the local lab. Exit codes: 0 ok, 1 failed,
 * 2 bad usage.
 */
import { Command, CommanderError, Option } from 'commander';
import { HerdError, toHerdError } from '../../protocol/errors.ts';
import { registerClusterCommands } from './cluster-commands.ts';
import { registerLabCommands } from './lab-commands.ts';
import { registerAdminCommands } from './admin-commands.ts';
import { registerAuthCommands } from './auth-commands.ts';
import { BROKER_HELP, CA_HELP, CREDENTIALS_HELP, brokerEndpoint, cliState, withBrokerOption } from './context.ts';
import { labLayout } from '../lab/layout.ts';
import { readLabState } from '../lab/state.ts';
import { registerMigrateCommand } from './migrate-command.ts';
import { registerDemoCommand } from './demo-command.ts';
import { registerControlCommands } from './control-commands.ts';
import { registerSimulateCommand } from './simulate-command.ts';
import { registerForecastCommand } from './forecast-command.ts';
import { registerMonitorCommands } from '../../monitor/cli.ts';

export function buildProgram(): Command {
  const program = new Command('herd')
    .description('Herd: live migration of running Docker containers between hosts (CRIU + overlay diff layer)')
    .version('0.1.0', '-V, --version')
    .addOption(new Option('--broker <url>', BROKER_HELP))
    .addOption(new Option('--credentials <file>', CREDENTIALS_HELP))
    .addOption(new Option('--ca <file>', CA_HELP))
    .showHelpAfterError(true)
    .showSuggestionAfterError(true)
    .enablePositionalOptions()
    .exitOverride();
  program.configureOutput({ outputError: (str, write) => write(str) });
  registerAdminCommands(program);
  registerAuthCommands(program);
  registerLabCommands(program);
  registerClusterCommands(program);
  registerMigrateCommand(program);
  registerDemoCommand(program);
  registerSimulateCommand(program);
  registerForecastCommand(program);
  registerControlCommands(program, program.commands.find((c) => c.name() === 'control') as Command);
  registerMonitorCommands(program, { onDaemon: () => (cliState.daemonRunning = true), brokerEndpoint, brokerOptions: withBrokerOption, defaultConfig: () => (readLabState() === undefined ? undefined : labLayout({ hosts: 1, cpuCount: 1 }).monitorConfig) });
  // Commander exits from nested commands too: make every one throw instead.
  const override = (cmd: Command) => {
    cmd.exitOverride();
    cmd.showHelpAfterError(true);
    cmd.commands.forEach(override);
  };
  program.commands.forEach(override);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
      return 2;
    }
    const error = toHerdError(err);
    process.stderr.write(`herd: error [${error.code}]: ${error.message}\n`);
    if (error.code === 'INTERNAL' && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return error.code === 'BAD_USAGE' ? 2 : 1;
  }
}

/** Throws BAD_USAGE: for argument checks commander cannot express. */
export function usageError(message: string): never {
  throw new HerdError('BAD_USAGE', message);
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\/control\//, '/control/'));
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      // A daemon keeps running until a signal; one-shot commands exit now.
      if (!cliState.daemonRunning || code !== 0) process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
    },
    (err: unknown) => {
      process.stderr.write(`herd: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
