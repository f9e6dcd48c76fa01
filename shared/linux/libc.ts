// bun:ffi bindings to the few libc calls Node/Bun do not expose (setns, flock, AF_NETLINK sockets).
// Convention: every wrapper returns a non-negative result or -errno; it never throws for a failed
// syscall. Callers turn -errno into their own typed error (see SyscallError / check()).
// The library is opened on first use, so importing this module costs nothing (and jest, which maps
// bun:ffi to a throwing stub, can import modules that import this one as long as it never calls in).
import { dlopen, ptr, read } from 'bun:ffi';
import { EINTR, ENOSYS, EPERM, errnoMessage, kindOfErrno, type ErrorKind } from './netlink/errno';

export { errnoMessage } from './netlink/errno';

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export const CLONE_NEWNET = 0x40000000;

export const MS_BIND = 0x1000;
export const MS_REC = 0x4000;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;

export const AF_UNIX = 1;
export const AF_NETLINK = 16;
export const SOCK_STREAM = 1;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOCK_NONBLOCK = 0o4000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_PEERCRED = 17;
export const SO_RCVTIMEO = 20; // struct timeval on 64-bit Linux (asm-generic and x86_64 alike)
export const SO_SNDTIMEO = 21;
export const SHUT_RDWR = 2;
export const SOL_NETLINK = 270;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
export const MSG_DONTWAIT = 0x40;
export const MSG_PEEK = 0x2;
export const MSG_TRUNC = 0x20;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;

/** A failed syscall: `<op>: <strerror>` with the (positive) errno and its kind for callers that branch on it. */
export class SyscallError extends Error {
  readonly kind: ErrorKind;
  constructor(
    readonly op: string,
    readonly errno: number,
  ) {
    super(`${op}: ${errnoMessage(errno)}`);
    this.name = 'SyscallError';
    this.kind = kindOfErrno(errno);
  }
}

/** Throws SyscallError if `ret` is -errno; returns it otherwise. */
export function check(ret: number, op: string): number {
  if (ret < 0) throw new SyscallError(op, -ret);
  return ret;
}

const SYMBOLS = {
  __errno_location: { args: [], returns: 'ptr' },
  setns: { args: ['i32', 'i32'], returns: 'i32' },
  socket: { args: ['i32', 'i32', 'i32'], returns: 'i32' },
  bind: { args: ['i32', 'ptr', 'u32'], returns: 'i32' },
  getsockname: { args: ['i32', 'ptr', 'ptr'], returns: 'i32' },
  sendto: { args: ['i32', 'ptr', 'u64', 'i32', 'ptr', 'u32'], returns: 'i64_fast' },
  recvfrom: { args: ['i32', 'ptr', 'u64', 'i32', 'ptr', 'ptr'], returns: 'i64_fast' },
  close: { args: ['i32'], returns: 'i32' },
  connect: { args: ['i32', 'ptr', 'u32'], returns: 'i32' },
  listen: { args: ['i32', 'i32'], returns: 'i32' },
  accept4: { args: ['i32', 'ptr', 'ptr', 'i32'], returns: 'i32' },
  shutdown: { args: ['i32', 'i32'], returns: 'i32' },
  getsockopt: { args: ['i32', 'i32', 'i32', 'ptr', 'ptr'], returns: 'i32' },
  read: { args: ['i32', 'ptr', 'u64'], returns: 'i64_fast' },
  write: { args: ['i32', 'ptr', 'u64'], returns: 'i64_fast' },
  flock: { args: ['i32', 'i32'], returns: 'i32' },
  setsockopt: { args: ['i32', 'i32', 'i32', 'ptr', 'u32'], returns: 'i32' },
  poll: { args: ['ptr', 'u64', 'i32'], returns: 'i32' },
  fstatfs: { args: ['i32', 'ptr'], returns: 'i32' },
  unshare: { args: ['i32'], returns: 'i32' },
  mount: { args: ['ptr', 'ptr', 'ptr', 'u64', 'ptr'], returns: 'i32' },
  umount2: { args: ['ptr', 'i32'], returns: 'i32' },
  // syscall(2) for the io_uring calls glibc has no wrapper for; pointers go as addresses (ptr()).
  syscall: { args: ['i64', 'i64', 'i64', 'i64', 'i64'], returns: 'i64' },
} as const;

