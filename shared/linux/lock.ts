// The store's `lock` file, flock(2)ed exactly like the reference's go-filemutex so both plugins
// exclude each other on one node. Unlike the reference, the wait is bounded (plugins#561: thousands
// of processes piled up on one lock): bun has no async flock, so LOCK_NB is polled with a short
// back-off until the bound, then code 11 (try again later).
import { closeSync, constants, openSync } from 'node:fs';
import { CniError, ErrInternal, ErrTryAgainLater } from '../cni/errors';

export interface Flocker {
  flock(fd: number, op: number): number; // 0 or -errno
  LOCK_EX: number;
  LOCK_NB: number;
  LOCK_UN: number;
}

const EWOULDBLOCK = 11;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

export class FileLock {
  private fd = -1;
  private held = false;

  constructor(
    private readonly path: string,
    private readonly flocker: Flocker,
    private readonly timeoutMs: number,
  ) {}

  lock(): void {
    // Node opens with O_CLOEXEC already. The reference opens it O_CREAT|O_RDONLY with mode 0750.
    if (this.fd < 0) this.fd = openSync(this.path, constants.O_CREAT | constants.O_RDONLY, 0o750);
    const { flock, LOCK_EX, LOCK_NB } = this.flocker;
    const deadline = Date.now() + this.timeoutMs;
    for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
      const r = flock(this.fd, LOCK_EX | LOCK_NB);
      if (r === 0) {
        this.held = true;
        return;
      }
      if (r !== -EWOULDBLOCK) throw new CniError(ErrInternal, `failed to lock ${this.path}: errno ${-r}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new CniError(ErrTryAgainLater, `timed out after ${this.timeoutMs} ms waiting for the lock ${this.path}`, 'another host-local call holds it; try again later (ipam.lockTimeoutMs)');
      sleepMs(Math.min(delay, left));
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
