/** Runs async jobs one at a time, in order: CRIU operations on one host are serialized. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /**
   * Queues `job`. A job still running after `timeoutMs` is reported as failed and the
   * queue moves on, so that one hung operation cannot stop every later migration.
   */
  run<T>(job: () => Promise<T>, timeoutMs = 10 * 60_000): Promise<T> {
    const guarded = () =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`operation still running after ${timeoutMs} ms; giving up on it`)), timeoutMs);
        job().then(
          (v) => {
            clearTimeout(timer);
            resolve(v);
          },
          (e: unknown) => {
            clearTimeout(timer);
            reject(e);
          },
        );
      });
    const result = this.tail.then(guarded, guarded);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
