// The bridge device: create or adopt it, put gateway addresses on it, keep its MAC stable.
import { randomBytes } from '../../shared/crypto';
import { errorMessage } from '../../shared/cni/errors';
import { contains, formatCIDR, ipNetEqual, networkOf, type IPNet } from '../../shared/ip';
import { addAddr, deleteAddr, listAddrs } from '../../shared/linux/netlink/addr';
import { isExists, isNotFound } from '../../shared/linux/netlink/errors';
import { afOf } from '../../shared/linux/netlink/ipaddr';
import { addBridge, getLink, listLinks, setLink, type Link } from '../../shared/linux/netlink/link';
import { formatMAC } from '../../shared/mac';
import type { NetlinkSocket } from '../../shared/linux/netlink/socket';
import { sysctlSet } from '../../shared/linux/sysctl';
import type { BridgeConf } from './config';


/** The bridge called `name`, or undefined when there is no such link; any other link is an error. */
function findBridge(nl: NetlinkSocket, name: string): Link | undefined {
  let l: Link;
  try {
    l = getLink(nl, name);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw new Error(`could not lookup "${name}": ${errorMessage(e)}`, { cause: e });
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
 * (k8s#30783; the reference pins only in gateway mode). A bridge we create gets its MAC in the
 * create message, which also sets the STP bridge id from it; an existing one is pinned by pinMac.
 */
export function ensureBridge(nl: NetlinkSocket, c: BridgeConf): Link {
  const fail = (why: string): never => {
    throw new Error(`failed to create bridge "${c.bridge}": ${why}`);
  };
  // Look first: the bridge exists on every ADD but a node's first, and a refused RTM_NEWLINK costs a
  // round trip (the reference adds, then looks). Two first ADDs racing both add; one gets EEXIST.
  let br: Link;
  let created = false;
  try {
    const found = findBridge(nl, c.bridge);
    if (found) br = found;
    else ({ br, created } = createBridge(nl, c));
  } catch (e) {
    return fail(errorMessage(e));
  }
  try {
    sysctlSet(`net/ipv6/conf/${c.bridge}/accept_ra`, '0'); // we own the routes of this interface
  } catch {
    /* the reference ignores this error too (IPv6 may be disabled) */
  }
  const promisc = c.promiscMode && !br.promisc;
  let change = promisc || !br.up;
  if (change) {
    try {
      setLink(nl, br, { ...(promisc ? { promisc: true } : {}), up: true });
    } catch (e) {
      if (promisc) fail(`could not set promiscuous mode on "${c.bridge}": ${errorMessage(e)}`);
      fail(errorMessage(e));
    }
  }
  if (!created) change = pinMac(nl, br) || change;
  // Setting the MAC to itself changes nothing a Link shows: read back only what changed.
  return change ? getLink(nl, br.index) : br;
}

/** Creates the bridge with a MAC of its own; `created` is false when a concurrent ADD made it first. */
function createBridge(nl: NetlinkSocket, c: BridgeConf): { br: Link; created: boolean } {
  let created = true;
  try {
    addBridge(nl, {
      name: c.bridge,
      mtu: c.mtu || undefined,
      // Given at creation, the address is "set" (pinned) and the kernel's br_dev_newlink copies it
      // into the STP bridge id; set afterwards to itself, the bridge id would stay 8000.0:0:0:0:0:0.
      mac: randomMac(),
      vlanFiltering: c.vlan !== 0 || c.vlanTrunk ? true : undefined,
    });
  } catch (e) {
    if (!isExists(e)) throw new Error(`could not add "${c.bridge}": ${errorMessage(e)}`, { cause: e });
    created = false;
  }
  return { br: bridgeByName(nl, c.bridge), created };
}

/** A random locally administered unicast MAC (what the kernel's eth_random_addr makes). */
function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return formatMAC(b);
}

const ZERO_MAC = '00:00:00:00:00:00';

/**
 * Pins the MAC of a bridge we did not create (addr_assign_type becomes "set"). Usually that is its
 * own MAC again; a fresh random one when keeping it would leave the bridge wrong for good and no
 * neighbour can have cached it: all-zero (a bridge whose last port left while unpinned, e.g. the
 * reference's non-gateway bridge), or an empty bridge whose STP bridge id does not carry its MAC
 * (the kernel only updates the id when the address changes). Returns whether the MAC changed.
 */
export function pinMac(nl: NetlinkSocket, br: Link): boolean {
  let mac = br.mac;
  if (mac === ZERO_MAC || (br.bridgeIdMac !== undefined && br.bridgeIdMac !== mac && !hasPorts(nl, br))) mac = randomMac();
  try {
    setLink(nl, br, { mac });
  } catch (e) {
    throw new Error(`could not set bridge's mac: ${errorMessage(e)}`, { cause: e });
  }
  return mac !== br.mac;
}

function hasPorts(nl: NetlinkSocket, br: Link): boolean {
  return listLinks(nl).some((l) => l.masterIndex === br.index);
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
        if (!isNotFound(e)) throw new Error(`could not remove IP address from "${link.name}": ${errorMessage(e)}`, { cause: e });
      }
    }
  }
  try {
    // No DAD for the gateway (beyond the reference): a tentative gateway leaves new pods without IPv6
    // for 1-2 s (plugins#680); the bridge's own subnet is ours.
    addAddr(nl, link, want, { noDad: true });
  } catch (e) {
    if (!isExists(e)) throw new Error(`could not add IP address ${wantStr} to "${link.name}": ${errorMessage(e)}`, { cause: e });
  }
}
