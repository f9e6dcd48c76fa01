// The bridge device: create or adopt it, put gateway addresses on it, keep its MAC stable.
import { contains, formatCIDR, ipNetEqual, networkOf, type IPNet } from '../../shared/ip';
import { addAddr, deleteAddr, listAddrs } from '../../shared/linux/netlink/addr';
import { isExists, isNotFound } from '../../shared/linux/netlink/errors';
import { afOf } from '../../shared/linux/netlink/ipaddr';
import { addBridge, getLink, setLink, type Link } from '../../shared/linux/netlink/link';
import type { NetlinkSocket } from '../../shared/linux/netlink/socket';
import { sysctlSet } from '../../shared/linux/sysctl';
import type { BridgeConf } from './config';

const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The bridge called `name`, or undefined when there is no such link; any other link is an error. */
function findBridge(nl: NetlinkSocket, name: string): Link | undefined {
  let l: Link;
  try {
    l = getLink(nl, name);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw new Error(`could not lookup "${name}": ${msg(e)}`);
  }
  if (l.kind !== 'bridge') throw new Error(`"${name}" already exists but is not a bridge`);
  return l;
}

/** The link called `name`, which must be a bridge (the reference's bridgeByName). */
export function bridgeByName(nl: NetlinkSocket, name: string): Link {
  const l = findBridge(nl, name);
  if (!l) throw new Error(`could not lookup "${name}": Link not found`); // the reference's text
  return l;
}

/**
 * Creates the bridge if missing (MTU and vlan_filtering only apply at creation, as in the reference),
 * sets promisc, accept_ra=0, up, and pins its MAC so it no longer follows the lowest port MAC
 * (k8s#30783; the reference pins only in gateway mode).
 */
export function ensureBridge(nl: NetlinkSocket, c: BridgeConf): Link {
  const fail = (why: string): never => {
    throw new Error(`failed to create bridge "${c.bridge}": ${why}`);
  };
  // Look first: the bridge exists on every ADD but a node's first, and a refused RTM_NEWLINK costs a
  // round trip (the reference adds, then looks). Two first ADDs racing both add; one gets EEXIST.
  let br: Link;
  try {
    br = findBridge(nl, c.bridge) ?? createBridge(nl, c);
  } catch (e) {
    return fail(msg(e));
  }
  try {
    sysctlSet(`net/ipv6/conf/${c.bridge}/accept_ra`, '0'); // we own the routes of this interface
  } catch {
    /* the reference ignores this error too (IPv6 may be disabled) */
  }
  const promisc = c.promiscMode && !br.promisc;
  const change = promisc || !br.up;
  if (change) {
    try {
      setLink(nl, br, { ...(promisc ? { promisc: true } : {}), up: true });
    } catch (e) {
      if (promisc) fail(`could not set promiscuous mode on "${c.bridge}": ${msg(e)}`);
      fail(msg(e));
    }
  }
  pinMac(nl, br);
  // Setting the MAC to itself changes nothing a Link shows: read back only what setLink changed.
  return change ? getLink(nl, br.index) : br;
}

function createBridge(nl: NetlinkSocket, c: BridgeConf): Link {
  try {
    addBridge(nl, { name: c.bridge, mtu: c.mtu || undefined, vlanFiltering: c.vlan !== 0 || c.vlanTrunk ? true : undefined });
  } catch (e) {
    if (!isExists(e)) throw new Error(`could not add "${c.bridge}": ${msg(e)}`);
  }
  return bridgeByName(nl, c.bridge);
}

/** Sets the bridge's MAC to itself (addr_assign_type becomes "set"). */
export function pinMac(nl: NetlinkSocket, br: Link): void {
  try {
    setLink(nl, br, { mac: br.mac });
  } catch (e) {
    throw new Error(`could not set bridge's mac: ${msg(e)}`);
  }
}

/**
 * Puts gateway address `want` (ip/prefix) on `link` (the reference's ensureAddr): an equal address is
 * fine; another IPv4 address, or an overlapping IPv6 one, is an error unless forceAddress replaces it.
 */
export function ensureAddr(nl: NetlinkSocket, link: Link, want: IPNet, forceAddress: boolean): void {
  const wantStr = formatCIDR(want);
  for (const a of listAddrs(nl, { link, family: afOf(want.ip.family) })) {
    const have = a.ipnet;
    if (ipNetEqual(have, want)) return;
    const overlaps = contains(networkOf(have), want.ip) || contains(networkOf(want), have.ip);
    if (want.ip.family === 4 || overlaps) {
      if (!forceAddress) throw new Error(`"${link.name}" already has an IP address different from ${wantStr}`);
      try {
        deleteAddr(nl, link, have);
      } catch (e) {
        if (!isNotFound(e)) throw new Error(`could not remove IP address from "${link.name}": ${msg(e)}`);
      }
    }
  }
  try {
    // No DAD for the gateway (beyond the reference): a tentative gateway leaves new pods without IPv6
    // for 1-2 s (plugins#680); the bridge's own subnet is ours.
    addAddr(nl, link, want, { noDad: true });
  } catch (e) {
    if (!isExists(e)) throw new Error(`could not add IP address ${wantStr} to "${link.name}": ${msg(e)}`);
  }
}