type Lib = ReturnType<typeof openLib>;
let lib: Lib | undefined;

function openLib() {
  return dlopen('libc.so.6', SYMBOLS).symbols as unknown as {
    __errno_location(): number;
    setns(fd: number, nstype: number): number;
    socket(domain: number, type: number, protocol: number): number;
    bind(fd: number, addr: Uint8Array, len: number): number;
    getsockname(fd: number, addr: Uint8Array, len: Uint8Array): number;
    sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, addrlen: number): number;
    recvfrom(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, addrlen: Uint8Array | null): number;
    close(fd: number): number;
    connect(fd: number, addr: Uint8Array, len: number): number;
    listen(fd: number, backlog: number): number;
    accept4(fd: number, addr: null, len: null, flags: number): number;
    shutdown(fd: number, how: number): number;
    getsockopt(fd: number, level: number, name: number, val: Uint8Array, len: Uint8Array): number;
    read(fd: number, buf: Uint8Array, len: number): number;
    write(fd: number, buf: Uint8Array, len: number): number;
    flock(fd: number, op: number): number;
    setsockopt(fd: number, level: number, name: number, val: Uint8Array, len: number): number;
    poll(fds: Uint8Array, nfds: number, timeout: number): number;
    fstatfs(fd: number, buf: Uint8Array): number;
    unshare(flags: number): number;
    mount(source: Uint8Array | null, target: Uint8Array, fstype: Uint8Array | null, flags: number, data: Uint8Array | null): number;
    umount2(target: Uint8Array, flags: number): number;
    syscall(nr: number, a1: number, a2: number, a3: number, a4: number): number | bigint;
  };
}

function libc(): Lib {
  return (lib ??= openLib());
}

// errno is read straight after the failing call, before any other JS runs that could call libc.
function errno(): number {
  return read.i32(libc().__errno_location(), 0);
}

function ret(r: number): number {
  return r < 0 ? -errno() : r;
}

/** flock(2), retried on EINTR. Returns 0 or -errno (-EWOULDBLOCK/-EAGAIN with LOCK_NB when held). */
export function flock(fd: number, op: number): number {
  for (;;) {
    const r = ret(libc().flock(fd, op));
    if (r !== -EINTR) return r;
  }
}

/** setns(2). Returns 0 or -errno. */
export function setns(fd: number, nstype: number): number {
  return ret(libc().setns(fd, nstype));
}

/** socket(2). Returns the fd or -errno. */
export function socket(domain: number, type: number, protocol: number): number {
  return ret(libc().socket(domain, type, protocol));
}

/** bind(2) with a raw sockaddr. Returns 0 or -errno. */
export function bind(fd: number, addr: Uint8Array): number {
  return ret(libc().bind(fd, addr, addr.byteLength));
}

/** getsockname(2) into `addr` (its length is the buffer size). Returns 0 or -errno. */
export function getsockname(fd: number, addr: Uint8Array): number {
  const len = new Uint32Array([addr.byteLength]);
  return ret(libc().getsockname(fd, addr, new Uint8Array(len.buffer)));
}

/** sendto(2). Returns bytes sent or -errno. */
export function sendto(fd: number, buf: Uint8Array, flags = 0, addr: Uint8Array | null = null): number {
  for (;;) {
    const r = ret(libc().sendto(fd, buf, buf.byteLength, flags, addr, addr ? addr.byteLength : 0));
    if (r !== -EINTR) return r;
  }
}

