// ptp's point-to-point routing on a veth (the reference's setupContainerVeth / setupHostVeth).
// veth has no IFF_POINTTOPOINT, so in the pod the address keeps its prefix but the kernel's
// "<subnet> dev eth0" route is replaced by "<gw>/32 dev eth0 scope link" plus "<subnet> via <gw>":
// everything, the neighbours in the subnet included, goes through the gateway on the host veth.
// On the host, the host veth holds the gateway as a /32 (/128) and a /32 (/128) route leads back.
import { CniError, ErrInvalidNetworkConfig, errorMessage } from '../../../shared/cni/errors';
import type { IPConfig } from '../../../shared/cni/types';
import { bits, formatCIDR, networkOf, parseCIDR, parseIP, type IP, type IPNet } from '../../../shared/ip';
import { addAddr } from '../../../shared/linux/netlink/addr';
import { RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE } from '../../../shared/linux/netlink/constants';
import { isExists, isNotFound } from '../../../shared/linux/netlink/errors';
import type { Link } from '../../../shared/linux/netlink/link';
import { addRoute, deleteRoute, describeRoute, type RouteSpec } from '../../../shared/linux/netlink/route';
import type { NetlinkSocket } from '../../../shared/linux/netlink/socket';

/** One pod address with the gateway ptp routes it through. */
export interface PtpAddress {
  address: IPNet; // host bits kept (198.18.0.2/24)
  gateway: IP;
}

const hostNet = (ip: IP): IPNet => ({ ip, prefix: bits(ip.family) });

/**
 * The IPAM result's addresses with their gateways. ptp cannot route an address without a gateway
 * (the reference fails later, on a half-built pod): code 7 naming the address, before any change.
 */
export function ptpAddresses(ips: IPConfig[]): PtpAddress[] {
  return ips.map((ipc, i) => {
    const address = parseCIDR(ipc.address);
    const gateway = ipc.gateway ? parseIP(ipc.gateway) : null;
    if (!address || !gateway || gateway.family !== address.ip.family)
      throw new CniError(
        ErrInvalidNetworkConfig,
        `IPAM result ips[${i}] ${JSON.stringify(ipc)}: ptp routes each address through its gateway on the host veth, so it needs a gateway of the same family (set "gateway" in the IPAM config)`,
      );
    return { address, gateway };
  });
}

function add(nl: NetlinkSocket, r: RouteSpec, ignoreExisting = false): void {
  try {
    addRoute(nl, r);
  } catch (e) {
    if (ignoreExisting && isExists(e)) return;
    throw new Error(`failed to add route ${describeRoute(r)}: ${errorMessage(e)}`, { cause: e });
  }
}

/** In the pod (socket of its netns), after configureIface: swap the subnet route for the routes via the gateway. */
export function setupPodRoutes(nl: NetlinkSocket, link: Link, addrs: PtpAddress[]): void {
  for (const { address, gateway } of addrs) {
    const subnet = networkOf(address);
    try {
      deleteRoute(nl, { dst: subnet, oif: link.index });
    } catch (e) {
      // A /32 (/128) address has no subnet route to remove (the reference fails here).
      if (!isNotFound(e)) throw new Error(`failed to delete route ${formatCIDR(subnet)} dev ${link.name}: ${errorMessage(e)}`, { cause: e });
    }
    add(nl, { dst: hostNet(gateway), oif: link.index, scope: RT_SCOPE_LINK, src: address.ip });
    add(nl, { dst: subnet, gw: gateway, oif: link.index, scope: RT_SCOPE_UNIVERSE, src: address.ip });
  }
}

/** On the host: the gateway as a host address on the host veth (no DAD), and a host route to each pod address. */
export function setupHostVeth(nl: NetlinkSocket, veth: Link, addrs: PtpAddress[]): void {
  for (const { address, gateway } of addrs) {
    try {
      // No DAD (beyond the reference): a tentative gateway leaves a new pod without IPv6 for 1-2 s (plugins#680).
      addAddr(nl, veth, hostNet(gateway), { noDad: true });
    } catch (e) {
      throw new Error(`failed to add IP addr ${formatCIDR(hostNet(gateway))} to veth ${veth.name}: ${errorMessage(e)}`, { cause: e });
    }
    // Scope host, as the reference's ip.AddHostRoute; an existing identical route is fine, as there.
    add(nl, { dst: hostNet(address.ip), oif: veth.index, scope: RT_SCOPE_HOST }, true);
  }
}
