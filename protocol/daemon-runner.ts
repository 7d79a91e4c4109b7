/**
 * Runs a built daemon in the foreground until SIGINT/SIGTERM, then closes it.
 * Shared by `herd compute`, `herd control` and `herd monitor` so that signal handling
 * is the same everywhere.
 */
import type { Logger } from 'pino';

export async function runUntilSignal(daemon: { start(): Promise<void>; close(): Promise<void> }, log: Logger): Promise<void> {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took over 15 s; exiting');
      process.exit(1);
    }, 15_000);
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