/** recv(2) (recvfrom without an address), retried on EINTR. Returns bytes read or -errno. */
export function recv(fd: number, buf: Uint8Array, flags = 0): number {
  for (;;) {
    const r = ret(libc().recvfrom(fd, buf, buf.byteLength, flags, null, null));
    if (r !== -EINTR) return r;
  }
}

/**
 * recvfrom(2) that also fills `addr` (a raw sockaddr buffer, e.g. 12 bytes of sockaddr_nl),
 * retried on EINTR. Returns bytes read (the full datagram length with MSG_TRUNC) or -errno.
 */
export function recvFrom(fd: number, buf: Uint8Array, flags: number, addr: Uint8Array): number {
  const len = new Uint32Array(1);
  for (;;) {
    len[0] = addr.byteLength;
    const r = ret(libc().recvfrom(fd, buf, buf.byteLength, flags, addr, new Uint8Array(len.buffer)));
    if (r !== -EINTR) return r;
  }
}

/** close(2). Returns 0 or -errno. */
export function close(fd: number): number {
  return ret(libc().close(fd));
}

/** connect(2) with a raw sockaddr, retried on EINTR. Returns 0 or -errno. */
export function connect(fd: number, addr: Uint8Array): number {
  for (;;) {
    const r = ret(libc().connect(fd, addr, addr.byteLength));
    if (r !== -EINTR) return r;
  }
}

/** listen(2). Returns 0 or -errno. */
export function listen(fd: number, backlog: number): number {
  return ret(libc().listen(fd, backlog));
}

/** accept4(2) without the peer's address, retried on EINTR. Returns the new fd or -errno. */
export function accept4(fd: number, flags: number): number {
  for (;;) {
    const r = ret(libc().accept4(fd, null, null, flags));
    if (r !== -EINTR) return r;
  }
}

/** shutdown(2). Returns 0 or -errno. */
export function shutdown(fd: number, how: number): number {
  return ret(libc().shutdown(fd, how));
}

/** read(2) into `buf` from offset `off`, retried on EINTR. Returns bytes read (0 at EOF) or -errno. */
export function readFd(fd: number, buf: Uint8Array, off = 0): number {
  for (;;) {
    const r = ret(libc().read(fd, buf.subarray(off), buf.byteLength - off));
    if (r !== -EINTR) return r;
  }
}

/** write(2) of `buf` from offset `off`, retried on EINTR. Returns bytes written or -errno. */
export function writeFd(fd: number, buf: Uint8Array, off = 0): number {
  for (;;) {
    const r = ret(libc().write(fd, buf.subarray(off), buf.byteLength - off));
    if (r !== -EINTR) return r;
  }
}

/** The peer of a connected AF_UNIX socket as the kernel recorded it at connect (SO_PEERCRED), or -errno. */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } | number {
  const buf = new Uint8Array(12); // struct ucred: pid_t pid, uid_t uid, gid_t gid
  const len = new Uint32Array([12]);
  const r = ret(libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, new Uint8Array(len.buffer)));
  if (r < 0) return r;
  const dv = new DataView(buf.buffer);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}

/** Sets SO_RCVTIMEO or SO_SNDTIMEO to `ms` (a struct timeval). Returns 0 or -errno. */
export function setSocketTimeout(fd: number, name: typeof SO_RCVTIMEO | typeof SO_SNDTIMEO, ms: number): number {
  const tv = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1000)]);
  return ret(libc().setsockopt(fd, SOL_SOCKET, name, new Uint8Array(tv.buffer), 16));
}

// io_uring's syscall numbers are the same on every architecture (asm-generic, Linux 5.1).
const SYS_io_uring_setup = 425;
const SYS_io_uring_register = 427;
const IORING_REGISTER_FILES = 2;
const IO_URING_PARAMS_SIZE = 120; // struct io_uring_params
const IO_URING_PARAMS_FEATURES = 20; // its u32 features
// Linux 5.12: io_uring's workers are the process's own threads, and a closed ring is torn down by a
// kernel worker. Before that, closing a ring could free it, and its files, in the closing thread.
const IORING_FEAT_NATIVE_WORKERS = 1 << 9;
let ringUnusable = false; // learnt once per process: no io_uring here, or one too old to help

