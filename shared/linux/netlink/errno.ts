// Linux errno numbers and their messages, pure TS so jest can test error mapping without bun:ffi.
// Messages are glibc's strerror() lower-cased, which is what Go's syscall.Errno prints
// ("file exists", "no such device"): the reference plugins' error texts use them.

export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const ENFILE = 23;
export const EMFILE = 24;
export const ENOSPC = 28;
export const ERANGE = 34;
export const EDEADLK = 35;
export const ENAMETOOLONG = 36;
export const ENOLCK = 37;
export const ENOSYS = 38;
export const ENOTEMPTY = 39;
export const ENODATA = 61;
export const ENOBUFS = 105;
export const EOPNOTSUPP = 95;
export const EAFNOSUPPORT = 97;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const ENETDOWN = 100;
export const ENETUNREACH = 101;
export const ENOTCONN = 107;
export const ETIMEDOUT = 110;
export const EHOSTUNREACH = 113;
export const EPROTONOSUPPORT = 93;
export const EMSGSIZE = 90;
export const ENOTSUP = EOPNOTSUPP;
export const EWOULDBLOCK = EAGAIN;

const MESSAGES: Record<number, string> = {
  [EPERM]: 'operation not permitted',
  [ENOENT]: 'no such file or directory',
  [ESRCH]: 'no such process',
  [EINTR]: 'interrupted system call',
  [EIO]: 'input/output error',
  [ENXIO]: 'no such device or address',
  [EBADF]: 'bad file descriptor',
  [EAGAIN]: 'resource temporarily unavailable',
  [ENOMEM]: 'cannot allocate memory',
  [EACCES]: 'permission denied',
  [EFAULT]: 'bad address',
  [EBUSY]: 'device or resource busy',
  [EEXIST]: 'file exists',
  [ENODEV]: 'no such device',
  [ENOTDIR]: 'not a directory',
  [EISDIR]: 'is a directory',
  [EINVAL]: 'invalid argument',
  [ENFILE]: 'too many open files in system',
  [EMFILE]: 'too many open files',
  [ENOSPC]: 'no space left on device',
  [ERANGE]: 'numerical result out of range',
  [EDEADLK]: 'resource deadlock avoided',
  [ENAMETOOLONG]: 'file name too long',
  [ENOLCK]: 'no locks available',
  [ENOSYS]: 'function not implemented',
  [ENOTEMPTY]: 'directory not empty',
  [ENODATA]: 'no data available',
  [EMSGSIZE]: 'message too long',
  [EPROTONOSUPPORT]: 'protocol not supported',
  [EOPNOTSUPP]: 'operation not supported',
  [EAFNOSUPPORT]: 'address family not supported by protocol',
  [EADDRINUSE]: 'address already in use',
  [EADDRNOTAVAIL]: 'cannot assign requested address',
  [ENETDOWN]: 'network is down',
  [ENETUNREACH]: 'network is unreachable',
  [ENOBUFS]: 'no buffer space available',
  [ENOTCONN]: 'transport endpoint is not connected',
  [ETIMEDOUT]: 'connection timed out',
  [EHOSTUNREACH]: 'no route to host',
};

/** Message for an errno (positive or negative), e.g. 17 -> "file exists". */
export function errnoMessage(errno: number): string {
  const e = Math.abs(errno);
  return MESSAGES[e] ?? `errno ${e}`;
}

/**
 * What a caller can do about a failure, the same across the Linux layer (netlink, netns, sysctl,
 * syscalls, netfilter tools): DEL treats 'not-found' as done, ADD 'exists' as already there, a
 * daemon retries 'try-again'. Every error class of shared/linux and shared/netfilter has a `kind`.
 */
export type ErrorKind = 'not-found' | 'exists' | 'try-again' | 'permission' | 'invalid' | 'other';

const KINDS: Record<number, ErrorKind> = {
  [ENOENT]: 'not-found',
  [ENOTDIR]: 'not-found', // a path component is not a directory: the object is not there either
  [ENODEV]: 'not-found',
  [ENXIO]: 'not-found',
  [ESRCH]: 'not-found',
  [EEXIST]: 'exists',
  [EAGAIN]: 'try-again',
  [EINTR]: 'try-again',
  [EBUSY]: 'try-again',
  [ENOBUFS]: 'try-again',
  [ETIMEDOUT]: 'try-again',
  [EPERM]: 'permission',
  [EACCES]: 'permission',
  [EINVAL]: 'invalid',
  [ERANGE]: 'invalid',
  [ENAMETOOLONG]: 'invalid',
  [EMSGSIZE]: 'invalid',
  [EOPNOTSUPP]: 'invalid',
  [EAFNOSUPPORT]: 'invalid',
  [EPROTONOSUPPORT]: 'invalid',
};

/** The kind of an errno (positive or negative), e.g. 17 (EEXIST) -> 'exists'; unknown -> 'other'. */
export function kindOfErrno(errno: number): ErrorKind {
  return KINDS[Math.abs(errno)] ?? 'other';
}

/** The `kind` an error carries (any error of the Linux layer has one), else 'other'. */
export function errorKind(e: unknown): ErrorKind {
  const k = (e as { kind?: unknown } | null | undefined)?.kind;
  return typeof k === 'string' && k in KIND_NAMES ? (k as ErrorKind) : 'other';
}

const KIND_NAMES: Record<ErrorKind, true> = { 'not-found': true, exists: true, 'try-again': true, permission: true, invalid: true, other: true };

/** The positive errno of a node:fs / child_process error (Node and Bun report it negative), else `fallback`. */
export function errnoOf(e: unknown, fallback = 0): number {
  const n = (e as { errno?: unknown } | null | undefined)?.errno;
  return typeof n === 'number' && n !== 0 ? Math.abs(n) : fallback;
}
