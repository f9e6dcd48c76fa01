// Pure encode/decode of netlink messages: nlmsghdr, nlattr, and the rtnetlink family headers
// (ifinfomsg, ifaddrmsg, rtmsg). Host byte order is little-endian on every platform we ship for.
import { NLA_TYPE_MASK } from './constants';

export const NLMSG_HDRLEN = 16;
export const IFINFOMSG_LEN = 16;
export const IFADDRMSG_LEN = 8;
export const RTMSG_LEN = 12;

export const align4 = (n: number): number => (n + 3) & ~3;

/** One netlink attribute: 4-byte header + payload, padded to 4 bytes. */
export function attr(type: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.alloc(align4(4 + payload.length));
  b.writeUInt16LE(4 + payload.length, 0);
  b.writeUInt16LE(type, 2);
  b.set(payload, 4);
  return b;
}

export const attrU8 = (type: number, v: number): Buffer => attr(type, Uint8Array.of(v & 0xff));
export function attrU16(type: number, v: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16LE(v);
  return attr(type, p);
}
export function attrU32(type: number, v: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32LE(v >>> 0);
  return attr(type, p);
}
export function attrI32(type: number, v: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeInt32LE(v);
  return attr(type, p);
}
/** A 32-bit attribute in network byte order, as nf_tables takes its numbers (a negative `v`, a verdict code, as two's complement). */
export function attrBE32(type: number, v: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(v >>> 0);
  return attr(type, p);
}
/** A 64-bit attribute in network byte order (nf_tables handles, counters). */
export function attrBE64(type: number, v: bigint): Buffer {
  const p = Buffer.alloc(8);
  p.writeBigUInt64BE(v);
  return attr(type, p);
}
/** NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND). */
export const attrStr = (type: number, s: string): Buffer => attr(type, Buffer.from(`${s}\0`));
/** String attribute without the NUL, as iproute2 and vishvananda/netlink send IFLA_INFO_KIND. */
export const attrStrRaw = (type: number, s: string): Buffer => attr(type, Buffer.from(s));
/** Nested attribute; children are already padded. */
export const nested = (type: number, ...children: Uint8Array[]): Buffer => attr(type, Buffer.concat(children));

/** A whole request: nlmsghdr + body. seq and pid are 0; the socket stamps seq before sending. */
export function nlmsg(type: number, flags: number, ...body: Uint8Array[]): Buffer {
  const payload = Buffer.concat(body);
  const h = Buffer.alloc(NLMSG_HDRLEN);
  h.writeUInt32LE(NLMSG_HDRLEN + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  return Buffer.concat([h, payload]);
}

/** struct nfgenmsg (nfnetlink's family header): family, NFNETLINK_V0, res_id 0. */
export function nfgenmsg(family: number): Buffer {
  return Buffer.from([family, 0, 0, 0]);
}

export interface IfInfoMsg {
  family: number;
  type: number; // ARPHRD_*
  index: number;
  flags: number;
  change: number;
}

export function ifinfomsg(m: Partial<IfInfoMsg> = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt16LE(m.type ?? 0, 2);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  return b;
}

export function decodeIfinfomsg(p: Buffer): IfInfoMsg {
  return {
    family: p.readUInt8(0),
    type: p.readUInt16LE(2),
    index: p.readInt32LE(4),
    flags: p.readUInt32LE(8),
    change: p.readUInt32LE(12),
  };
}

export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}

export function ifaddrmsg(m: Partial<IfAddrMsg> = {}): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt8(m.prefixLen ?? 0, 1);
  b.writeUInt8((m.flags ?? 0) & 0xff, 2);
  b.writeUInt8(m.scope ?? 0, 3);
  b.writeUInt32LE(m.index ?? 0, 4);
  return b;
}

export function decodeIfaddrmsg(p: Buffer): IfAddrMsg {
  return {
    family: p.readUInt8(0),
    prefixLen: p.readUInt8(1),
    flags: p.readUInt8(2),
    scope: p.readUInt8(3),
    index: p.readUInt32LE(4),
  };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

export function rtmsg(m: Partial<RtMsg> = {}): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt8(m.dstLen ?? 0, 1);
  b.writeUInt8(m.srcLen ?? 0, 2);
  b.writeUInt8(m.tos ?? 0, 3);
  b.writeUInt8(m.table ?? 0, 4);
  b.writeUInt8(m.protocol ?? 0, 5);
  b.writeUInt8(m.scope ?? 0, 6);
  b.writeUInt8(m.type ?? 0, 7);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  return b;
}

export function decodeRtmsg(p: Buffer): RtMsg {
  return {
    family: p.readUInt8(0),
    dstLen: p.readUInt8(1),
    srcLen: p.readUInt8(2),
    tos: p.readUInt8(3),
    table: p.readUInt8(4),
    protocol: p.readUInt8(5),
    scope: p.readUInt8(6),
    type: p.readUInt8(7),
    flags: p.readUInt32LE(8),
  };
}

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte header (family header + attributes). */
  payload: Buffer;
}

/** Splits a datagram into messages. Copies, so the receive buffer can be reused. */
export function parseMessages(buf: Uint8Array, length = buf.length): NlMsg[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, length);
  const out: NlMsg[] = [];
  for (let o = 0; o + NLMSG_HDRLEN <= length; ) {
    const len = b.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || o + len > length) throw new Error(`malformed netlink message (len ${len} at ${o})`);
    out.push({
      type: b.readUInt16LE(o + 4),
      flags: b.readUInt16LE(o + 6),
      seq: b.readUInt32LE(o + 8),
      pid: b.readUInt32LE(o + 12),
      payload: Buffer.from(b.subarray(o + NLMSG_HDRLEN, o + len)),
    });
    o += align4(len);
  }
  return out;
}

export interface Attr {
  type: number; // NLA_F_NESTED / NLA_F_NET_BYTEORDER stripped
  value: Buffer;
}

/** All attributes in order (repeated types kept, e.g. IFLA_BRIDGE_VLAN_INFO). */
export function parseAttrList(b: Buffer, offset = 0): Attr[] {
  const out: Attr[] = [];
  for (let o = offset; o + 4 <= b.length; ) {
    const len = b.readUInt16LE(o);
    if (len < 4 || o + len > b.length) break; // truncated tail: ignore like the kernel's nla_for_each
    out.push({ type: b.readUInt16LE(o + 2) & NLA_TYPE_MASK, value: b.subarray(o + 4, o + len) });
    o += align4(len);
  }
  return out;
}

/** Attributes by type (last one wins). */
export function parseAttrs(b: Buffer, offset = 0): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (const a of parseAttrList(b, offset)) m.set(a.type, a.value);
  return m;
}

/** A NUL-terminated string attribute value. */
export function attrString(v: Buffer): string {
  const nul = v.indexOf(0);
  return v.toString('utf8', 0, nul < 0 ? v.length : nul);
}

export const u8 = (v: Buffer | undefined): number | undefined => (v && v.length >= 1 ? v.readUInt8(0) : undefined);
export const u16 = (v: Buffer | undefined): number | undefined => (v && v.length >= 2 ? v.readUInt16LE(0) : undefined);
export const u32 = (v: Buffer | undefined): number | undefined => (v && v.length >= 4 ? v.readUInt32LE(0) : undefined);
export const i32 = (v: Buffer | undefined): number | undefined => (v && v.length >= 4 ? v.readInt32LE(0) : undefined);
