/** `herd monitor`: reads config, wires PCP, Docker and the broker, runs until a signal. */
import { loadConfig } from '../protocol/config.ts';
import { runUntilSignal } from '../protocol/daemon-runner.ts';
import { createLogger, withLogLevelFromEnv } from '../protocol/log.ts';
import { monitorConfigSchema } from './config.ts';
import { buildMonitorDaemon } from './daemon.ts';

export interface RunMonitorOptions {
  config?: string;
  overrides?: Record<string, unknown>;
}

export async function runMonitor(options: RunMonitorOptions): Promise<void> {
  const config = loadConfig(monitorConfigSchema, { ...(options.config === undefined ? {} : { file: options.config }), overrides: withLogLevelFromEnv(options.overrides), what: 'monitor config' });
  const log = createLogger('monitor', config.logLevel);
  const daemon = buildMonitorDaemon(config, { log });
  await runUntilSignal(daemon, log);
}
