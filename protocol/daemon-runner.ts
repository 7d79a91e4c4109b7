/**
 * Runs a built daemon in the foreground until SIGINT/SIGTERM, then closes it.
 * Shared by `herd compute`, `herd control` and `herd monitor` so that signal handling
 * is the same everywhere.
 */
import type { Logger } from 'pino';

/** `forceAfterMs`: how long close() may take before the process exits anyway (a compute daemon drains its migrations first). */
export async function runUntilSignal(daemon: { start(): Promise<void>; close(): Promise<void> }, log: Logger, forceAfterMs = 15_000): Promise<void> {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ forceAfterMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, forceAfterMs);
    force.unref();
    daemon.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: String(err) }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('unhandledRejection', (err) => log.error({ err: String(err) }, 'unhandled rejection (kept running)'));
  await daemon.start();
}
