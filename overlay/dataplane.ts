// The kernel side of one overlay network on one host: the vxlan device and, for every other host's
// subnet, a route, a neighbour entry and an FDB entry (flannel's vxlan backend, "L3" mode):
//   route  <remote subnet> via <remote VTEP addr> dev ovl.<vni> onlink
//   neigh  <remote VTEP addr> lladdr <remote vxlan MAC> dev ovl.<vni> nud permanent
//   fdb    <remote vxlan MAC> dev ovl.<vni> dst <remote underlay IP> self permanent
// Every function reconciles: it reads what the kernel has, changes only what differs and removes
// only what is not wanted, so a restarted agent never disturbs a packet that is already flowing.
import { addAddr, deleteAddr, listAddrs } from '../shared/linux/netlink/addr';
import { AF_INET } from '../shared/linux/netlink/constants';
import { isNotFound } from '../shared/linux/netlink/errors';
import { addVxlan, deleteLink, findLink, getLink, listLinks, setLink, type Link } from '../shared/linux/netlink/link';
import { deleteFdb, deleteNeighbour, listFdb, listNeighbours, replaceFdb, replaceNeighbour } from '../shared/linux/netlink/neigh';
import { deleteRoute, listRoutes, replaceRoute } from '../shared/linux/netlink/route';
import type { NetlinkSocket } from '../shared/linux/netlink/socket';
import { contains, formatCIDR, formatIP, ipEqual, type IP, type IPNet } from '../shared/ip';
import { VXLAN_PORT, bridgeName, vtepAddress, vxlanName } from './network';

/** The underlay interface: the link that has the agent's --underlay-ip. */
export interface Underlay {
  ip: IP;
  /** the address's network (for the overlap check) */
  net: IPNet;
  index: number;
  name: string;
  mtu: number;
}

/** Finds the link holding `ip`; throws Error naming the address when no link has it. */
export function findUnderlay(nl: NetlinkSocket, ip: IP): Underlay {
  const addr = listAddrs(nl, { family: AF_INET }).find((a) => ipEqual(a.ipnet.ip, ip));
  if (!addr) throw new Error(`--underlay-ip ${formatIP(ip)}: no interface in this network namespace has that address`);
  const link = getLink(nl, addr.index);
  return { ip, net: addr.ipnet, index: link.index, name: link.name, mtu: link.mtu };
}

/** Another host's share of the network, as etcd describes it. */
export interface Peer {
  subnet: IPNet;
  underlay: IP;
  mac: string;
}

/**
 * Makes ovl.<vni> exist with the right tunnel (VNI, local VTEP, underlay link, port, no learning),
 * MTU `mtu`, up. A device whose tunnel is right is kept as it is (its FDB and neighbours with it);
 * a wrong one is replaced. Returns the link.
 */
export function ensureDevice(nl: NetlinkSocket, vni: number, u: Underlay, mtu: number, log: (m: string) => void): Link {
  const name = vxlanName(vni);
  let link = findLink(nl, name);
  if (link) {
    const v = link.vxlan;
    const right = link.kind === 'vxlan' && v && v.vni === vni && v.link === u.index && v.local && ipEqual(v.local, u.ip) && v.port === VXLAN_PORT && !v.learning;
    if (!right) {
      log(`replacing ${name}: its tunnel is not VNI ${vni} from ${formatIP(u.ip)} on ${u.name}`);
      deleteLink(nl, link.index);
      link = undefined;
    }
  }
  if (!link) {
    addVxlan(nl, { name, vni, local: u.ip, link: u.index, port: VXLAN_PORT, mtu });
    link = getLink(nl, name);
  }
  if (link.mtu !== mtu || !link.up) {
    setLink(nl, link.index, { mtu, up: true });
    link = getLink(nl, link.index);
  }
  return link;
}

/** Makes the device hold exactly the VTEP address of `hostSubnet` (/32), the next hop other hosts route to. */
export function setVtepAddress(nl: NetlinkSocket, dev: Link, hostSubnet: IPNet): void {
  const want: IPNet = { ip: vtepAddress(hostSubnet), prefix: 32 };
  let have = false;
  for (const a of listAddrs(nl, { link: dev.index, family: AF_INET })) {
    if (a.ipnet.prefix === 32 && ipEqual(a.ipnet.ip, want.ip)) have = true;
    else deleteAddr(nl, dev.index, a.ipnet);
  }
  if (!have) addAddr(nl, dev.index, want);
}

/** What changed on the device (for the log and the tests' convergence figures). */
export interface PeerChanges {
  added: string[];
  removed: string[];
}

