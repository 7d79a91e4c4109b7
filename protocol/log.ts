/**
 * Structured logs: JSON lines on stderr (pino), one logger per component, with child
 * loggers carrying context such as `migrationId` on every line of a migration.
 */
import { pino, type Logger } from 'pino';
import { HerdError } from './errors.ts';

export type { Logger };

/** The levels a daemon config's `logLevel` (and HERD_LOG_LEVEL) may name. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type ConfigLogLevel = (typeof LOG_LEVELS)[number];
export type LogLevel = ConfigLogLevel | 'fatal' | 'silent';

/**
 * HERD_LOG_LEVEL, when set: it overrides the `logLevel` of every daemon's config (debug logs of a
 * running lab without editing the configs it writes). BAD_CONFIG when it names no level.
 */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): ConfigLogLevel | undefined {
  const value = env.HERD_LOG_LEVEL;
  if (value === undefined || value === '') return undefined;
  if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new HerdError('BAD_CONFIG', `HERD_LOG_LEVEL is "${value}": expected one of ${LOG_LEVELS.join(', ')}`);
  return value as ConfigLogLevel;
}

/** A daemon's config overrides with HERD_LOG_LEVEL's level added (flags given as `overrides` win). */
export function withLogLevelFromEnv(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const level = logLevelFromEnv();
  return level === undefined || 'logLevel' in overrides ? overrides : { ...overrides, logLevel: level };
}

export function createLogger(component: string, level: LogLevel = logLevelFromEnv() ?? 'info'): Logger {
  return pino({ level, base: { component, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

/** A logger that drops everything: for unit tests and the CLI's quiet mode. */
export const silentLogger: Logger = pino({ level: 'silent' });
