// Links: get/list/create (bridge, veth with the peer created straight in another netns)/delete/set,
// bridge-port flags, and waiting for a link state without fixed sleeps.
// Each operation has a pure `build*` encoder (unit-tested byte for byte) and a thin call over the socket.
import {
  AF_BRIDGE,
  AF_UNSPEC,
  IFF_ALLMULTI,
  IFF_LOWER_UP,
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_BRPORT_ISOLATED,
  IFLA_BRPORT_MODE,
  IFLA_BRPORT_STATE,
  IFLA_BR_BRIDGE_ID,
  IFLA_BR_VLAN_FILTERING,
  IFLA_EXT_MASK,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_INFO_SLAVE_DATA,
  IFLA_INFO_SLAVE_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_LINK_NETNSID,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_OPERSTATE,
  IFLA_PERM_ADDRESS,
  IFLA_PROTINFO,
  IFLA_TXQLEN,
  NLA_F_NESTED,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  OPERSTATES,
  type OperState,
  RTEXT_FILTER_SKIP_STATS,
  RTNLGRP_LINK,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
  VETH_INFO_PEER,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_PORT,
  AF_INET,
} from './constants';
import { ipFromBytes, ipToBytes } from './ipaddr';
import type { IP } from '../../ip';
import { ENODEV } from './errno';
import { NetlinkError, isNotFound, type LinkRef, refName } from './errors';
import { formatMAC, parseMAC } from '../../mac';
import {
  IFINFOMSG_LEN,
  type NlMsg,
  attr,
  attrStr,
  attrStrRaw,
  attrString,
  attrU32,
  attrU8,
  decodeIfinfomsg,
  i32,
  ifinfomsg,
  nested,
  nlmsg,
  parseAttrs,
  u32,
  u8,
} from './message';
import type { NetlinkSocket } from './socket';

export interface BridgePortInfo {
  hairpin: boolean;
  isolated: boolean;
  /** STP port state: 0 disabled, 1 listening, 2 learning, 3 forwarding, 4 blocking */
  state: number;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: "bridge", "veth", "" for plain devices such as lo */
  kind: string;
  /** IFLA_INFO_SLAVE_KIND: "bridge" when the link is a bridge port */
  slaveKind: string;
  mac: string;
  permMac: string;
  mtu: number;
  flags: number;
  up: boolean;
  promisc: boolean;
  /** IFF_ALLMULTI: receives all multicast frames */
  allmulti: boolean;
  /** IFLA_TXQLEN: transmit queue length in packets */
  txQLen: number;
  lowerUp: boolean;
  operstate: OperState;
  /** ifindex of the master (bridge), 0 if none */
  masterIndex: number;
  /** IFLA_LINK: for a veth, the peer's ifindex (in the peer's netns); 0 if absent */
  linkIndex: number;
  /** IFLA_LINK_NETNSID: netns id of the peer, when it lives in another netns */
  linkNetnsId?: number;
  /** IFLA_IFALIAS, '' if unset */
  alias: string;
  /** IFLA_BR_VLAN_FILTERING of a bridge */
  vlanFiltering?: boolean;
  /** MAC part of a bridge's STP bridge id (IFLA_BR_BRIDGE_ID); the kernel keeps it equal to the
   * bridge MAC except after a MAC set to itself (br_set_mac_address skips an unchanged address) */
  bridgeIdMac?: string;
  /** bridge-port attributes of a bridge port (IFLA_INFO_SLAVE_DATA) */
  bridgePort?: BridgePortInfo;
  /** IFLA_INFO_DATA of a vxlan link */
  vxlan?: VxlanInfo;
}

/** What identifies a vxlan device's tunnel: VNI, underlay link and local VTEP address, UDP port, learning. */
export interface VxlanInfo {
  vni: number;
  /** ifindex of the underlay link (IFLA_VXLAN_LINK), 0 if unset */
  link: number;
  /** local VTEP address (IPv4 only: IFLA_VXLAN_LOCAL) */
  local?: IP;
  /** UDP destination port (host order) */
  port: number;
  learning: boolean;
}

