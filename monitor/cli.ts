/**
 * CLI commands of the monitor: `herd monitor [--config]` and `herd metrics export`.
 * Registered by the CLI with `registerMonitorCommands(program)`.
 */
import type { Command } from 'commander';
import { runMonitor } from './main.ts';
import { DATASET_KINDS, type DatasetKind } from './dataset.ts';
import { exportCsv, parseTime } from './export.ts';
import { loadConfig } from '../protocol/config.ts';
import { HerdError } from '../protocol/errors.ts';
import { monitorConfigSchema } from './config.ts';

const DEFAULT_DATASET_DIR = '/var/lib/herd/metrics';

export interface MonitorCommandHooks {
  /** Called before the daemon starts, so the CLI does not exit when the action returns (control/cli sets cliState.daemonRunning). */
  onDaemon?: () => void;
}

export function registerMonitorCommands(program: Command, hooks: MonitorCommandHooks = {}): void {
  program
    .command('monitor')
    .description('run the monitor daemon: PCP host and container metrics to MQTT and the dataset (foreground)')
    .option('-c, --config <file>', 'config file (YAML)', process.env.HERD_MONITOR_CONFIG)
    .action(async (opts: { config?: string }, cmd: Command) => {
      const overrides: Record<string, unknown> = {};
      const broker = (cmd.optsWithGlobals() as { broker?: string }).broker;
      if (broker !== undefined) overrides.broker = { url: broker };
      hooks.onDaemon?.();
      await runMonitor({ ...(opts.config === undefined ? {} : { config: opts.config }), overrides });
    });

  const metrics = program.command('metrics').description('recorded metrics');
  metrics
    .command('export')
    .description('write recorded samples as CSV to stdout')
    .requiredOption('--since <time>', 'start (ISO time, date, or a duration ago such as 2h)')
    .option('--to <time>', 'end, exclusive (ISO time, date, "now" or a duration ago)', 'now')
    .option('--dir <dir>', 'dataset directory (default: datasetDir of the monitor config, else /var/lib/herd/metrics)')
    .option('-c, --config <file>', 'monitor config file to take datasetDir from', process.env.HERD_MONITOR_CONFIG)
    .option('--kind <kind>', `only one kind: ${DATASET_KINDS.join(' or ')}`)
    .action(async (opts: { since: string; to: string; dir?: string; config?: string; kind?: string }) => {
      const now = new Date();
      let dir = opts.dir;
      if (dir === undefined && opts.config !== undefined) dir = loadConfig(monitorConfigSchema, { file: opts.config, what: 'monitor config' }).datasetDir ?? undefined;
      if (opts.kind !== undefined && !(DATASET_KINDS as string[]).includes(opts.kind)) throw new HerdError('BAD_USAGE', `--kind must be ${DATASET_KINDS.join(' or ')}`);
      const result = await exportCsv({
        dir: dir ?? DEFAULT_DATASET_DIR,
        since: parseTime(opts.since, now),
        to: parseTime(opts.to, now),
        ...(opts.kind === undefined ? {} : { kinds: [opts.kind as DatasetKind] }),
        write: (chunk) => process.stdout.write(chunk),
      });
      process.stderr.write(`${result.rows} row(s)${result.skippedLines > 0 ? `, ${result.skippedLines} torn line(s) skipped` : ''}\n`);
    });
}
