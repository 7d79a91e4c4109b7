/** `herd compute`: reads config, wires the real Docker runtime, runs until a signal. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { loadConfig } from '../protocol/config.ts';
import { runUntilSignal } from '../protocol/daemon-runner.ts';
import { createLogger } from '../protocol/log.ts';
import { computeConfigSchema } from './config.ts';
import { buildComputeDaemon } from './daemon.ts';
import { DockerRuntime } from './runtime/docker-runtime.ts';

export async function criuVersion(): Promise<string | undefined> {
  const { stdout } = await promisify(execFile)('criu', ['--version'], { timeout: 5000 });
  return /Version:\s*(\S+)/.exec(stdout)?.[1];
}

export async function runCompute(options: { config?: string; overrides?: Record<string, unknown> }): Promise<void> {
  const config = loadConfig(computeConfigSchema, { ...(options.config === undefined ? {} : { file: options.config }), overrides: options.overrides ?? {}, what: 'compute config' });
  const log = createLogger('compute', config.logLevel).child({ hostId: config.hostId });
  const daemon = buildComputeDaemon(config, { runtime: new DockerRuntime(config.docker), log, criuVersion });
  await runUntilSignal(daemon, log, (config.shutdownGraceSeconds + 15) * 1000);
}
