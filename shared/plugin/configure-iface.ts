// Applying an IPAM result to an interface inside a pod (the reference's pkg/ipam ConfigureIface) and
// checking it is still there (pkg/ip ValidateExpectedInterfaceIPs / ValidateExpectedRoute).
// Call these inside withNetns(pod) with a socket of that netns: the IPv6 sysctls go through /proc/sys.
import { errorMessage } from '../cni/errors';
import { formatCIDR, formatIP, ipEqual, ipNetEqual, networkOf, parseCIDR, parseIP, type IP, type IPNet } from '../ip';
import { addAddr, listAddrs } from '../linux/netlink/addr';
import { AF_INET6, RTNLGRP_IPV6_IFADDR, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN } from '../linux/netlink/constants';
import { afOf } from '../linux/netlink/ipaddr';
import { getLink, setLinkUp, type Link } from '../linux/netlink/link';
import { addRoute, listRoutes } from '../linux/netlink/route';
import type { NetlinkSocket } from '../linux/netlink/socket';
import { sysctlGet, sysctlSet } from '../linux/sysctl';
import type { IPConfig, Result, Route } from '../cni/types';

const DAD_SETTLE_MS = 5000; // the reference's dadSettleTimeout

// The edge: a Result carries text (parseResult has checked it); it is parsed here once and only
// IP/IPNet values go on to netlink.
function cidr(s: string): IPNet {
  const n = parseCIDR(s);
  if (!n) throw new Error(`invalid CIDR address ${JSON.stringify(s)}`);
  return n;
}

function ip(s: string): IP {
  const a = parseIP(s);
  if (!a) throw new Error(`invalid IP address ${JSON.stringify(s)}`);
  return a;
}

function enableIPv6(ifName: string): void {
  for (const iface of ['lo', ifName]) {
    const key = `net/ipv6/conf/${iface}/disable_ipv6`;
    let value: string;
    try {
      value = sysctlGet(key);
    } catch {
      continue; // the reference only logs a failed read (e.g. IPv6 disabled in the kernel)
    }
    if (value === '0') continue;
    try {
      sysctlSet(key, '0');
    } catch (e) {
      throw new Error(`failed to enable IPv6 for interface "${iface}" (${key}=${value}): ${errorMessage(e)}`, { cause: e });
    }
  }
  try {
    sysctlSet(`net/ipv6/conf/${ifName}/keep_addr_on_down`, '1');
  } catch (e) {
    throw new Error(`failed to enable keep_addr_on_down for interface "${ifName}": ${errorMessage(e)}`, { cause: e });
  }
}

/**
 * Waits until no IPv6 address of the link is tentative, woken by address events rather than the
 * reference's polling sleeps; fails on DAD failure or after 5 s.
 */
function settleAddresses(nl: NetlinkSocket, index: number, ifName: string): void {
  const tentative = (): boolean => {
    const addrs = listAddrs(nl, { link: index, family: AF_INET6 });
    const failed = addrs.find((a) => a.dadFailed);
    if (failed) throw new Error(`failed to settle addresses for "${ifName}": ${formatCIDR(failed.ipnet)} failed duplicate address detection`);
    return addrs.some((a) => a.tentative && a.scope === RT_SCOPE_UNIVERSE);
  };
  if (!tentative()) return;
  nl.subscribe(RTNLGRP_IPV6_IFADDR);
  try {
    const deadline = Date.now() + DAD_SETTLE_MS;
    while (tentative()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`failed to settle addresses for "${ifName}": link still has tentative addresses after ${DAD_SETTLE_MS} ms`);
      nl.nextEvent(left);
    }
  } finally {
    nl.unsubscribe();
  }
}

const showIP = (ip: IPConfig): string => JSON.stringify(ip);

export interface ConfigureOptions {
  /**
   * Runs after the addresses are up and settled, before the result's routes are added (ptp puts
   * its on-link route to the gateway here, so routes via a gateway outside the address's prefix work).
   */
  beforeRoutes?: (link: Link) => void;
}

