// Entering a network namespace in-process, the way the reference's pkg/ns does it (ns_linux.go):
// validate the path is an nsfs file, setns() this thread, run the work, always switch back.
// setns only affects the calling thread; Bun runs JS and synchronous I/O on one thread, so the
// work must be synchronous — an await inside would resume outside the namespace.
import * as fs from 'node:fs';
import { CLONE_NEWNET, fstatfsType, setns } from './libc';
import { EINVAL, ENOENT, ENOTDIR, errnoMessage } from './netlink/errno';

const NSFS_MAGIC = 0x6e736673;
const PROC_SUPER_MAGIC = 0x9fa0; // /proc/<pid>/ns/net on kernels before nsfs (< 3.19)
const SELF_NETNS = '/proc/thread-self/ns/net';

/** Any failure to open or enter a network namespace. */
export class NetnsError extends Error {
  constructor(
    readonly path: string,
    message: string,
    readonly errno = 0,
  ) {
    super(message);
    this.name = 'NetnsError';
  }
}

/** The netns path does not exist (reference: NSPathNotExistErr); DEL treats this as "already gone". */
export class NetnsNotFoundError extends NetnsError {
  constructor(path: string) {
    super(path, `netns "${path}" does not exist`, ENOENT);
    this.name = 'NetnsNotFoundError';
  }
}

/** The path exists but is not a network namespace (reference: NSPathNotNSErr). */
export class NotNetnsError extends NetnsError {
  constructor(path: string) {
    super(path, `"${path}" is not a network namespace`, EINVAL);
    this.name = 'NotNetnsError';
  }
}

function errnoOf(e: unknown): number {
  const n = (e as { errno?: unknown }).errno;
  return typeof n === 'number' ? Math.abs(n) : 0;
}

// O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer forever (issue 10 item 12: a
// FIFO as CNI_NETNS hung the plugin). It changes nothing for an nsfs file; the fstatfs check below
// then refuses the FIFO, a device or a regular file as "not a network namespace".
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK;

/**
 * Opens a netns path read-only, without blocking on whatever file it names, and checks it is an
 * nsfs file. Returns the fd (caller closes it with fs.closeSync); usable as IFLA_NET_NS_FD or for
 * setns. Throws NetnsNotFoundError (ENOENT/ENOTDIR), NotNetnsError (any other kind of file), or
 * NetnsError (other open/fstatfs failures, errno kept).
 */
export function openNetnsFd(path: string): number {
  let fd: number;
  try {
    fd = fs.openSync(path, OPEN_FLAGS);
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === ENOENT || errno === ENOTDIR) throw new NetnsNotFoundError(path);
    throw new NetnsError(path, `opening netns "${path}": ${errnoMessage(errno)}`, errno);
  }
  const magic = fstatfsType(fd);
  if (magic !== NSFS_MAGIC && magic !== PROC_SUPER_MAGIC) {
    fs.closeSync(fd);
    if (magic < 0) throw new NetnsError(path, `checking netns "${path}": ${errnoMessage(magic)}`, -magic);
    throw new NotNetnsError(path);
  }
  return fd;
}

/** setns into an already opened netns fd; `path` is only for the error message. */
export function enterNetnsFd(fd: number, path: string): void {
  const r = setns(fd, CLONE_NEWNET);
  if (r === -EINVAL) throw new NotNetnsError(path); // an nsfs file of another namespace type
  if (r < 0) throw new NetnsError(path, `entering netns "${path}": ${errnoMessage(r)}`, -r);
}

function restoreOrDie(selfFd: number): void {
  const r = setns(selfFd, CLONE_NEWNET);
  if (r < 0) {
    // Continuing would create links/addresses in the wrong namespace; the Go reference abandons the
    // OS thread in this case. We have one JS thread, so the process must end.
    process.stderr.write(`fatal: cannot return to the original network namespace: ${errnoMessage(r)}\n`);
    process.exit(1);
  }
}

/**
 * Runs `fn` synchronously inside the network namespace at `path` and always switches back.
 * Throws NetnsNotFoundError / NotNetnsError for a bad path, and refuses async callbacks.
 */
export function withNetns<T>(path: string, fn: () => T): T {
  const target = openNetnsFd(path);
  try {
    const self = fs.openSync(SELF_NETNS, 'r');
    try {
      enterNetnsFd(target, path);
      let result: T;
      try {
        result = fn();
      } finally {
        restoreOrDie(self);
      }
      if (result !== null && typeof (result as { then?: unknown })?.then === 'function') {
        throw new Error('withNetns: callback returned a promise; netns work must be synchronous');
      }
      return result;
    } finally {
      fs.closeSync(self);
    }
  } finally {
    fs.closeSync(target);
  }
}

/**
 * True if `path` is the network namespace this thread is in (CNI_NETNS equal to our own netns is
 * the Go skel's ErrInvalidNetNS check). Throws like openNetnsFd for a bad path.
 */
export function isCurrentNetns(path: string): boolean {
  fs.closeSync(openNetnsFd(path));
  const a = fs.statSync(path);
  const b = fs.statSync(SELF_NETNS);
  return a.dev === b.dev && a.ino === b.ino;
}
