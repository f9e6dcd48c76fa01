// A synchronous rtnetlink socket over libc: send one request, read until its ACK/DONE/ERROR.
// A socket belongs to the netns that was current when it was created, so `openNetlink(path)`
// creates it inside `path` and every later request acts there — no setns per operation.
import {
  AF_NETLINK,
  MSG_TRUNC,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SyscallError,
  bind,
  close,
  closeInBackground,
  getsockname,
  pollOne,
  recvFrom,
  sendto,
  setsockoptInt,
  socket,
} from '../libc';
import { withNetns } from '../netns';
import {
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_NETFILTER,
  NETLINK_ROUTE,
  NLMSGERR_ATTR_MSG,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
} from './constants';
import { ENOBUFS, ETIMEDOUT } from './errno';

const OVERRUN = Symbol('netlink receive buffer overrun');
import { NetlinkError } from './errors';
import { type NlMsg, NLMSG_HDRLEN, align4, attrString, parseAttrs, parseMessages } from './message';

const RECV_BUF = 256 * 1024; // kernel dump datagrams are <= 32 KiB; one link message can be larger
const DUMP_RETRIES = 5;
// Bound on waiting for one reply datagram: the kernel answers at once, so this only ends a wait for
// a reply that was dropped (see request()) instead of hanging the pod's ADD forever.
const REPLY_TIMEOUT_MS = 5000;
const GET_RETRIES = 5;
const EVENT_POLL_MAX_MS = 20; // longest sleep between polls of nextEventAsync

function sockaddrNl(groups = 0): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_NETLINK, true);
  dv.setUint32(8, groups, true);
  return b;
}

/** Decodes an NLMSG_ERROR (or DONE) payload: errno (positive, 0 = ACK) and the extack text. */
export function decodeError(m: NlMsg): { errno: number; extack: string } {
  const errno = m.payload.length >= 4 ? -m.payload.readInt32LE(0) : 0;
  let extack = '';
  if (m.flags & NLM_F_ACK_TLVS) {
    let off = 4;
    if (m.type === NLMSG_ERROR) {
      const origLen = m.payload.length >= 8 ? m.payload.readUInt32LE(4) : NLMSG_HDRLEN;
      off += m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(origLen);
    }
    const msg = parseAttrs(m.payload, off).get(NLMSGERR_ATTR_MSG);
    if (msg) extack = attrString(msg);
  }
  return { errno, extack };
}

export class NetlinkSocket {
  private seq = (Date.now() & 0x3fffffff) >>> 0;
  private readonly buf = new Uint8Array(RECV_BUF);
  private readonly from = new Uint8Array(12);
  private readonly kernel = sockaddrNl();
  private readonly queued: NlMsg[] = [];
  private lostEvents = false;
  private closed = false;
  private nsPath: string | undefined; // where openIn() bound it; an event socket is opened there too
  private events: NetlinkSocket | undefined;

  private constructor(
    readonly fd: number,
    readonly portId: number,
    readonly protocol: number,
  ) {}

