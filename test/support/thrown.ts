/** The HerdError a call throws (for asserting its code and message); fails the test when it throws nothing or something else. */
import { HerdError } from '../../protocol/errors.ts';

export function thrownHerdError(fn: () => unknown): HerdError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HerdError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

/** What a promise rejects with (for asserting its code and message); fails the test when it resolves. */
export async function thrown(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('did not reject');
}
