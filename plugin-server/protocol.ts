// The plugin server's wire protocol, shared by the client every plugin process runs first
// (client.ts) and the server (server.ts). One connection per plugin invocation, four frames, each a
// u32 little-endian length and that many bytes:
//   client -> server  Hello   JSON { plugin, env }       the plugin's name and its whole environment
//   server -> client  Answer  JSON { go: true } | { declined: reason }   before anything has run
//   client -> server  Stdin   stdin's bytes (the client read them before it connected)
//   server -> client  Outcome JSON { exitCode, stdout, stderr }          what the plugin would print
// A declined client runs the plugin itself, so the server declines only before the verb starts, and
// it starts the verb only once the Stdin frame came: a client that gave up waiting for the Answer
// (and runs the verb itself) never sends it, so a verb never runs twice.
import { EAGAIN, EINTR } from '../shared/linux/netlink/errno';
import { AF_UNIX, POLLOUT, pollOne, readFd, SyscallError, writeFd } from '../shared/linux/libc';

/**
 * The server's abstract AF_UNIX socket name. The abstract socket namespace belongs to the network
 * namespace (unix(7)), so a plugin reaches the server of the netns the runtime exec'd it in, or none.
 */
export const SOCKET_NAME = 'cnikit/plugin-server';

/** The workerData key that marks a plugin server thread (the entry, dispatch.ts, then serves requests). */
export const SERVER_THREAD_MARK = 'cnikit-plugin-server-thread';

/** The longest frame either side accepts, in bytes (a CNI config with its prevResult is a few KB). */
export const MAX_FRAME = 64 << 20;

export interface Hello {
  plugin: string;
  env: Record<string, string>;
}

export type Answer = { go: true } | { declined: string };

export interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The sockaddr_un of SOCKET_NAME: family AF_UNIX, a NUL, the name (no trailing NUL: the length says where it ends). */
export function socketAddress(): Uint8Array {
  const name = new TextEncoder().encode(SOCKET_NAME);
  const addr = new Uint8Array(3 + name.length);
  addr[0] = AF_UNIX; // sa_family, a little-endian u16
  addr.set(name, 3);
  return addr;
}

/**
 * Writes all of `buf` to `fd`. EAGAIN means a full non-blocking fd (a runtime's stdout pipe may be
 * one) when `full` is 'wait': poll(2) until it takes more; on a blocking socket it means its
 * SO_SNDTIMEO passed ('throw'). Throws SyscallError ("write: ...").
 */
export function writeAllFd(fd: number, buf: Uint8Array, full: 'wait' | 'throw'): void {
  for (let off = 0; off < buf.length; ) {
    const n = writeFd(fd, buf, off);
    if (n === -EAGAIN && full === 'wait') {
      const r = pollOne(fd, POLLOUT, -1);
      if (r >= 0 || r === -EINTR) continue;
    }
    if (n < 0) throw new SyscallError('write', -n);
    off += n;
  }
}

/** Writes `body` as one frame (u32 little-endian length, then the bytes) to a blocking socket. Throws SyscallError (EAGAIN: its SO_SNDTIMEO passed, EPIPE: the peer is gone). */
export function writeFrame(fd: number, body: Uint8Array): void {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  writeAllFd(fd, out, 'throw');
}

/** `v` as JSON in UTF-8, a frame's body. */
export const jsonBytes = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

/** A frame's body as JSON; an object, or an Error is thrown. */
export function parseJsonFrame(body: Uint8Array): Record<string, unknown> {
  const v: unknown = JSON.parse(new TextDecoder().decode(body));
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('a frame that is not a JSON object');
  return v as Record<string, unknown>;
}

/** Fills `buf` from a blocking fd; false at end of file before the first byte. Throws SyscallError, or Error for a short read. */
function readExactly(fd: number, buf: Uint8Array): boolean {
  for (let off = 0; off < buf.length; ) {
    const n = readFd(fd, buf, off);
    if (n < 0) throw new SyscallError('read', -n); // EAGAIN: SO_RCVTIMEO passed
    if (n === 0) {
      if (off === 0) return false;
      throw new Error(`connection closed after ${off} of ${buf.length} bytes`);
    }
    off += n;
  }
  return true;
}

/** Reads one frame from a blocking fd. Throws Error when the peer closed first or the frame is over MAX_FRAME, SyscallError for a failed read. */
export function readFrame(fd: number): Uint8Array {
  const head = new Uint8Array(4);
  if (!readExactly(fd, head)) throw new Error('connection closed');
  const len = new DataView(head.buffer).getUint32(0, true);
  if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes, over the ${MAX_FRAME} allowed`);
  const body = new Uint8Array(len);
  readExactly(fd, body);
  return body;
}
