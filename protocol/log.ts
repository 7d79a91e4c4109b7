/**
 * Structured logs: JSON lines on stderr (pino), one logger per component, with child
 * loggers carrying context such as `migrationId` on every line of a migration.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export function createLogger(component: string, level: LogLevel = (process.env.HERD_LOG_LEVEL as LogLevel | undefined) ?? 'info'): Logger {
  return pino({ level, base: { component, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

/** A logger that drops everything: for unit tests and the CLI's quiet mode. */
export const silentLogger: Logger = pino({ level: 'silent' });
