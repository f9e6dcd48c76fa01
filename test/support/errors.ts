// The error a config loader throws, for unit tests that assert its CNI code and message.
import type { CniError } from '../../shared/cni/errors';

/** Runs `f` and returns what it threw; fails the test when it returns normally. */
export function errorOf(f: () => unknown): CniError {
  try {
    f();
  } catch (e) {
    return e as CniError;
  }
  throw new Error('expected an error');
}
