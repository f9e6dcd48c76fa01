// Entering a network namespace in-process, the way the reference's pkg/ns does it (ns_linux.go):
// validate the path is an nsfs file, setns() this thread, run the work, always switch back.
// setns only affects the calling thread, and JS resumes an `await` on whatever netns the thread is
// in then, so the work must be synchronous. In a long-running process, netns work runs either
// strictly synchronously here or on a thread of its own (netns-worker.ts), never across an await.
import * as fs from 'node:fs';
import { CLONE_NEWNET, fstatfsType, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED, mount, setns, umount2, unshare } from './libc';
import { EINVAL, ENOENT, ENOTDIR, errnoMessage, errnoOf, kindOfErrno, type ErrorKind } from './netlink/errno';
import { dirname } from 'node:path';

const NSFS_MAGIC = 0x6e736673;
const PROC_SUPER_MAGIC = 0x9fa0; // /proc/<pid>/ns/net on kernels before nsfs (< 3.19)
const SELF_NETNS = '/proc/thread-self/ns/net';

/** Any failure to open or enter a network namespace; `errno` positive (0 if none), `cause` the fs error if any. */
export class NetnsError extends Error {
  readonly kind: ErrorKind;
  constructor(
    readonly path: string,
    message: string,
    readonly errno = 0,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'NetnsError';
    this.kind = kindOfErrno(errno);
  }
}

/** The netns path does not exist (reference: NSPathNotExistErr); DEL treats this as "already gone". kind 'not-found'. */
export class NetnsNotFoundError extends NetnsError {
  constructor(path: string, options?: ErrorOptions) {
    super(path, `netns "${path}" does not exist`, ENOENT, options);
    this.name = 'NetnsNotFoundError';
  }
}

/** The path exists but is not a network namespace (reference: NSPathNotNSErr). kind 'invalid'. */
export class NotNetnsError extends NetnsError {
  constructor(path: string) {
    super(path, `"${path}" is not a network namespace`, EINVAL);
    this.name = 'NotNetnsError';
  }
}

/**
 * This thread could not switch back to its own network namespace after netns work. Fatal: anything
 * this thread runs from now on acts in the wrong namespace. The Go reference abandons the OS thread
 * (runtime.LockOSThread without unlock); we cannot, so whoever owns the thread must end it: a plugin
 * reports it as its CNI error and exits (main.ts exits on one that escapes), NetnsWorker terminates
 * its worker thread (netns-worker.ts). `fatal` marks it for callers that cannot import this module.
 */
export class NetnsRestoreError extends Error {
  readonly kind: ErrorKind = 'other';
  readonly fatal = true;
  constructor(readonly errno: number) {
    super(`cannot return to the original network namespace: ${errnoMessage(errno)}`);
    this.name = 'NetnsRestoreError';
  }
}