/**
 * Programs route + neighbour + FDB entry for every peer on device `dev` and removes every route,
 * neighbour and FDB entry there that no peer wants (a host that left). Entries already right are
 * not touched.
 */
export function reconcilePeers(nl: NetlinkSocket, dev: Link, peers: Peer[]): PeerChanges {
  const out: PeerChanges = { added: [], removed: [] };
  const wantRoute = new Map(peers.map((p) => [formatCIDR(p.subnet), p]));
  const wantNeigh = new Map(peers.map((p) => [formatIP(vtepAddress(p.subnet)), p]));
  const wantFdb = new Map(peers.map((p) => [p.mac, p]));

  for (const r of listRoutes(nl, { family: AF_INET, oif: dev.index })) {
    const p = wantRoute.get(formatCIDR(r.dst));
    if (p && r.gw && ipEqual(r.gw, vtepAddress(p.subnet)) && r.onlink) wantRoute.delete(formatCIDR(r.dst));
    else if (!p && r.dst.prefix < 32) {
      ignoreMissing(() => deleteRoute(nl, { dst: r.dst, oif: dev.index }));
      out.removed.push(formatCIDR(r.dst));
    }
  }
  for (const n of listNeighbours(nl, AF_INET, dev.index)) {
    const p = wantNeigh.get(formatIP(n.ip));
    if (p && n.mac === p.mac) wantNeigh.delete(formatIP(n.ip));
    else if (!p) ignoreMissing(() => deleteNeighbour(nl, { index: dev.index, ip: n.ip }));
  }
  for (const f of listFdb(nl, dev.index)) {
    const p = wantFdb.get(f.mac);
    if (p && f.dst && ipEqual(f.dst, p.underlay)) wantFdb.delete(f.mac);
    else if (f.dst) ignoreMissing(() => deleteFdb(nl, { index: dev.index, mac: f.mac, dst: f.dst }));
  }
  // FDB and neighbour first: once the route is there, packets take it.
  for (const p of wantFdb.values()) replaceFdb(nl, { index: dev.index, mac: p.mac, dst: p.underlay });
  for (const p of wantNeigh.values()) replaceNeighbour(nl, { index: dev.index, ip: vtepAddress(p.subnet), mac: p.mac });
  for (const p of wantRoute.values()) {
    replaceRoute(nl, { dst: p.subnet, gw: vtepAddress(p.subnet), oif: dev.index, onlink: true });
    out.added.push(formatCIDR(p.subnet));
  }
  return out;
}

/**
 * Deletes the network's vxlan device (its routes, neighbours and FDB go with it) and its pods'
 * bridge ovlbr.<vni>: the bridge keeps this host's gateway address, and cnm gives the next network
 * the lowest free VNI, so a network created after this one would find ovlbr.<vni> holding another
 * subnet's gateway (the bridge plugin then refuses every ADD) and a connected route to a subnet
 * that may now be another host's. True when the vxlan device was there; gone already is fine.
 */
export function removeDevice(nl: NetlinkSocket, vni: number): boolean {
  const bridge = findLink(nl, bridgeName(vni));
  if (bridge?.kind === 'bridge') ignoreMissing(() => deleteLink(nl, bridge.index));
  try {
    deleteLink(nl, vxlanName(vni));
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/**
 * Removes the IPv4 addresses of the pods' bridge ovlbr.<vni> outside `hostSubnet`: gateways of an
 * earlier network of this VNI (removed and created again while this agent was not running, or
 * leased another host subnet since). Returns the addresses removed, as CIDR text.
 */
export function pruneBridgeAddresses(nl: NetlinkSocket, vni: number, hostSubnet: IPNet): string[] {
  const bridge = findLink(nl, bridgeName(vni));
  if (bridge?.kind !== 'bridge') return [];
  const gone: string[] = [];
  for (const a of listAddrs(nl, { link: bridge.index, family: AF_INET })) {
    if (a.ipnet.prefix === hostSubnet.prefix && contains(hostSubnet, a.ipnet.ip)) continue;
    ignoreMissing(() => deleteAddr(nl, bridge.index, a.ipnet));
    gone.push(formatCIDR(a.ipnet));
  }
  return gone;
}

/** The VNIs of the ovl.<vni> devices in this netns (to find devices of networks that are gone). */
export function deviceVnis(nl: NetlinkSocket): number[] {
  return listLinks(nl)
    .filter((l) => l.kind === 'vxlan' && l.vxlan && l.name === vxlanName(l.vxlan.vni))
    .map((l) => l.vxlan!.vni);
}


function ignoreMissing(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}
