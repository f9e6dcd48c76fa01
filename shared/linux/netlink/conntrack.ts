// Conntrack entries over nfnetlink (ctnetlink), in-process: the reference's
// utils.DeleteConntrackEntriesForDstPort (vishvananda/netlink ConntrackDeleteFilters), which portmap
// runs after ADD so that UDP flows seen before the mapping existed are NATed from the next packet
// on instead of sticking to their old entry.
import { AF_INET, AF_INET6, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from './constants';
import { isNotFound } from './errors';
import { nested, nfgenmsg, nlmsg, parseAttrs, type NlMsg } from './message';
import type { NetlinkSocket } from './socket';

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const NFGENMSG_LEN = 4;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_DST_PORT = 3;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_SCTP = 132;

const ctType = (msg: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

/** The dump request for one family's conntrack table. */
export function buildListConntrack(family: 4 | 6): Buffer {
  return nlmsg(ctType(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, nfgenmsg(family === 4 ? AF_INET : AF_INET6));
}

/** An entry's original tuple: its raw attribute value (to delete it by) and its protocol and destination port. */
export interface OrigTuple {
  raw: Buffer;
  proto: number;
  dstPort: number | undefined;
}

/** The original-direction tuple of a conntrack message, or undefined when it has none. */
export function decodeOrigTuple(m: NlMsg): OrigTuple | undefined {
  const orig = parseAttrs(m.payload, NFGENMSG_LEN).get(CTA_TUPLE_ORIG);
  if (!orig) return undefined;
  const proto = parseAttrs(orig).get(CTA_TUPLE_PROTO);
  const p = proto ? parseAttrs(proto) : undefined;
  const num = p?.get(CTA_PROTO_NUM);
  const port = p?.get(CTA_PROTO_DST_PORT);
  return { raw: orig, proto: num?.length ? num[0]! : 0, dstPort: port && port.length >= 2 ? port.readUInt16BE(0) : undefined };
}

/** The request deleting the entry with original tuple `orig` (the tuple's attributes as the kernel listed them). */
export function buildDeleteConntrack(family: 4 | 6, orig: Buffer): Buffer {
  return nlmsg(ctType(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, nfgenmsg(family === 4 ? AF_INET : AF_INET6), nested(CTA_TUPLE_ORIG | NLA_F_NESTED, orig));
}

/**
 * Deletes the conntrack entries of `family` whose original protocol is `proto` (IPPROTO_*) and whose
 * original destination port is `port`; returns how many. `nl` is a NETLINK_NETFILTER socket in the
 * netns to act on. An entry that expires between the dump and its delete is not an error. Throws
 * NetlinkError when conntrack cannot be listed (no ctnetlink) or a delete fails otherwise.
 */
export function deleteConntrackForDstPort(nl: NetlinkSocket, family: 4 | 6, proto: number, port: number): number {
  let n = 0;
  for (const m of nl.request(buildListConntrack(family), 'listing conntrack entries')) {
    const t = decodeOrigTuple(m);
    if (!t || t.proto !== proto || t.dstPort !== port) continue;
    try {
      nl.request(buildDeleteConntrack(family, t.raw), 'deleting a conntrack entry', `port ${port}`);
      n++;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  return n;
}
