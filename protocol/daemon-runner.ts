/**
 * Runs a built daemon in the foreground until SIGINT/SIGTERM, then closes it; SIGHUP
 * reloads what the daemon can reload (the control daemon: its users file), else is logged.
 * Shared by `herd compute`, `herd control` and `herd monitor` so that signal handling
 * is the same everywhere.
 */
import type { Logger } from 'pino';

/** `forceAfterMs`: how long close() may take before the process exits anyway (a compute daemon drains its migrations first). */
export async function runUntilSignal(daemon: { start(): Promise<void>; close(): Promise<void>; reload?(): Promise<void> }, log: Logger, forceAfterMs = 15_000): Promise<void> {
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
  process.on('SIGHUP', () => {
    if (daemon.reload === undefined) log.info('SIGHUP: this daemon has nothing to reload (it reads its credentials file again at each reconnect)');
    else daemon.reload().catch((err: unknown) => log.error({ err: String(err) }, 'SIGHUP: reload failed'));
  });
  process.on('unhandledRejection', (err) => log.error({ err: String(err) }, 'unhandled rejection (kept running)'));
  await daemon.start();
  // From here on (a start loads code and builds servers): a daemon that serves must not block.
  watchEventLoop(log);
}

/**
 * Warns when the event loop was blocked for `thresholdMs` or more: a daemon that blocks
 * answers nobody meanwhile (the control daemon embeds the broker, so every client waits).
 * The warning says for how long; the cause is whatever ran just before it.
 */
export function watchEventLoop(log: Logger, thresholdMs = 1000, everyMs = 250): () => void {
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const blockedMs = Math.round(now - last - everyMs);
    last = now;
    if (blockedMs >= thresholdMs) log.warn({ blockedMs }, `the event loop was blocked for ${blockedMs} ms: nothing was answered meanwhile (a synchronous call, or a starved CPU)`);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
