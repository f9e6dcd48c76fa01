// The store's `lock` file, flock(2)ed exactly like the reference's go-filemutex so both plugins
// exclude each other on one node. Unlike the reference, the wait is bounded (plugins#561: thousands
// of processes piled up on one lock): there is no async flock, so LOCK_NB is polled with a short
// back-off until the bound, then code 11 (try again later). lock() sleeps between polls (a
// short-lived plugin has nothing else to do); acquire() waits with timers, so a long-running
// process's event loop goes on while another process holds the lock.
import { closeSync, constants, openSync } from 'node:fs';
import { CniError, ErrInternal, ErrTryAgainLater } from '../cni/errors';
import type { PinnedDir } from './files';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN, SyscallError } from './libc';
import { EWOULDBLOCK, errnoMessage } from './netlink/errno';

export interface Flocker {
  flock(fd: number, op: number): number; // 0 or -errno
  LOCK_EX: number;
  LOCK_NB: number;
  LOCK_UN: number;
}

/** flock(2) through libc (bun:ffi, loaded on first call); tests pass their own Flocker. */
export const libcFlocker: Flocker = { flock, LOCK_EX, LOCK_NB, LOCK_UN };

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);
const MAX_DELAY_MS = 50;

export class FileLock {
  private fd = -1;
  private held = false;

  /**
   * `path` is opened on first use (O_CREAT) unless `fd` is already open on it; `timeoutMs` is how
   * long lock()/acquire() wait for another holder before failing with code 11; `busy` is the
   * timeout's details (who holds it, what to tune). close() closes the fd either way.
   */
  constructor(
    private readonly path: string,
    private readonly flocker: Flocker,
    private readonly timeoutMs: number,
    private readonly busy = 'another process holds it; try again later',
    fd = -1,
  ) {
    this.fd = fd;
  }

  /**
   * A lock on `name` inside `dir`, the file opened there at once (O_CREAT, `mode`) without
   * following a symlink planted in its place; messages name `<dir>/<name>`. Throws FileError when it
   * cannot be opened.
   */
  static inDir(dir: PinnedDir, name: string, mode: number, timeoutMs: number, busy: string, flocker: Flocker = libcFlocker): FileLock {
    return new FileLock(`${dir.path}/${name}`, flocker, timeoutMs, busy, dir.open(name, constants.O_CREAT | constants.O_RDONLY, mode));
  }

  /** One LOCK_NB attempt: true if taken, false if another process holds it; throws CniError 999 (cause: SyscallError) otherwise. */
  private tryLock(): boolean {
    // Node opens with O_CLOEXEC already. The reference opens it O_CREAT|O_RDONLY with mode 0750.
    if (this.fd < 0) this.fd = openSync(this.path, constants.O_CREAT | constants.O_RDONLY, 0o750);
    const { flock, LOCK_EX, LOCK_NB } = this.flocker;
    const r = flock(this.fd, LOCK_EX | LOCK_NB);
    if (r === 0) return (this.held = true);
    if (r === -EWOULDBLOCK) return false;
    throw new CniError(ErrInternal, `failed to lock ${this.path}: ${errnoMessage(r)}`, '', { cause: new SyscallError('flock', -r) });
  }

  private timedOut(): CniError {
    return new CniError(ErrTryAgainLater, `timed out after ${this.timeoutMs} ms waiting for the lock ${this.path}`, this.busy);
  }

  /**
   * Takes the lock, blocking this thread between polls (1, 2, 4 … 50 ms) for at most timeoutMs.
   * Throws CniError 11 on timeout, CniError 999 if flock fails otherwise.
   */
  lock(): void {
    const deadline = Date.now() + this.timeoutMs;
    for (let delay = 1; !this.tryLock(); delay = Math.min(delay * 2, MAX_DELAY_MS)) {
      const left = deadline - Date.now();
      if (left <= 0) throw this.timedOut();
      sleepMs(Math.min(delay, left));
    }
  }

  /**
   * lock() for long-running processes: the same polls and bound, waiting with timers instead of
   * blocking. flock excludes other open files, not callers sharing this one, so while this object
   * holds the lock a second acquire() on it waits for unlock() like any other process would.
   */
  async acquire(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    for (let delay = 1; this.held || !this.tryLock(); delay = Math.min(delay * 2, MAX_DELAY_MS)) {
      const left = deadline - Date.now();
      if (left <= 0) throw this.timedOut();
      await new Promise((r) => setTimeout(r, Math.min(delay, left)));
    }
  }

  unlock(): void {
    if (this.held) this.flocker.flock(this.fd, this.flocker.LOCK_UN);
    this.held = false;
  }

  close(): void {
    this.unlock();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