  /** Opens a netlink socket (default NETLINK_ROUTE; NETLINK_NETFILTER for conntrack) in this thread's current netns. */
  static open(protocol = NETLINK_ROUTE): NetlinkSocket {
    const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw new SyscallError('opening netlink socket', -fd);
    try {
      const addr = sockaddrNl();
      let r = bind(fd, addr);
      if (r < 0) throw new SyscallError('binding netlink socket', -r);
      r = getsockname(fd, addr);
      if (r < 0) throw new SyscallError('netlink getsockname', -r);
      // Best effort: extended acks carry the kernel's reason text, CAP_ACK keeps acks small.
      setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      setsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
      return new NetlinkSocket(fd, new DataView(addr.buffer).getUint32(4, true), protocol);
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /** Opens a socket bound to the netns at `path` (the setns round trip happens only here). */
  static openIn(path: string, protocol = NETLINK_ROUTE): NetlinkSocket {
    const s = withNetns(path, () => NetlinkSocket.open(protocol));
    s.nsPath = path;
    return s;
  }

  /**
   * Closes the socket (and its event socket). A NETLINK_NETFILTER socket is handed to the kernel to
   * release in the background (closeInBackground): its release waits out an RCU grace period (nfnl.ts).
   */
  close(): void {
    this.events?.close();
    this.events = undefined;
    if (!this.closed) {
      this.closed = true;
      if (this.protocol === NETLINK_NETFILTER) closeInBackground(this.fd);
      else close(this.fd);
    }
  }

  private send(msg: Buffer, op: string, object: string): number {
    const seq = (this.seq = (this.seq + 1) >>> 0);
    msg.writeUInt32LE(seq, 8);
    msg.writeUInt32LE(0, 12);
    const r = sendto(this.fd, msg, 0, this.kernel);
    if (r < 0) throw new NetlinkError(op, object, -r);
    return seq;
  }

  /**
   * Reads one datagram. Multicast events are queued; returns only unicast replies, or OVERRUN when
   * the receive buffer overflowed. The kernel sends replies and acks with MSG_DONTWAIT, so while a
   * subscription floods the buffer (64 pods starting at once) our reply itself may have been dropped.
   */
  private recvReplies(op: string, object: string): NlMsg[] | typeof OVERRUN {
    for (;;) {
      const ready = pollOne(this.fd, POLLIN, REPLY_TIMEOUT_MS);
      if (ready < 0) throw new NetlinkError(op, object, -ready);
      if (ready === 0) throw new NetlinkError(op, object, ETIMEDOUT, 'no reply from the kernel');
      const n = recvFrom(this.fd, this.buf, MSG_TRUNC, this.from);
      if (n === -ENOBUFS) {
        this.lostEvents = true;
        return OVERRUN;
      }
      if (n < 0) throw new NetlinkError(op, object, -n);
      if (n > this.buf.length) throw new Error(`${op} ${object}: netlink reply of ${n} bytes truncated`);
      const groups = new DataView(this.from.buffer).getUint32(8, true);
      const msgs = parseMessages(this.buf, n);
      if (groups !== 0) {
        this.queued.push(...msgs);
        continue;
      }
      return msgs;
    }
  }

  /**
   * Sends `msg` (built with its final flags) and returns the data messages of the reply.
   * Waits for the ACK when NLM_F_ACK is set, for NLMSG_DONE on dumps, else for one reply.
   * A kernel error becomes NetlinkError(op, object, errno). Interrupted dumps are retried.
   */
  request(msg: Buffer, op: string, object = ''): NlMsg[] {
    const flags = msg.readUInt16LE(6);
    const dump = (flags & NLM_F_DUMP) === NLM_F_DUMP;
    const ack = (flags & NLM_F_ACK) !== 0;
    // RTM_GET* (type % 4 == 2) changes nothing, so it can simply be sent again after an overrun.
    const isGet = msg.readUInt16LE(4) % 4 === 2;
    for (let attempt = 0; ; attempt++) {
      const seq = this.send(msg, op, object);
      const out: NlMsg[] = [];
      let interrupted = false;
      let overrun = false;
      for (let done = false; !done; ) {
        const replies = this.recvReplies(op, object);
        if (replies === OVERRUN) {
          // A lost GET reply is asked for again; a change's ack keeps being waited for (bounded).
          if (isGet) {
            overrun = true;
            break;
          }
          continue;
        }
        for (const m of replies) {
          if (m.seq !== seq || (m.pid !== this.portId && m.pid !== 0)) continue; // stale reply
          if (m.type === NLMSG_NOOP || m.type === NLMSG_OVERRUN) continue;
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === NLMSG_ERROR || m.type === NLMSG_DONE) {
            const { errno, extack } = decodeError(m);
            if (errno > 0) throw new NetlinkError(op, object, errno, extack);
            done = true;
            break;
          }
          out.push(m);
          if (!dump && !ack) {
            done = true;
            break;
          }
        }
      }
      if (overrun) {
        if (attempt < GET_RETRIES) continue;
        throw new NetlinkError(op, object, ENOBUFS, 'replies kept being dropped');
      }
      // A dump that raced a change is inconsistent (NLM_F_DUMP_INTR): take it again.
      if (interrupted && dump && attempt < DUMP_RETRIES) continue;
      return out;
    }
  }

  /**
   * Sends `msgs` in one datagram (an nfnetlink batch: BATCH_BEGIN, the changes, BATCH_END, built
   * with their final flags) and waits for the ack of the last message that asks for one
   * (NLM_F_ACK). Sequence numbers are set here. The kernel applies a batch whole or not at all; the
   * first error it reports becomes NetlinkError(op, object, errno).
   */
  batch(msgs: Buffer[], op: string, object = ''): void {
    let last = -1;
    for (const m of msgs) {
      const seq = (this.seq = (this.seq + 1) >>> 0);
      m.writeUInt32LE(seq, 8);
      m.writeUInt32LE(0, 12);
      if (m.readUInt16LE(6) & NLM_F_ACK) last = seq;
    }
    const first = msgs[0]!.readUInt32LE(8);
    const r = sendto(this.fd, Buffer.concat(msgs), 0, this.kernel);
    if (r < 0) throw new NetlinkError(op, object, -r);
    if (last < 0) return;
    const ours = (seq: number): boolean => ((seq - first) >>> 0) < msgs.length;
    for (;;) {
      const replies = this.recvReplies(op, object);
      if (replies === OVERRUN) throw new NetlinkError(op, object, ENOBUFS, 'the batch acks were dropped');
      for (const m of replies) {
        if (!ours(m.seq) || m.type !== NLMSG_ERROR) continue;
        const { errno, extack } = decodeError(m);
        if (errno > 0) throw new NetlinkError(op, object, errno, extack);
        if (m.seq === last) return;
      }
    }
  }

  /**
   * Joins a multicast group (RTNLGRP_*); events arrive via nextEvent(). They go to a second socket
   * in the same netns: a flood of events fills a socket's buffer, the kernel then drops replies to
   * our requests on it, and while it stays congested it reports ENOBUFS only once (netlink_overrun),
   * so a request on a subscribed socket can wait for a reply that never comes.
   */
  subscribe(group: number): void {
    this.events ??= this.nsPath ? NetlinkSocket.openIn(this.nsPath) : NetlinkSocket.open();
    const r = setsockoptInt(this.events.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group);
    if (r < 0) throw new NetlinkError('subscribing to netlink group', String(group), -r);
  }

  /** Leaves every group: the event socket is closed. */
  unsubscribe(): void {
    this.events?.close();
    this.events = undefined;
  }

  /** True (once) if events were dropped because the receive buffer overflowed. */
  takeLostEvents(): boolean {
    const l = this.events?.lostEvents ?? false;
    if (this.events) this.events.lostEvents = false;
    return l;
  }

  /**
   * Next multicast event of a subscribed group, or undefined after `timeoutMs` (or after a loss).
   * Blocks this thread in poll(2) while it waits.
   */
  nextEvent(timeoutMs: number): NlMsg | undefined {
    return this.eventSocket().readEvent(timeoutMs);
  }

  /**
   * nextEvent() for long-running processes: polls the socket without waiting (poll timeout 0) and
   * sleeps on a timer between polls (1, 2, 4 … 20 ms), so the event loop runs while it waits; an
   * event is seen at most EVENT_POLL_MAX_MS late.
   */
  nextEventAsync(timeoutMs: number): Promise<NlMsg | undefined> {
    return this.eventSocket().readEventAsync(timeoutMs);
  }

  private eventSocket(): NetlinkSocket {
    if (!this.events) throw new Error('nextEvent() without subscribe()');
    return this.events;
  }

  private readEvent(timeoutMs: number): NlMsg | undefined {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const q = this.queued.shift();
      if (q) return q;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const ev = pollOne(this.fd, POLLIN, left);
      if (ev < 0) throw new NetlinkError('waiting for netlink events', '', -ev);
      if (ev === 0) return undefined;
      if (!this.receiveEvents()) return undefined;
    }
  }