/** Decodes an RTM_NEWLINK message (a GETLINK reply, a dump entry or an event). */
export function decodeLink(m: NlMsg): Link {
  const hdr = decodeIfinfomsg(m.payload);
  const a = parseAttrs(m.payload, IFINFOMSG_LEN);
  const mac = a.get(IFLA_ADDRESS);
  const perm = a.get(IFLA_PERM_ADDRESS);
  const link: Link = {
    index: hdr.index,
    name: a.has(IFLA_IFNAME) ? attrString(a.get(IFLA_IFNAME)!) : '',
    kind: '',
    slaveKind: '',
    mac: mac ? formatMAC(mac) : '',
    permMac: perm ? formatMAC(perm) : '',
    mtu: u32(a.get(IFLA_MTU)) ?? 0,
    flags: hdr.flags,
    up: (hdr.flags & IFF_UP) !== 0,
    promisc: (hdr.flags & IFF_PROMISC) !== 0,
    allmulti: (hdr.flags & IFF_ALLMULTI) !== 0,
    txQLen: u32(a.get(IFLA_TXQLEN)) ?? 0,
    lowerUp: (hdr.flags & IFF_LOWER_UP) !== 0,
    operstate: OPERSTATES[u8(a.get(IFLA_OPERSTATE)) ?? 0] ?? 'unknown',
    masterIndex: u32(a.get(IFLA_MASTER)) ?? 0,
    linkIndex: u32(a.get(IFLA_LINK)) ?? 0,
    alias: a.has(IFLA_IFALIAS) ? attrString(a.get(IFLA_IFALIAS)!) : '',
  };
  const nsid = i32(a.get(IFLA_LINK_NETNSID));
  if (nsid !== undefined) link.linkNetnsId = nsid;
  const info = a.get(IFLA_LINKINFO);
  if (info) {
    const li = parseAttrs(info);
    if (li.has(IFLA_INFO_KIND)) link.kind = attrString(li.get(IFLA_INFO_KIND)!);
    if (li.has(IFLA_INFO_SLAVE_KIND)) link.slaveKind = attrString(li.get(IFLA_INFO_SLAVE_KIND)!);
    const data = li.get(IFLA_INFO_DATA);
    if (link.kind === 'bridge' && data) {
      const br = parseAttrs(data);
      const v = u8(br.get(IFLA_BR_VLAN_FILTERING));
      if (v !== undefined) link.vlanFiltering = v !== 0;
      const id = br.get(IFLA_BR_BRIDGE_ID);
      if (id && id.length >= 8) link.bridgeIdMac = formatMAC(id.subarray(2, 8));
    }
    if (link.kind === 'vxlan' && data) {
      const vx = parseAttrs(data);
      const local = vx.get(IFLA_VXLAN_LOCAL);
      const port = vx.get(IFLA_VXLAN_PORT);
      link.vxlan = {
        vni: u32(vx.get(IFLA_VXLAN_ID)) ?? 0,
        link: u32(vx.get(IFLA_VXLAN_LINK)) ?? 0,
        port: port && port.length >= 2 ? port.readUInt16BE(0) : 0,
        learning: (u8(vx.get(IFLA_VXLAN_LEARNING)) ?? 1) !== 0,
      };
      if (local && local.length === 4) link.vxlan.local = ipFromBytes(AF_INET, local);
    }
    const slave = li.get(IFLA_INFO_SLAVE_DATA);
    if (link.slaveKind === 'bridge' && slave) {
      const s = parseAttrs(slave);
      link.bridgePort = {
        hairpin: (u8(s.get(IFLA_BRPORT_MODE)) ?? 0) !== 0,
        isolated: (u8(s.get(IFLA_BRPORT_ISOLATED)) ?? 0) !== 0,
        state: u8(s.get(IFLA_BRPORT_STATE)) ?? 0,
      };
    }
  }
  return link;
}

const REQ = NLM_F_REQUEST | NLM_F_ACK;

function refHeader(ref: LinkRef, family = AF_UNSPEC, flags = 0, change = 0): { hdr: Buffer; name: Buffer[] } {
  if (typeof ref === 'string') return { hdr: ifinfomsg({ family, flags, change }), name: [attrStr(IFLA_IFNAME, ref)] };
  const index = typeof ref === 'number' ? ref : ref.index;
  return { hdr: ifinfomsg({ family, index, flags, change }), name: [] };
}

