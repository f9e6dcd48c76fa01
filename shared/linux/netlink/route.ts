// Routes: add/replace/delete and dump. Defaults follow iproute2 and vishvananda/netlink (what the
// reference uses): table main, protocol boot, type unicast, scope link for a route without gateway.
import {
  AF_INET,
  AF_INET6,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  RTAX_ADVMSS,
  RTAX_MTU,
  RTA_DST,
  RTA_GATEWAY,
  RTA_METRICS,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTM_DELROUTE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTPROT_BOOT,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTNH_F_ONLINK,
} from './constants';
import { afOf, familyOfAf, ipFromBytes, ipToBytes } from './ipaddr';
import { RTMSG_LEN, type NlMsg, attr, attrU32, decodeRtmsg, nested, nlmsg, parseAttrs, rtmsg, u32 } from './message';
import type { NetlinkSocket } from './socket';
import { formatCIDR, formatIP, networkOf, type IP, type IPNet } from '../../ip';

export interface Route {
  /** AF_INET or AF_INET6 */
  family: number;
  /** destination as the kernel keeps it (network address); 0.0.0.0/0 or ::/0 for a default route */
  dst: IPNet;
  gw?: IP;
  /** output ifindex */
  oif?: number;
  /** preferred source (RTA_PREFSRC) */
  src?: IP;
  table: number;
  scope: number;
  protocol: number;
  type: number;
  priority?: number;
  mtu?: number;
  advmss?: number;
  /** RTNH_F_ONLINK: the gateway is on the link even though no address of the link covers it */
  onlink?: boolean;
}

export interface RouteSpec {
  /** destination (host bits are masked off); omitted or prefix 0 = default route */
  dst?: IPNet;
  gw?: IP;
  oif?: number;
  src?: IP;
  /** default main (254) */
  table?: number;
  /** default: link if there is no gateway, else universe (iproute2's rule) */
  scope?: number;
  /** default boot (3), as iproute2 and vishvananda/netlink */
  protocol?: number;
  type?: number;
  priority?: number;
  mtu?: number;
  advmss?: number;
  /** `onlink`: use the gateway without a covering address on the link (flannel's vxlan routes) */
  onlink?: boolean;
}

/** AF_INET/AF_INET6 of the route: of its destination, else its gateway, else its source. */
function familyOf(r: RouteSpec): number {
  const ip = r.dst?.ip ?? r.gw ?? r.src;
  if (!ip) throw new Error('route needs a destination or a gateway to know its family');
  return afOf(ip.family);
}

/** Human form for error messages: "198.19.0.0/16 via 198.18.0.1 dev 4 table 1000". */
export function describeRoute(r: RouteSpec): string {
  const parts = [r.dst ? formatCIDR(r.dst) : 'default'];
  if (r.gw) parts.push(`via ${formatIP(r.gw)}`);
  if (r.oif) parts.push(`dev ${r.oif}`);
  if (r.table && r.table !== RT_TABLE_MAIN) parts.push(`table ${r.table}`);
  return parts.join(' ');
}

type Verb = 'add' | 'replace' | 'delete';

