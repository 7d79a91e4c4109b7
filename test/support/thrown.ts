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