// Statistics are ~200 bytes a link we never read; iproute2 asks the kernel to skip them too.
const SKIP_STATS = attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);

/** A single reply and no ACK, like iproute2: one recv instead of two. */
export function buildGetLink(ref: LinkRef): Buffer {
  const { hdr, name } = refHeader(ref);
  return nlmsg(RTM_GETLINK, NLM_F_REQUEST, hdr, SKIP_STATS, ...name);
}

export function buildListLinks(): Buffer {
  return nlmsg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ifinfomsg(), SKIP_STATS);
}

/** Fetches one link by name or index. Not found -> NetlinkError with ENODEV (isNotFound). */
export function getLink(nl: NetlinkSocket, ref: LinkRef): Link {
  const [m] = nl.request(buildGetLink(ref), 'getting link', refName(ref));
  if (!m) throw new NetlinkError('getting link', refName(ref), ENODEV);
  return decodeLink(m);
}

/** The link `ref`, or undefined when there is none (ENODEV); any other failure throws NetlinkError. */
export function findLink(nl: NetlinkSocket, ref: LinkRef): Link | undefined {
  try {
    return getLink(nl, ref);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** All links of the socket's netns. */
export function listLinks(nl: NetlinkSocket): Link[] {
  return nl.request(buildListLinks(), 'listing links').filter((m) => m.type === RTM_NEWLINK).map(decodeLink);
}

interface CommonCreate {
  mtu?: number;
  mac?: string;
  /** create it up (IFF_UP in the same message; saves a round trip) */
  up?: boolean;
  /** ifindex of a master to enslave to at creation */
  master?: number;
}

export interface BridgeSpec extends CommonCreate {
  name: string;
  vlanFiltering?: boolean;
}

/** IFLA_ADDRESS bytes of a MAC string (shared/mac's rule); throws on a malformed one. */
function macBytes(mac: string): Uint8Array {
  const b = parseMAC(mac);
  if (!b) throw new Error(`invalid MAC address "${mac}"`);
  return b;
}

function commonAttrs(o: CommonCreate): Buffer[] {
  const out: Buffer[] = [];
  if (o.mtu) out.push(attrU32(IFLA_MTU, o.mtu));
  if (o.mac) out.push(attr(IFLA_ADDRESS, macBytes(o.mac)));
  if (o.master) out.push(attrU32(IFLA_MASTER, o.master));
  return out;
}

const upFlags = (up?: boolean) => (up ? { flags: IFF_UP, change: IFF_UP } : {});

export function buildAddBridge(b: BridgeSpec): Buffer {
  const data = b.vlanFiltering !== undefined ? [nested(IFLA_INFO_DATA, attrU8(IFLA_BR_VLAN_FILTERING, b.vlanFiltering ? 1 : 0))] : [];
  return nlmsg(
    RTM_NEWLINK,
    REQ | NLM_F_CREATE | NLM_F_EXCL,
    ifinfomsg(upFlags(b.up)),
    ...commonAttrs(b),
    attrStr(IFLA_IFNAME, b.name),
    nested(IFLA_LINKINFO, attrStrRaw(IFLA_INFO_KIND, 'bridge'), ...data),
  );
}

/** Creates a bridge. An existing link of that name -> NetlinkError EEXIST (isExists). */
export function addBridge(nl: NetlinkSocket, b: BridgeSpec): void {
  nl.request(buildAddBridge(b), 'creating bridge', b.name);
}

export interface IfbSpec extends CommonCreate {
  name: string;
  /** transmit queue length in packets; default: the kernel's (32 for an ifb) */
  txQLen?: number;
}

/** `ip link add NAME mtu M txqueuelen Q up type ifb`. */
export function buildAddIfb(b: IfbSpec): Buffer {
  const qlen = b.txQLen !== undefined ? [attrU32(IFLA_TXQLEN, b.txQLen)] : [];
  return nlmsg(
    RTM_NEWLINK,
    REQ | NLM_F_CREATE | NLM_F_EXCL,
    ifinfomsg(upFlags(b.up)),
    ...commonAttrs(b),
    ...qlen,
    attrStr(IFLA_IFNAME, b.name),
    nested(IFLA_LINKINFO, attrStrRaw(IFLA_INFO_KIND, 'ifb')),
  );
}

/** Creates an ifb (intermediate functional block) device. An existing link of that name -> EEXIST (isExists). */
export function addIfb(nl: NetlinkSocket, b: IfbSpec): void {
  nl.request(buildAddIfb(b), 'creating ifb', b.name);
}

export interface VxlanSpec extends CommonCreate {
  name: string;
  /** VXLAN network identifier, 1..16777215 */
  vni: number;
  /** local VTEP address: the underlay address encapsulated packets leave from (IPv4) */
  local: IP;
  /** ifindex of the underlay link that carries the encapsulated packets */
  link: number;
  /** UDP destination port (IANA 4789) */
  port: number;
}

/**
 * `ip link add NAME mtu M type vxlan id VNI local IP dev LINK dstport PORT nolearning`: no learning
 * and no multicast group, so every remote is an FDB entry someone programs (flannel's vxlan backend).
 */
export function buildAddVxlan(v: VxlanSpec): Buffer {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(v.port);
  return nlmsg(
    RTM_NEWLINK,
    REQ | NLM_F_CREATE | NLM_F_EXCL,
    ifinfomsg(upFlags(v.up)),
    ...commonAttrs(v),
    attrStr(IFLA_IFNAME, v.name),
    nested(
      IFLA_LINKINFO,
      attrStrRaw(IFLA_INFO_KIND, 'vxlan'),
      nested(
        IFLA_INFO_DATA,
        attrU32(IFLA_VXLAN_ID, v.vni),
        attrU32(IFLA_VXLAN_LINK, v.link),
        attr(IFLA_VXLAN_LOCAL, ipToBytes(v.local)),
        attrU8(IFLA_VXLAN_LEARNING, 0),
        attr(IFLA_VXLAN_PORT, port),
      ),
    ),
  );
}

/** Creates a vxlan device. An existing link of that name -> EEXIST (isExists); a VNI+port already used by another device -> EEXIST too. */
export function addVxlan(nl: NetlinkSocket, v: VxlanSpec): void {
  nl.request(buildAddVxlan(v), 'creating vxlan', v.name);
}

export interface VethEnd extends CommonCreate {
  name: string;
  /** fd of a netns (openNetnsFd) to create this end in; default: the socket's netns */
  netnsFd?: number;
}

export interface VethSpec extends VethEnd {
  /**
   * No `up` here: the kernel opens the peer before the pair is linked and veth_open then fails
   * with ENOTCONN (checked on 6.18). Set the peer up afterwards.
   */
  peer: Omit<VethEnd, 'up'>;
}

export function buildAddVeth(v: VethSpec): Buffer {
  // Attribute order as iproute2 sends it (mtu, address, netns, name), so fixtures compare byte for byte.
  const end = (e: VethEnd) => [
    ...commonAttrs(e),
    ...(e.netnsFd !== undefined ? [attrU32(IFLA_NET_NS_FD, e.netnsFd)] : []),
    attrStr(IFLA_IFNAME, e.name),
  ];
  // VETH_INFO_PEER carries a whole ifinfomsg + attributes for the peer (drivers/net/veth.c).
  const peer = attr(VETH_INFO_PEER, Buffer.concat([ifinfomsg(), ...end(v.peer)]));
  return nlmsg(
    RTM_NEWLINK,
    REQ | NLM_F_CREATE | NLM_F_EXCL,
    ifinfomsg(upFlags(v.up)),
    ...end(v),
    nested(IFLA_LINKINFO, attrStrRaw(IFLA_INFO_KIND, 'veth'), nested(IFLA_INFO_DATA, peer)),
  );
}

/**
 * Creates a veth pair. Give `peer.netnsFd` to create the peer directly in another netns: that
 * avoids moving it afterwards, the most expensive kernel step of an ADD (node-stack.md §2).
 */
export function addVeth(nl: NetlinkSocket, v: VethSpec): void {
  nl.request(buildAddVeth(v), 'creating veth', v.name);
}

export function buildDeleteLink(ref: LinkRef): Buffer {
  const { hdr, name } = refHeader(ref);
  return nlmsg(RTM_DELLINK, REQ, hdr, ...name);
}

/** Deletes a link (for a veth, both ends go). Missing -> ENODEV (isNotFound). */
export function deleteLink(nl: NetlinkSocket, ref: LinkRef): void {
  nl.request(buildDeleteLink(ref), 'deleting link', refName(ref));
}

export interface LinkChanges {
  up?: boolean;
  promisc?: boolean;
  allmulti?: boolean;
  mtu?: number;
  /** transmit queue length in packets (u32) */
  txQLen?: number;
  mac?: string;
  name?: string;
  /** ifindex of the new master; 0 or null removes it (nomaster) */
  master?: number | null;
  /** move to another netns (fd from openNetnsFd) */
  netnsFd?: number;
  /** IFLA_IFALIAS (the kernel ignores it when a link is created, so it is set afterwards) */
  alias?: string;
}

export function buildSetLink(ref: LinkRef, c: LinkChanges): Buffer {
  let flags = 0;
  let change = 0;
  if (c.up !== undefined) {
    change |= IFF_UP;
    if (c.up) flags |= IFF_UP;
  }
  if (c.promisc !== undefined) {
    change |= IFF_PROMISC;
    if (c.promisc) flags |= IFF_PROMISC;
  }
  if (c.allmulti !== undefined) {
    change |= IFF_ALLMULTI;
    if (c.allmulti) flags |= IFF_ALLMULTI;
  }
  const attrs: Buffer[] = [];
  // By index the name may be changed; by name it only identifies the link.
  const { hdr, name } = refHeader(ref, AF_UNSPEC, flags, change);
  attrs.push(...name);
  if (c.name !== undefined && typeof ref !== 'string') attrs.push(attrStr(IFLA_IFNAME, c.name));
  if (c.mtu !== undefined) attrs.push(attrU32(IFLA_MTU, c.mtu));
  if (c.mac !== undefined) attrs.push(attr(IFLA_ADDRESS, macBytes(c.mac)));
  if (c.txQLen !== undefined) attrs.push(attrU32(IFLA_TXQLEN, c.txQLen));
  if (c.master !== undefined) attrs.push(attrU32(IFLA_MASTER, c.master ?? 0));
  if (c.netnsFd !== undefined) attrs.push(attrU32(IFLA_NET_NS_FD, c.netnsFd));
  if (c.alias !== undefined) attrs.push(attrStrRaw(IFLA_IFALIAS, c.alias));
  return nlmsg(RTM_NEWLINK, REQ, hdr, ...attrs);
}

function describe(c: LinkChanges): string {
  const parts: string[] = [];
  if (c.up !== undefined) parts.push(c.up ? 'up' : 'down');
  if (c.promisc !== undefined) parts.push(`promisc ${c.promisc ? 'on' : 'off'}`);
  if (c.allmulti !== undefined) parts.push(`allmulticast ${c.allmulti ? 'on' : 'off'}`);
  if (c.mtu !== undefined) parts.push(`mtu ${c.mtu}`);
  if (c.txQLen !== undefined) parts.push(`txqueuelen ${c.txQLen}`);
  if (c.mac !== undefined) parts.push(`address ${c.mac}`);
  if (c.name !== undefined) parts.push(`name ${c.name}`);
  if (c.master !== undefined) parts.push(c.master ? `master ${c.master}` : 'nomaster');
  if (c.netnsFd !== undefined) parts.push('netns');
  if (c.alias !== undefined) parts.push(`alias ${c.alias}`);
  return parts.join(' ');
}

/**
 * Applies several changes in one RTM_NEWLINK (like `ip link set X master br0 up`). A rename needs
 * the link referenced by index and (kernel rule) the link down.
 */
export function setLink(nl: NetlinkSocket, ref: LinkRef, c: LinkChanges): void {
  if (c.name !== undefined && typeof ref === 'string') throw new Error(`renaming link ${ref}: reference it by index`);
  nl.request(buildSetLink(ref, c), 'setting link', `${refName(ref)} ${describe(c)}`);
}

export const setLinkUp = (nl: NetlinkSocket, ref: LinkRef): void => setLink(nl, ref, { up: true });
export const setLinkDown = (nl: NetlinkSocket, ref: LinkRef): void => setLink(nl, ref, { up: false });

export interface BridgePortChanges {
  hairpin?: boolean;
  isolated?: boolean;
}

/** RTM_SETLINK AF_BRIDGE with a nested IFLA_PROTINFO (the kernel needs NLA_F_NESTED there). */
export function buildSetBridgePort(index: number, c: BridgePortChanges): Buffer {
  const port: Buffer[] = [];
  if (c.hairpin !== undefined) port.push(attrU8(IFLA_BRPORT_MODE, c.hairpin ? 1 : 0));
  if (c.isolated !== undefined) port.push(attrU8(IFLA_BRPORT_ISOLATED, c.isolated ? 1 : 0));
  return nlmsg(RTM_SETLINK, REQ, ifinfomsg({ family: AF_BRIDGE, index }), nested(IFLA_PROTINFO | NLA_F_NESTED, ...port));
}

/** Sets bridge-port flags (hairpin mode, port isolation) on a port of a bridge. */
export function setBridgePort(nl: NetlinkSocket, port: { index: number; name: string } | number, c: BridgePortChanges): void {
  const index = typeof port === 'number' ? port : port.index;
  const what = [c.hairpin !== undefined ? `hairpin ${c.hairpin ? 'on' : 'off'}` : '', c.isolated !== undefined ? `isolated ${c.isolated ? 'on' : 'off'}` : '']
    .filter(Boolean)
    .join(' ');
  nl.request(buildSetBridgePort(index, c), 'setting bridge port', `${refName(port)} ${what}`);
}

/**
 * Waits until `ready(link)` holds for the link `ref`, re-checking on every RTM_NEWLINK event for it
 * (RTNLGRP_LINK) instead of sleeping (the reference sleeps 0/50/500/1000/1000 ms for the host
 * veth's operstate); blocks this thread while it waits. Returns the link in its ready state.
 * Throws WaitTimeoutError after `timeoutMs` ms, NetlinkError ENODEV if the link goes away,
 * NetlinkError for socket failures.
 */
export function waitForLink(nl: NetlinkSocket, ref: LinkRef, ready: (l: Link) => boolean, timeoutMs: number): Link {
  nl.subscribe(RTNLGRP_LINK);
  try {
    // Subscribe first, then read: a change between the two is seen as an event. Events only wake
    // us up; the state is always read afresh, so a stale queued event can never win over it.
    let link = getLink(nl, ref);
    const deadline = Date.now() + timeoutMs;
    while (!ready(link)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new WaitTimeoutError(link, timeoutMs);
      link = afterEvent(nl, link, nl.nextEvent(left));
    }
    return link;
  } finally {
    nl.unsubscribe();
  }
}

/**
 * waitForLink for long-running processes: the same wait and errors, with the event loop free
 * (NetlinkSocket.nextEventAsync). The socket's subscription is the wait's own: one wait per socket
 * at a time, and no other use of `nl` until it settles.
 */
export async function waitForLinkAsync(nl: NetlinkSocket, ref: LinkRef, ready: (l: Link) => boolean, timeoutMs: number): Promise<Link> {
  nl.subscribe(RTNLGRP_LINK);
  try {
    let link = getLink(nl, ref);
    const deadline = Date.now() + timeoutMs;
    while (!ready(link)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new WaitTimeoutError(link, timeoutMs);
      link = afterEvent(nl, link, await nl.nextEventAsync(left));
    }
    return link;
  } finally {
    nl.unsubscribe();
  }
}

/** The link's state after a wake-up: read afresh if the event was about it (or events were lost), else unchanged. */
function afterEvent(nl: NetlinkSocket, link: Link, ev: NlMsg | undefined): Link {
  const lost = nl.takeLostEvents();
  if (!lost && (!ev || decodeIfinfomsg(ev.payload).index !== link.index)) return link;
  try {
    return getLink(nl, link.index);
  } catch (e) {
    if (isNotFound(e)) throw new NetlinkError('waiting for link', link.name, ENODEV);
    throw e;
  }
}

/** waitForLink ran out of time; carries the last state seen for the caller's message. kind 'try-again'. */
export class WaitTimeoutError extends Error {
  readonly kind = 'try-again' as const;
  constructor(
    readonly link: Link,
    readonly timeoutMs: number,
  ) {
    super(`link ${link.name} not ready after ${timeoutMs} ms (operstate ${link.operstate})`);
    this.name = 'WaitTimeoutError';
  }
}
