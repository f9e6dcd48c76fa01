// CHECK (the reference's cmdCheck): the container veth named in prevResult is still there with its
// MAC, addresses and routes. Beyond the reference: the host side is checked too (the host veth is
// the container veth's peer, and the host route back to each pod address is in place), since a pod
// without them is unreachable although its own netns looks right.
import type { Result } from '../../../shared/cni/types';
import { bits, formatIP, ipNetEqual, parseCIDR } from '../../../shared/ip';
import { getLink, type Link } from '../../../shared/linux/netlink/link';
import { afOf } from '../../../shared/linux/netlink/ipaddr';
import { listRoutes } from '../../../shared/linux/netlink/route';
import type { NetlinkSocket } from '../../../shared/linux/netlink/socket';
import { validateExpectedInterfaceIPs, validateExpectedRoutes } from '../../../shared/plugin/configure-iface';

export interface CheckInput {
  host: NetlinkSocket;
  pod: NetlinkSocket;
  podPath: string;
  ifName: string;
  prev: Result;
}

function lookup(nl: NetlinkSocket, name: string): Link | undefined {
  try {
    return getLink(nl, name);
  } catch {
    return undefined;
  }
}

export function checkPtp({ host, pod, podPath, ifName, prev }: CheckInput): void {
  const ifaces = prev.interfaces ?? [];
  const contMap = ifaces.find((i) => i.name === ifName && i.sandbox === podPath);
  if (podPath !== (contMap?.sandbox ?? '')) throw new Error(`Sandbox in prevResult ${contMap?.sandbox ?? ''} doesn't match configured netns: ${podPath}`);

  // Messages as the reference's validateCniContainerInterface.
  const cont = lookup(pod, contMap!.name);
  if (!cont) throw new Error(`ptp: Container Interface name in prevResult: ${contMap!.name} not found`);
  if (cont.kind !== 'veth') throw new Error(`Error: Container interface ${cont.name} not of type veth/p2p`);
  if (contMap!.mac && contMap!.mac !== cont.mac) throw new Error(`ptp: Interface ${cont.name} Mac ${contMap!.mac} doesn't match container Mac: ${cont.mac}`);

  validateExpectedInterfaceIPs(pod, ifName, prev.ips ?? []);
  validateExpectedRoutes(pod, prev.routes ?? []);

  const hostMap = ifaces.find((i) => !i.sandbox);
  if (!hostMap) throw new Error(`ptp: no host interface in prevResult for ${ifName}`);
  const hostVeth = lookup(host, hostMap.name);
  if (!hostVeth || hostVeth.kind !== 'veth' || hostVeth.index !== cont.linkIndex || hostVeth.linkIndex !== cont.index)
    throw new Error(`ptp: host veth ${hostMap.name} of ${ifName} not found`);
  for (const ipc of prev.ips ?? []) {
    const addr = parseCIDR(ipc.address);
    if (!addr) continue; // parseResult has checked it
    const dst = { ip: addr.ip, prefix: bits(addr.ip.family) };
    const routes = listRoutes(host, { family: afOf(addr.ip.family), oif: hostVeth.index });
    if (!routes.some((r) => ipNetEqual(r.dst, dst))) throw new Error(`ptp: host route to ${formatIP(addr.ip)} via ${hostVeth.name} not found`);
  }
}
