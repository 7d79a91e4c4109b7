/** `herd control`: reads config, runs the control daemon (and its embedded broker) until a signal. */
import { loadConfig } from '../protocol/config.ts';
import { runUntilSignal } from '../protocol/daemon-runner.ts';
import { createLogger, withLogLevelFromEnv } from '../protocol/log.ts';
import { controlConfigSchema, resolveControlConfigFiles } from './config.ts';
import { buildControlDaemon } from './daemon.ts';

export async function runControl(options: { config?: string; overrides?: Record<string, unknown> }): Promise<void> {
  const config = loadConfig(controlConfigSchema, { ...(options.config === undefined ? {} : { file: options.config }), overrides: withLogLevelFromEnv(options.overrides), what: 'control config', resolveFiles: resolveControlConfigFiles });
  const log = createLogger('control', config.logLevel);
  await runUntilSignal(buildControlDaemon(config, { log }), log);
}