/** Adds the result's addresses for `ifName`, sets it up, waits for DAD, adds the routes. */
export function configureIface(nl: NetlinkSocket, ifName: string, res: Result, o: ConfigureOptions = {}): void {
  const ifaces = res.interfaces ?? [];
  if (!ifaces.length) throw new Error('no interfaces to configure');
  let link: Link;
  try {
    link = getLink(nl, ifName);
  } catch (e) {
    throw new Error(`failed to lookup "${ifName}": ${errorMessage(e)}`, { cause: e });
  }
  let v4gw: IP | undefined;
  let v6gw: IP | undefined;
  let v6enabled = false;
  for (const ipc of res.ips ?? []) {
    if (ipc.interface === undefined) continue;
    if (ipc.interface < 0 || ipc.interface >= ifaces.length || ifaces[ipc.interface]!.name !== ifName)
      throw new Error(`failed to add IP addr ${showIP(ipc)} to "${ifName}": invalid interface index`);
    const addr = cidr(ipc.address);
    if (addr.ip.family === 6 && !v6enabled) {
      enableIPv6(ifName);
      v6enabled = true;
    }
    try {
      addAddr(nl, link, addr);
    } catch (e) {
      throw new Error(`failed to add IP addr ${showIP(ipc)} to "${ifName}": ${errorMessage(e)}`, { cause: e });
    }
    if (ipc.gateway) {
      const gw = ip(ipc.gateway);
      if (gw.family === 4) v4gw ??= gw;
      else v6gw ??= gw;
    }
  }
  try {
    setLinkUp(nl, link);
  } catch (e) {
    throw new Error(`failed to set "${ifName}" UP: ${errorMessage(e)}`, { cause: e });
  }
  if (v6gw) settleAddresses(nl, link.index, ifName);
  o.beforeRoutes?.(link);
  for (const r of res.routes ?? []) {
    const dst = cidr(r.dst);
    const gw = r.gw ? ip(r.gw) : dst.ip.family === 4 ? v4gw : v6gw;
    try {
      // Scope universe unless given, like vishvananda/netlink's zero value (not iproute2's "link").
      addRoute(nl, { dst, gw, oif: link.index, priority: r.priority, table: r.table, scope: r.scope ?? RT_SCOPE_UNIVERSE });
    } catch (e) {
      throw new Error(`failed to add route '${r.dst} via ${gw ? formatIP(gw) : '<nil>'} dev ${ifName} metric ${r.priority ?? 0}': ${errorMessage(e)}`, { cause: e });
    }
  }
}

/** Every result address is on the link and has a route to its prefix in the main table. */
export function validateExpectedInterfaceIPs(nl: NetlinkSocket, ifName: string, ips: IPConfig[]): void {
  if (!ips.length) return;
  let link;
  try {
    link = getLink(nl, ifName);
  } catch {
    throw new Error(`Cannot find container link ${ifName}`);
  }
  const have = listAddrs(nl, { link });
  for (const ipc of ips) {
    const addr = cidr(ipc.address);
    if (!have.some((a) => ipNetEqual(a.ipnet, addr))) throw new Error(`Failed to match addr ${ipc.address} on interface ${ifName}`);
    const prefix = networkOf(addr);
    const found = listRoutes(nl, { family: afOf(addr.ip.family), table: RT_TABLE_MAIN }).some((r) => ipNetEqual(r.dst, prefix));
    if (!found) throw new Error(`Failed to find Gateway ${ipc.gateway ?? '<nil>'} for interface ${ifName}`);
  }
}

/** Every result route is in the main table (a default route matches on destination only, as in the reference). */
export function validateExpectedRoutes(nl: NetlinkSocket, routes: Route[]): void {
  for (const r of routes) {
    const dst = networkOf(cidr(r.dst));
    const gw = r.gw ? ip(r.gw) : undefined;
    const isDefault = dst.prefix === 0;
    const found = listRoutes(nl, { family: afOf(dst.ip.family), table: RT_TABLE_MAIN }).some(
      (x) => ipNetEqual(x.dst, dst) && (isDefault || !gw || (x.gw !== undefined && ipEqual(x.gw, gw))),
    );
    if (!found) throw new Error(`Expected Route ${JSON.stringify({ dst: r.dst, gw: r.gw })} not found in routing table`);
  }
}
