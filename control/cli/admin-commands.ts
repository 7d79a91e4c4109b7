/** Daemons, doctor and config checks. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig } from '../../protocol/config.ts';
import { computeConfigSchema } from '../../compute/config.ts';
import { controlConfigSchema, resolveControlConfigFiles } from '../config.ts';
import { monitorConfigSchema } from '../../monitor/config.ts';
import { formatChecks, runChecks, runTestChecks } from '../doctor.ts';
import { securityChecks, type DaemonKind } from '../security-checks.ts';
import { readLabState } from '../lab/state.ts';
import { labLayout } from '../lab/layout.ts';
import { cliState, printJson } from './context.ts';
import { CONTROL_MODES, type ControlMode } from '../../protocol/messages.ts';

const CONFIG_SCHEMAS = { compute: computeConfigSchema, control: controlConfigSchema, monitor: monitorConfigSchema } as const;

export function parsePort(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number from 0 to 65535');
  return n;
}

/** The daemon configs on this machine: $HERD_<KIND>_CONFIG or /etc/herd/<kind>.yaml, and the lab's when it is up. */
function daemonConfigFiles(): { kind: DaemonKind; file: string }[] {
  const files: { kind: DaemonKind; file: string }[] = (['control', 'compute', 'monitor'] as const).map((kind) => ({ kind, file: process.env[`HERD_${kind.toUpperCase()}_CONFIG`] ?? `/etc/herd/${kind}.yaml` }));
  const lab = readLabState();
  if (lab !== undefined) {
    const layout = labLayout({ hosts: lab.hosts, cpuCount: 1 });
    files.push({ kind: 'control', file: layout.controlConfig }, { kind: 'monitor', file: layout.monitorConfig }, ...layout.hosts.map((h) => ({ kind: 'compute' as const, file: h.computeConfig })));
  }
  return files;
}

export function registerAdminCommands(program: Command): void {
  program
    .command('compute')
    .description('run the compute daemon of this host (foreground)')
    .option('-c, --config <file>', 'config file (YAML)', process.env.HERD_COMPUTE_CONFIG)
    .option('--host-id <id>', 'this host\'s id (overrides the config)')
    .action(async (opts: { config?: string; hostId?: string }, cmd: Command) => {
      const overrides: Record<string, unknown> = {};
      if (opts.hostId !== undefined) overrides.hostId = opts.hostId;
      const broker = (cmd.optsWithGlobals() as { broker?: string }).broker;
      if (broker !== undefined) overrides.broker = { url: broker };
      cliState.daemonRunning = true;
      // The daemons load on demand: every other command starts without them (about a quarter second less).
      const { runCompute } = await import('../../compute/main.ts');
      await runCompute({ ...(opts.config === undefined ? {} : { config: opts.config }), overrides });
    });

  program
    .command('control')
    .description('run the control daemon with its embedded MQTT broker (foreground)')
    .option('-c, --config <file>', 'config file (YAML)', process.env.HERD_CONTROL_CONFIG)
    .option('--port <port>', 'embedded broker port', parsePort)
    .option('--external-broker <url>', 'use this MQTT broker instead of the embedded one')
    .addOption(new Option('--mode <mode>', 'act: migrate; recommend: plan and report only (overrides loop.mode)').choices(CONTROL_MODES))
    .action(async (opts: { config?: string; port?: number; externalBroker?: string; mode?: ControlMode }) => {
      const broker: Record<string, unknown> = {};
      if (opts.port !== undefined) broker.port = opts.port;
      if (opts.externalBroker !== undefined) Object.assign(broker, { embedded: false, url: opts.externalBroker });
      cliState.daemonRunning = true;
      const { runControl } = await import('../main.ts');
      await runControl({ ...(opts.config === undefined ? {} : { config: opts.config }), overrides: { broker, ...(opts.mode === undefined ? {} : { loop: { mode: opts.mode } }) } });
    });

  program
    .command('doctor')
    .description("check that this machine can run Herd and the lab (programs, CRIU, kernel features) and what is insecure in the daemons' configs (/etc/herd/*.yaml, the lab's)")
    .option('--json', 'print JSON')
    .option('--tests', 'also check what the test suite and benchmarks need')
    .action(async (opts: { json?: boolean; tests?: boolean }) => {
      const checks = [...(await runChecks()), ...(opts.tests === true ? await runTestChecks() : []), ...securityChecks(daemonConfigFiles())];
      if (opts.json === true) printJson(checks);
      else process.stdout.write(`${formatChecks(checks)}\n`);
      const failed = checks.filter((c) => !c.ok).length;
      if (opts.json !== true) process.stdout.write(failed === 0 ? 'all checks passed\n' : `${failed} check(s) failed\n`);
      process.exitCode = failed === 0 ? 0 : 1;
    });

  const config = program.command('config').description('configuration files');
  config
    .command('check')
    .description('validate a daemon config file and print it with defaults filled in')
    .addArgument(new Command().createArgument('<kind>', 'which daemon').choices(Object.keys(CONFIG_SCHEMAS)))
    .argument('<file>', 'the YAML file')
    .action((kind: keyof typeof CONFIG_SCHEMAS, file: string) => {
      const loaded = loadConfig(CONFIG_SCHEMAS[kind], { file, what: `${kind} config`, ...(kind === 'control' ? { resolveFiles: resolveControlConfigFiles } : {}) });
      printJson(loaded);
    });
}
