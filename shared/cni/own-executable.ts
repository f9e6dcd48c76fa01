// Is a plugin file in CNI_PATH our own multi-call executable (so it can run in-process)?
import { realpathSync } from 'node:fs';

let ownExecutable: string | null | undefined;

/** True when `file` resolves (realpath) to the running executable; false when either cannot be resolved. */
export function isOwnExecutable(file: string): boolean {
  if (ownExecutable === undefined) {
    try {
      ownExecutable = realpathSync(process.execPath);
    } catch {
      ownExecutable = null;
    }
  }
  try {
    return ownExecutable !== null && realpathSync(file) === ownExecutable;
  } catch {
    return false;
  }
}
