/**
 * Runs an async job one at a time, and at most once more after the one in flight however
 * often it is asked meanwhile. Every caller's promise settles with a run that started after
 * its call, so a job that reads state and publishes it (a retained container list) never
 * publishes an older reading after a newer one, and the last publish follows the last call.
 *
 * Hand-written (a dozen lines): p-debounce and p-throttle drop or delay calls by time,
 * which is not this guarantee.
 */
export function coalesced(job: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const start = (): Promise<void> => {
    const run = job().finally(() => {
      if (running === run) running = undefined;
    });
    running = run;
    return run;
  };
  return () => {
    if (next !== undefined) return next;
    if (running === undefined) return start();
    next = running
      .catch(() => undefined)
      .then(() => {
        next = undefined;
        return start();
      });
    return next;
  };
}
