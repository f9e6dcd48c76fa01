// Interface addresses: add (IPv4 with a computed broadcast, as the reference's netlink library
// does; IPv6 optionally without DAD), delete, list with the DAD state flags.
import {
  AF_INET,
  AF_INET6,
  IFA_ADDRESS,
  IFA_BROADCAST,
  IFA_CACHEINFO,
  IFA_FLAGS,
  IFA_F_DADFAILED,
  IFA_F_NODAD,
  IFA_F_PERMANENT,
  IFA_F_TENTATIVE,
  IFA_LABEL,
  IFA_LOCAL,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from './constants';
import { refName } from './errors';
import { afOf, ipFromBytes, ipToBytes } from './ipaddr';
import { IFADDRMSG_LEN, type NlMsg, attr, attrStr, attrString, attrU32, decodeIfaddrmsg, ifaddrmsg, nlmsg, parseAttrs, u32 } from './message';
import type { NetlinkSocket } from './socket';
import { formatCIDR, lastAddress, type IP, type IPNet } from '../../ip';

export interface Addr {
  index: number;
  /** AF_INET or AF_INET6 */
  family: number;
  /** the interface address with its prefix length, host bits kept (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6) */
  ipnet: IPNet;
  /** IFA_ADDRESS when it differs from the local address (point-to-point peer) */
  peer?: IP;
  broadcast?: IP;
  label: string;
  scope: number;
  /** IFA_F_* (from IFA_FLAGS when present: the 8-bit header field is truncated) */
  flags: number;
  tentative: boolean;
  dadFailed: boolean;
  permanent: boolean;
  /** seconds; 0xffffffff = forever */
  validLft?: number;
  preferredLft?: number;
}

/** An RTM_NEWADDR message of family AF_INET/AF_INET6 as an Addr; throws for other families or without an address. */
export function decodeAddr(m: NlMsg): Addr {
  const h = decodeIfaddrmsg(m.payload);
  const a = parseAttrs(m.payload, IFADDRMSG_LEN);
  const local = a.get(IFA_LOCAL);
  const address = a.get(IFA_ADDRESS);
  const ipBytes = local ?? address;
  if (!ipBytes) throw new Error(`address message of link ${h.index} carries no address`);
  const flags = u32(a.get(IFA_FLAGS)) ?? h.flags;
  const out: Addr = {
    index: h.index,
    family: h.family,
    ipnet: { ip: ipFromBytes(h.family, ipBytes), prefix: h.prefixLen },
    label: a.has(IFA_LABEL) ? attrString(a.get(IFA_LABEL)!) : '',
    scope: h.scope,
    flags,
    tentative: (flags & IFA_F_TENTATIVE) !== 0,
    dadFailed: (flags & IFA_F_DADFAILED) !== 0,
    permanent: (flags & IFA_F_PERMANENT) !== 0,
  };
  if (local && address && !local.equals(address)) out.peer = ipFromBytes(h.family, address);
  const brd = a.get(IFA_BROADCAST);
  if (brd) out.broadcast = ipFromBytes(h.family, brd);
  const ci = a.get(IFA_CACHEINFO);
  if (ci && ci.length >= 8) {
    out.preferredLft = ci.readUInt32LE(0);
    out.validLft = ci.readUInt32LE(4);
  }
  return out;
}

export interface AddAddrOptions {
  /** IPv6: skip duplicate address detection (IFA_F_NODAD) */
  noDad?: boolean;
  /** IPv4 broadcast: default computed for prefixes < 31 (like vishvananda/netlink); false = none */
  broadcast?: IP | false;
  /** replace an existing identical address instead of failing with EEXIST */
  replace?: boolean;
  scope?: number;
  label?: string;
}

/** RTM_NEWADDR for `addr` (ip/prefix, host bits kept) on link `index`; attributes in iproute2's order. */
export function buildAddAddr(index: number, addr: IPNet, o: AddAddrOptions = {}): Buffer {
  const bytes = ipToBytes(addr.ip);
  const flags = o.noDad ? IFA_F_NODAD : 0;
  const attrs: Buffer[] = [attr(IFA_LOCAL, bytes), attr(IFA_ADDRESS, bytes)];
  if (addr.ip.family === 4) {
    if (o.broadcast) attrs.push(attr(IFA_BROADCAST, ipToBytes(o.broadcast)));
    else if (o.broadcast !== false && addr.prefix < 31) attrs.push(attr(IFA_BROADCAST, ipToBytes(lastAddress(addr))));
    if (o.label) attrs.push(attrStr(IFA_LABEL, o.label));
  }
  if (flags > 0xff) attrs.push(attrU32(IFA_FLAGS, flags));
  return nlmsg(
    RTM_NEWADDR,
    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (o.replace ? NLM_F_REPLACE : NLM_F_EXCL),
    ifaddrmsg({ family: afOf(addr.ip.family), prefixLen: addr.prefix, flags: flags & 0xff, scope: o.scope ?? 0, index }),
    ...attrs,
  );
}

type LinkLike = number | { index: number; name: string };
const idx = (l: LinkLike): number => (typeof l === 'number' ? l : l.index);

/** Adds `addr` (ip/prefix) to a link. An existing identical address -> EEXIST (isExists). */
export function addAddr(nl: NetlinkSocket, link: LinkLike, addr: IPNet, o: AddAddrOptions = {}): void {
  nl.request(buildAddAddr(idx(link), addr, o), 'adding address', `${formatCIDR(addr)} on ${refName(link)}`);
}

/** RTM_DELADDR for `addr` (ip/prefix) on link `index`. */
export function buildDeleteAddr(index: number, addr: IPNet): Buffer {
  const bytes = ipToBytes(addr.ip);
  const attrs = [attr(IFA_LOCAL, bytes), attr(IFA_ADDRESS, bytes)];
  return nlmsg(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, ifaddrmsg({ family: afOf(addr.ip.family), prefixLen: addr.prefix, index }), ...attrs);
}

/** Removes `addr` (ip/prefix) from a link. Missing -> EADDRNOTAVAIL (isNotFound). */
export function deleteAddr(nl: NetlinkSocket, link: LinkLike, addr: IPNet): void {
  nl.request(buildDeleteAddr(idx(link), addr), 'deleting address', `${formatCIDR(addr)} on ${refName(link)}`);
}

export function buildListAddrs(family = 0): Buffer {
  return nlmsg(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, ifaddrmsg({ family }));
}

/**
 * IPv4/IPv6 addresses of the netns, optionally of one link and/or one family (AF_INET / AF_INET6).
 * Other families in the dump (e.g. AF_MCTP) are skipped.
 */
export function listAddrs(nl: NetlinkSocket, filter: { link?: LinkLike; family?: number } = {}): Addr[] {
  const index = filter.link === undefined ? undefined : idx(filter.link);
  return nl
    .request(buildListAddrs(filter.family ?? 0), 'listing addresses', index === undefined ? '' : `of ${refName(filter.link!)}`)
    .filter((m) => m.type === RTM_NEWADDR && isIPFamily(decodeIfaddrmsg(m.payload).family))
    .map(decodeAddr)
    .filter((a) => (index === undefined || a.index === index) && (!filter.family || a.family === filter.family));
}

const isIPFamily = (af: number): boolean => af === AF_INET || af === AF_INET6;