/**
 * Closes `fd` so that the kernel releases its file in a kernel worker rather than in the calling
 * thread: the file is registered in a throwaway one-entry io_uring (IORING_REGISTER_FILES), then
 * both fds are closed; the ring's teardown (io_ring_exit_work) drops the file afterwards. For a
 * NETLINK_NETFILTER socket, whose release waits out an RCU grace period (shared/netfilter/nfnl.ts).
 * Returns true when handed off; false when it was closed here: io_uring unavailable (ENOSYS, EPERM
 * under kernel.io_uring_disabled or a seccomp filter, EMFILE) or older than Linux 5.12. Never throws.
 */
export function closeInBackground(fd: number): boolean {
  if (ringUnusable) {
    close(fd);
    return false;
  }
  const params = new Uint8Array(IO_URING_PARAMS_SIZE);
  const ring = ret(Number(libc().syscall(SYS_io_uring_setup, 1, ptr(params), 0, 0)));
  const native = ring >= 0 && (new DataView(params.buffer).getUint32(IO_URING_PARAMS_FEATURES, true) & IORING_FEAT_NATIVE_WORKERS) !== 0;
  if (!native) {
    if (ring >= 0) close(ring);
    // ENOSYS, EPERM, a kernel before 5.12: so for the rest of this process. EMFILE and the like may pass.
    if (ring >= 0 || ring === -ENOSYS || ring === -EPERM) ringUnusable = true;
    close(fd);
    return false;
  }
  const files = new Int32Array([fd]);
  const registered = ret(Number(libc().syscall(SYS_io_uring_register, ring, IORING_REGISTER_FILES, ptr(files), 1))) >= 0;
  close(fd);
  close(ring);
  return registered;
}

/** setsockopt(2) with an int value. Returns 0 or -errno. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  const v = new Int32Array([value]);
  return ret(libc().setsockopt(fd, level, name, new Uint8Array(v.buffer), 4));
}

/**
 * poll(2) on one fd for `events`, waiting at most `timeoutMs` (-1 = forever).
 * Returns the revents mask (0 on timeout) or -errno.
 */
export function pollOne(fd: number, events: number, timeoutMs: number): number {
  const pfd = new Uint8Array(8);
  const dv = new DataView(pfd.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, events, true);
  const r = ret(libc().poll(pfd, 1, timeoutMs));
  if (r <= 0) return r;
  return dv.getInt16(6, true);
}

/** fstatfs(2) f_type (the filesystem magic). Returns the magic (>= 0) or -errno. */
export function fstatfsType(fd: number): number {
  const buf = new Uint8Array(120); // struct statfs is 120 bytes on 64-bit; f_type is the first long
  const r = ret(libc().fstatfs(fd, buf));
  if (r < 0) return r;
  return new DataView(buf.buffer).getUint32(0, true);
}

const cString = (s: string): Uint8Array => Buffer.from(`${s}\0`);

/** unshare(2). Returns 0 or -errno. Only the calling thread moves (for CLONE_NEWNET). */
export function unshare(flags: number): number {
  return ret(libc().unshare(flags));
}

/** mount(2) without data; null source/fstype are passed as NULL. Returns 0 or -errno. */
export function mount(source: string | null, target: string, fstype: string | null, flags: number): number {
  return ret(libc().mount(source === null ? null : cString(source), cString(target), fstype === null ? null : cString(fstype), flags, null));
}

/** umount2(2). Returns 0 or -errno. */
export function umount2(target: string, flags: number): number {
  return ret(libc().umount2(cString(target), flags));
}

/** Address of a buffer, for the rare call that needs a raw pointer. */
export function addressOf(buf: Uint8Array): number {
  return ptr(buf);
}