  private async readEventAsync(timeoutMs: number): Promise<NlMsg | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 1; ; ) {
      const q = this.queued.shift();
      if (q) return q;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const ev = pollOne(this.fd, POLLIN, 0);
      if (ev < 0) throw new NetlinkError('waiting for netlink events', '', -ev);
      if (ev === 0) {
        await new Promise((r) => setTimeout(r, Math.min(delay, left)));
        delay = Math.min(delay * 2, EVENT_POLL_MAX_MS);
      } else if (!this.receiveEvents()) return undefined;
    }
  }

  /** Reads one ready datagram into the event queue; false if events were lost (ENOBUFS, noted in lostEvents). */
  private receiveEvents(): boolean {
    const n = recvFrom(this.fd, this.buf, MSG_TRUNC, this.from);
    if (n === -ENOBUFS) {
      this.lostEvents = true;
      return false;
    }
    if (n < 0) throw new NetlinkError('reading netlink events', '', -n);
    if (new DataView(this.from.buffer).getUint32(8, true) !== 0) {
      this.queued.push(...parseMessages(this.buf, Math.min(n, this.buf.length)));
    }
    return true;
  }
}

/** Opens an rtnetlink socket (or another netlink `protocol`) in the current netns, or in the netns at `nsPath`. */
export function openNetlink(nsPath?: string, protocol = NETLINK_ROUTE): NetlinkSocket {
  return nsPath ? NetlinkSocket.openIn(nsPath, protocol) : NetlinkSocket.open(protocol);
}

/** Runs fn with a socket (optionally in another netns, of another netlink `protocol`) and closes it afterwards. */
export function withNetlink<T>(fn: (nl: NetlinkSocket) => T, nsPath?: string, protocol = NETLINK_ROUTE): T {
  const nl = openNetlink(nsPath, protocol);
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}
