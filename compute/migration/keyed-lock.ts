/**
 * One holder at a time per key (a migration id): the source's run, the target's command
 * handlers and the reconciler never act on the same migration at once.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  held(key: string): boolean {
    return this.tails.has(key);
  }

  /** Runs `job` once every earlier holder of `key` has finished. */
  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const result = before.then(job, job);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Runs `job` only if nobody holds `key` now; otherwise returns undefined at once. */
  tryRun<T>(key: string, job: () => Promise<T>): Promise<T> | undefined {
    return this.held(key) ? undefined : this.run(key, job);
  }

  /** Resolves when no key is held (or after `timeoutMs`); true when idle. */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.tails.size > 0) {
      if (Date.now() > deadline) return false;
      await Promise.race([Promise.all(this.tails.values()), new Promise((r) => setTimeout(r, 500))]);
    }
    return true;
  }
}
