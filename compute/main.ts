/** `herd compute`: reads config, wires the real Docker runtime, runs until a signal. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { loadConfig } from '../protocol/config.ts';
import { runUntilSignal } from '../protocol/daemon-runner.ts';
import { createLogger, withLogLevelFromEnv } from '../protocol/log.ts';
import { computeConfigSchema } from './config.ts';
import { buildComputeDaemon } from './daemon.ts';
import { DockerRuntime } from './runtime/docker-runtime.ts';

export async function criuVersion(): Promise<string | undefined> {
  const { stdout } = await promisify(execFile)('criu', ['--version'], { timeout: 5000 });
  return /Version:\s*(\S+)/.exec(stdout)?.[1];
}

/**
 * A transfer allocates a Buffer per chunk it moves (tar's output, ssh2's packets): hundreds of
 * MiB a second outside the heap, which makes V8 promote and collect often. At V8's default
 * growth (about 1.1x the live heap once the memory reducer has shrunk it) that was a full
 * mark-compact every 50-70 ms of a transfer (18-23 per 256 MiB), on the cores the copy needs;
 * twice the live heap leaves 1-2. The 256 MiB transfer in the lab, interleaved runs:
 * 1.42-1.76 s -> 0.92-1.23 s. The cost: the heap may grow to twice its live size (tens of MB).
 */
const HEAP_GROWING_PERCENT = 100;

export async function runCompute(options: { config?: string; overrides?: Record<string, unknown> }): Promise<void> {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  const config = loadConfig(computeConfigSchema, { ...(options.config === undefined ? {} : { file: options.config }), overrides: withLogLevelFromEnv(options.overrides), what: 'compute config' });
  const log = createLogger('compute', config.logLevel).child({ hostId: config.hostId });
  const daemon = buildComputeDaemon(config, { runtime: new DockerRuntime(config.docker), log, criuVersion });
  await runUntilSignal(daemon, log, (config.shutdownGraceSeconds + 15) * 1000);
}
