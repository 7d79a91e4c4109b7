/**
 * CLI commands of the monitor: `herd monitor [--config]`, `herd metrics export|top` and
 * `herd logs <container> [-f]`. Registered by the CLI with `registerMonitorCommands(program)`.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DATASET_KINDS, requireDatasetDir, type DatasetKind } from './dataset.ts';
import { exportCsv, parseTime } from './export.ts';
import { cliBrokerEndpoint, loadConfig } from '../protocol/config.ts';
import type { BrokerEndpoint } from '../protocol/mqtt.ts';
import { HerdError } from '../protocol/errors.ts';
import { monitorConfigSchema } from './config.ts';
import { resolveLogRef, runLogs } from './logs-command.ts';
import { collectLatest, renderTop } from './metrics-top.ts';

const DEFAULT_DATASET_DIR = '/var/lib/herd/metrics';

export interface MonitorCommandHooks {
  /** Called before the daemon starts, so the CLI does not exit when the action returns (control/cli sets cliState.daemonRunning). */
  onDaemon?: () => void;
  /** The broker and identity a client command uses (control/cli: --broker, --credentials, $HERD_BROKER, the lab's broker). */
  brokerEndpoint?: (cmd: Command) => BrokerEndpoint;
  /** A monitor config to take datasetDir from when none is given (the local lab's, when it is up). */
  defaultConfig?: () => string | undefined;
  /** Adds the CLI's --broker, --credentials and --ca options to a command that talks to the broker (control/cli: withBrokerOption). */
  brokerOptions?: (cmd: Command) => Command;
}

/** Dataset directory: --dir, else datasetDir of --config ($HERD_MONITOR_CONFIG, the lab's), else /var/lib/herd/metrics; BAD_USAGE naming it and its source when it does not exist. */
function datasetDirOf(opts: { dir?: string; config?: string }, hooks: MonitorCommandHooks): string {
  if (opts.dir !== undefined) return requireDatasetDir(opts.dir, '--dir');
  const file = opts.config ?? hooks.defaultConfig?.();
  if (file !== undefined && (opts.config !== undefined || existsSync(file))) {
    const dir = loadConfig(monitorConfigSchema, { file, what: 'monitor config' }).datasetDir;
    if (dir !== null) return requireDatasetDir(dir, `datasetDir of ${file}`);
  }
  return requireDatasetDir(DEFAULT_DATASET_DIR, 'the default: give --dir or --config');
}

/** The broker a client command talks to: the CLI's choice (hooks), else --broker, $HERD_BROKER, mqtt://127.0.0.1:1883 with $HERD_CREDENTIALS. */
function brokerEndpointOf(cmd: Command, hooks: MonitorCommandHooks): BrokerEndpoint {
  if (hooks.brokerEndpoint !== undefined) return hooks.brokerEndpoint(cmd);
  const opts = cmd.optsWithGlobals() as { broker?: string; credentials?: string; ca?: string };
  return cliBrokerEndpoint({ url: opts.broker ?? process.env.HERD_BROKER ?? 'mqtt://127.0.0.1:1883', credentialsFile: opts.credentials, caFile: opts.ca });
}