/** withNetns was given work that is not synchronous (an async function or one returning a thenable). kind 'invalid'. */
export class AsyncNetnsWorkError extends TypeError {
  readonly kind: ErrorKind = 'invalid';
  constructor(where: string, when: 'before' | 'after') {
    super(
      `withNetns(${where}): the callback ${when === 'before' ? 'is an async function' : 'returned a promise'}; ` +
        'netns work must be synchronous (an await would resume outside the namespace); async callers use a NetnsWorker',
    );
    this.name = 'AsyncNetnsWorkError';
  }
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
    if (errno === ENOENT || errno === ENOTDIR) throw new NetnsNotFoundError(path, { cause: e });
    throw new NetnsError(path, `opening netns "${path}": ${errnoMessage(errno)}`, errno, { cause: e });
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

function restore(selfFd: number): void {
  const r = setns(selfFd, CLONE_NEWNET);
  if (r < 0) throw new NetnsRestoreError(-r);
}

/**
 * The type-level guard: a callback whose return type is a promise or any other thenable does not
 * type-check (`withNetns(p, async () => ...)` is a compile error). This is the first line of
 * defence; the runtime checks in withNetns catch what the types cannot see (`any`, casts, JS callers).
 */
export type SyncNetnsWork<T> = () => T & (T extends { then: (...args: never[]) => unknown } ? never : unknown);

const ASYNC_CONSTRUCTORS = new Set(['AsyncFunction', 'AsyncGeneratorFunction']);

/** True for a native `async` function (its constructor is AsyncFunction): refused before it runs. */
export function isAsyncFunction(fn: unknown): boolean {
  return ASYNC_CONSTRUCTORS.has((fn as { constructor?: { name?: string } } | null | undefined)?.constructor?.name ?? '');
}

/**
 * Runs `fn` synchronously inside the network namespace at `path` (on this thread) and always
 * switches back. Returns what `fn` returns.
 * Throws NetnsNotFoundError / NotNetnsError / NetnsError for a bad path; AsyncNetnsWorkError for an
 * async function before anything runs, or (after switching back) for a callback that returned a
 * thenable, whose rejection is then swallowed; NetnsRestoreError (fatal, the thread must end) if
 * it cannot switch back. Errors thrown by `fn` propagate unchanged after switching back.
 */
export function withNetns<T>(path: string, fn: SyncNetnsWork<T>): T {
  // Refused before opening anything: nothing of an async function may run in the namespace.
  if (isAsyncFunction(fn)) throw new AsyncNetnsWorkError(JSON.stringify(path), 'before');
  const target = openNetnsFd(path);
  try {
    const self = fs.openSync(SELF_NETNS, 'r');
    try {
      enterNetnsFd(target, path);
      let result: T;
      try {
        result = fn();
      } finally {
        restore(self);
      }
      const then = (result as { then?: unknown } | null | undefined)?.then;
      if (typeof then === 'function') {
        // Already back in our netns; the work's continuation runs outside it, so it is refused.
        then.call(result, undefined, () => undefined);
        throw new AsyncNetnsWorkError(JSON.stringify(path), 'after');
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
 * Makes `dir` (e.g. /run/netns) a shared mount point, as `ip netns add` does (iproute2 netns.c
 * create_netns_dir + netns_add): mounts under it then propagate to mount namespaces cloned later,
 * and the bind mount of each netns file stays visible to processes of this mount namespace. When
 * `dir` is not a mount point yet (EINVAL), it is bind-mounted onto itself first. Throws NetnsError.
 */
function shareNetnsDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  let r = mount('none', dir, 'none', MS_SHARED | MS_REC);
  if (r === -EINVAL) {
    const b = mount(dir, dir, 'none', MS_BIND | MS_REC);
    if (b < 0) throw new NetnsError(dir, `bind-mounting ${dir} onto itself: ${errnoMessage(b)}`, -b);
    r = mount('none', dir, 'none', MS_SHARED | MS_REC);
  }
  if (r < 0) throw new NetnsError(dir, `making ${dir} a shared mount: ${errnoMessage(r)}`, -r);
}

/**
 * Creates a new network namespace held by a bind mount at `path` (normally /run/netns/<name>), the
 * way `ip netns add <name>` does: an empty file created O_EXCL, then this thread alone unshares a
 * new netns, its /proc/thread-self/ns/net is bind-mounted on the file, and the thread switches
 * back at once, synchronously (setns/unshare act on the calling thread only, see the module
 * comment). The namespace has only a down `lo`. Throws NetnsError (EEXIST when `path` exists; the
 * file is removed again on any failure) or NetnsRestoreError (fatal) if this thread cannot return.
 */
export function createNamedNetns(path: string): void {
  shareNetnsDir(dirname(path));
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0);
  } catch (e) {
    const errno = errnoOf(e);
    throw new NetnsError(path, `creating "${path}": ${errnoMessage(errno)}`, errno, { cause: e });
  }
  fs.closeSync(fd);
  const self = fs.openSync(SELF_NETNS, 'r');
  let failure: NetnsError | null = null;
  try {
    const u = unshare(CLONE_NEWNET);
    if (u < 0) failure = new NetnsError(path, `unshare(CLONE_NEWNET): ${errnoMessage(u)}`, -u);
    else {
      const m = mount(SELF_NETNS, path, 'none', MS_BIND);
      restore(self);
      if (m < 0) failure = new NetnsError(path, `bind-mounting the new netns on "${path}": ${errnoMessage(m)}`, -m);
    }
  } finally {
    fs.closeSync(self);
  }
  if (failure) {
    fs.rmSync(path, { force: true });
    throw failure;
  }
}

/**
 * Removes a namespace made by createNamedNetns (or `ip netns add`): lazy unmount, then unlink, as
 * `ip netns del` does. Already gone (no file, or a file that is not mounted) is success: teardown
 * must be idempotent. Throws NetnsError for any other failure.
 */
export function deleteNamedNetns(path: string): void {
  const r = umount2(path, MNT_DETACH);
  if (r < 0 && r !== -EINVAL && r !== -ENOENT) throw new NetnsError(path, `unmounting "${path}": ${errnoMessage(r)}`, -r);
  try {
    fs.unlinkSync(path);
  } catch (e) {
    if (errnoOf(e) !== ENOENT) throw new NetnsError(path, `removing "${path}": ${errnoMessage(errnoOf(e))}`, errnoOf(e), { cause: e });
  }
}
