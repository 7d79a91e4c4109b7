/** Runs async jobs one at a time, in order: CRIU operations on one host are serialized. */
export interface QueueOptions {
  /** A job still running after this long is reported as failed and the queue moves on. */
  timeoutMs?: number;
  /** Called when the job timed out: kill what it started (a runc/CRIU job), so that nothing is abandoned half-done. */
  onTimeout?: () => void;
}

export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;

  /** Jobs waiting or running. */
  get length(): number {
    return this.queued;
  }

  run<T>(job: () => Promise<T>, options: QueueOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? 10 * 60_000;
    const guarded = () =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          options.onTimeout?.();
          reject(new Error(`operation still running after ${timeoutMs} ms: stopped`));
        }, timeoutMs);
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
    this.queued++;
    const result = this.tail.then(guarded, guarded).finally(() => this.queued--);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