export function registerMonitorCommands(program: Command, hooks: MonitorCommandHooks = {}): void {
  const withBroker = hooks.brokerOptions ?? ((cmd: Command) => cmd.option('--broker <url>', 'MQTT broker URL').option('--credentials <file>', 'broker credentials file').option('--ca <file>', "CA of the broker's certificate"));
  program
    .command('monitor')
    .description('run the monitor daemon: PCP host and container metrics to MQTT and the dataset (foreground)')
    .option('-c, --config <file>', 'config file (YAML)', process.env.HERD_MONITOR_CONFIG)
    .action(async (opts: { config?: string }, cmd: Command) => {
      const overrides: Record<string, unknown> = {};
      const broker = (cmd.optsWithGlobals() as { broker?: string }).broker;
      if (broker !== undefined) overrides.broker = { url: broker };
      hooks.onDaemon?.();
      const { runMonitor } = await import('./main.ts');
      await runMonitor({ ...(opts.config === undefined ? {} : { config: opts.config }), overrides });
    });

  const metrics = program.command('metrics').description('recorded metrics');
  metrics
    .command('export')
    .description('write recorded samples as CSV to stdout')
    .requiredOption('--since <time>', 'start: a duration ago (90s, 15m, 2h, 7d), an ISO 8601 date (2026-11-22) or date-time (2026-11-22T10:00:00Z)')
    .option('--to <time>', 'end, exclusive: "now", a duration ago or an ISO 8601 date or date-time', 'now')
    .option('--dir <dir>', 'dataset directory (default: datasetDir of the monitor config, else /var/lib/herd/metrics)')
    .option('-c, --config <file>', 'monitor config file to take datasetDir from', process.env.HERD_MONITOR_CONFIG)
    .option('--kind <kind>', `only one kind: ${DATASET_KINDS.join(' or ')}`)
    .action(async (opts: { since: string; to: string; dir?: string; config?: string; kind?: string }) => {
      const now = new Date();
      const dir = datasetDirOf(opts, hooks);
      if (opts.kind !== undefined && !(DATASET_KINDS as string[]).includes(opts.kind)) throw new HerdError('BAD_USAGE', `--kind must be ${DATASET_KINDS.join(' or ')}`);
      const result = await exportCsv({
        dir,
        since: parseTime(opts.since, now, '--since'),
        to: parseTime(opts.to, now, '--to'),
        ...(opts.kind === undefined ? {} : { kinds: [opts.kind as DatasetKind] }),
        write: (chunk) => process.stdout.write(chunk),
      });
      process.stderr.write(`${result.rows} row(s)${result.skippedLines > 0 ? `, ${result.skippedLines} torn line(s) skipped` : ''}\n`);
    });

  withBroker(metrics.command('top'))
    .description('the latest sample of every host and container, from the monitors on the broker')
    .option('--seconds <s>', 'how long to listen (one container round and one host round: default 6)', (v: string) => {
      const n = Number(v);
      if (!(n > 0 && n <= 600)) throw new HerdError('BAD_USAGE', `--seconds must be a number of seconds between 0 and 600, got "${v}"`);
      return n;
    }, 6)
    .option('--json', 'print the latest samples as JSON ({ hosts, containers })')
    .action(async (opts: { seconds: number; json?: boolean }, cmd: Command) => {
      const latest = await collectLatest(brokerEndpointOf(cmd, hooks), opts.seconds);
      if (opts.json === true) process.stdout.write(`${JSON.stringify({ hosts: [...latest.hosts.values()], containers: [...latest.containers.values()], rejected: latest.rejected }, null, 2)}\n`);
      else process.stdout.write(renderTop(latest));
    });

  withBroker(program.command('logs'))
    .description("print a container's stdout/stderr as the monitor recorded it, across hosts and migrations")
    .argument('<container>', 'container name or Herd id')
    .option('-f, --follow', 'keep printing lines as they are written')
    .option('-n, --tail <lines>', 'only the last <lines> lines', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new HerdError('BAD_USAGE', `--tail must be a whole number, got "${v}"`);
      return n;
    })
    .option('-t, --timestamps', 'prefix each line with its time and host')
    .option('--json', 'print the records as JSON lines')
    .option('--dir <dir>', 'dataset directory whose logs/ to read (default: datasetDir of the monitor config, else /var/lib/herd/metrics)')
    .option('-c, --config <file>', 'monitor config file to take datasetDir from', process.env.HERD_MONITOR_CONFIG)
    .action(async (ref: string, opts: { follow?: boolean; tail?: number; timestamps?: boolean; json?: boolean; dir?: string; config?: string }, cmd: Command) => {
      const logsDir = join(datasetDirOf(opts, hooks), 'logs');
      const herdId = await resolveLogRef(ref, logsDir, brokerEndpointOf(cmd, hooks));
      await runLogs({ path: join(logsDir, `${herdId}.log`), follow: opts.follow === true, ...(opts.tail === undefined ? {} : { tail: opts.tail }), format: opts.json === true ? 'json' : opts.timestamps === true ? 'timestamps' : 'text' });
    });
}