/** Attribute order matches iproute2 (dst, prefsrc, gateway, priority, table, oif, metrics). */
export function buildRoute(verb: Verb, r: RouteSpec): Buffer {
  const family = familyOf(r);
  const attrs: Buffer[] = [];
  let dstLen = 0;
  if (r.dst) {
    dstLen = r.dst.prefix;
    if (dstLen > 0) attrs.push(attr(RTA_DST, ipToBytes(networkOf(r.dst).ip)));
  }
  if (r.src) attrs.push(attr(RTA_PREFSRC, ipToBytes(r.src)));
  if (r.gw) attrs.push(attr(RTA_GATEWAY, ipToBytes(r.gw)));
  if (r.priority !== undefined) attrs.push(attrU32(RTA_PRIORITY, r.priority));
  const table = r.table ?? RT_TABLE_MAIN;
  // Tables >= 256 do not fit rtm_table: the header says UNSPEC and RTA_TABLE carries it.
  if (table >= 256) attrs.push(attrU32(RTA_TABLE, table));
  if (r.oif) attrs.push(attrU32(RTA_OIF, r.oif));
  const metrics: Buffer[] = [];
  if (r.mtu) metrics.push(attrU32(RTAX_MTU, r.mtu));
  if (r.advmss) metrics.push(attrU32(RTAX_ADVMSS, r.advmss));
  if (metrics.length) attrs.push(nested(RTA_METRICS, ...metrics));
  const hdrTable = table >= 256 ? RT_TABLE_UNSPEC : table;
  if (verb === 'delete') {
    // iproute2: scope NOWHERE and protocol/type unspec match any route with these keys.
    return nlmsg(
      RTM_DELROUTE,
      NLM_F_REQUEST | NLM_F_ACK,
      rtmsg({ family, dstLen, table: hdrTable, protocol: r.protocol ?? 0, scope: r.scope ?? RT_SCOPE_NOWHERE, type: r.type ?? 0 }),
      ...attrs,
    );
  }
  const flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (verb === 'replace' ? NLM_F_REPLACE : NLM_F_EXCL);
  const type = r.type ?? RTN_UNICAST;
  const scope = r.scope ?? (!r.gw && type === RTN_UNICAST ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
  return nlmsg(
    RTM_NEWROUTE,
    flags,
    rtmsg({ family, dstLen, table: hdrTable, protocol: r.protocol ?? RTPROT_BOOT, scope, type, flags: r.onlink ? RTNH_F_ONLINK : 0 }),
    ...attrs,
  );
}

/** Adds a route; an existing one -> EEXIST (isExists). */
export function addRoute(nl: NetlinkSocket, r: RouteSpec): void {
  nl.request(buildRoute('add', r), 'adding route', describeRoute(r));
}

/** Adds or replaces the route with the same destination, table and metric. */
export function replaceRoute(nl: NetlinkSocket, r: RouteSpec): void {
  nl.request(buildRoute('replace', r), 'replacing route', describeRoute(r));
}

/** Deletes a route; missing -> ESRCH (isNotFound). */
export function deleteRoute(nl: NetlinkSocket, r: RouteSpec): void {
  nl.request(buildRoute('delete', r), 'deleting route', describeRoute(r));
}

/** An RTM_NEWROUTE message of family AF_INET/AF_INET6 as a Route; throws for other families. */
export function decodeRoute(m: NlMsg): Route {
  const h = decodeRtmsg(m.payload);
  const a = parseAttrs(m.payload, RTMSG_LEN);
  const dst = a.get(RTA_DST);
  const r: Route = {
    family: h.family,
    // No RTA_DST: the default route, whose address is the family's zero.
    dst: { ip: dst ? ipFromBytes(h.family, dst) : { family: familyOfAf(h.family), value: 0n }, prefix: h.dstLen },
    table: u32(a.get(RTA_TABLE)) ?? h.table,
    scope: h.scope,
    protocol: h.protocol,
    type: h.type,
  };
  if (h.flags & RTNH_F_ONLINK) r.onlink = true;
  const gw = a.get(RTA_GATEWAY);
  if (gw) r.gw = ipFromBytes(h.family, gw);
  const oif = u32(a.get(RTA_OIF));
  if (oif !== undefined) r.oif = oif;
  const src = a.get(RTA_PREFSRC);
  if (src) r.src = ipFromBytes(h.family, src);
  const prio = u32(a.get(RTA_PRIORITY));
  if (prio !== undefined) r.priority = prio;
  const metrics = a.get(RTA_METRICS);
  if (metrics) {
    const mt = parseAttrs(metrics);
    const mtu = u32(mt.get(RTAX_MTU));
    const advmss = u32(mt.get(RTAX_ADVMSS));
    if (mtu !== undefined) r.mtu = mtu;
    if (advmss !== undefined) r.advmss = advmss;
  }
  return r;
}

export function buildListRoutes(family = 0): Buffer {
  return nlmsg(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, rtmsg({ family }));
}

export interface RouteFilter {
  family?: number;
  /** default main; 'all' for every table (local, main, custom) */
  table?: number | 'all';
  oif?: number;
}

/**
 * Routes of the netns (IPv4 and/or IPv6), filtered here rather than by kernel strict checking.
 * Other families in the dump (multicast routing tables, MPLS) are skipped before decoding.
 */
export function listRoutes(nl: NetlinkSocket, f: RouteFilter = {}): Route[] {
  const table = f.table ?? RT_TABLE_MAIN;
  return nl
    .request(buildListRoutes(f.family ?? 0), 'listing routes')
    .filter((m) => m.type === RTM_NEWROUTE && isIPFamily(decodeRtmsg(m.payload).family))
    .map(decodeRoute)
    .filter(
      (r) =>
        (!f.family || r.family === f.family) &&
        (table === 'all' || r.table === table) &&
        (f.oif === undefined || r.oif === f.oif),
    );
}

const isIPFamily = (af: number): boolean => af === AF_INET || af === AF_INET6;
