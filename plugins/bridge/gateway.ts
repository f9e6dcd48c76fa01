// Gateway maths on the IPAM result (the reference's calcGateways): which addresses go on the bridge,
// which default routes the pod gets.
import { addTo, formatIP, ipNetEqual, networkOf, parseCIDR, parseIP, type Family, type IP, type IPNet } from '../../shared/ip';
import { CniError, ErrInternal } from '../../shared/cni/errors';
import type { Result } from '../../shared/cni/types';
import type { BridgeConf } from './config';

export interface GatewayInfo {
  family: Family;
  gateways: IPNet[]; // gateway address with the subnet's prefix, for the bridge (isGateway only)
  defaultRouteFound: boolean;
}

/** The container interface's index in the result: [bridge, host veth, container]. */
export const CONTAINER_IF_INDEX = 2;

const DEFAULT_DST: Record<Family, string> = { 4: '0.0.0.0/0', 6: '::/0' };

/** Network address + 1 (the reference's calcGatewayIP). */
export function firstHost(n: IPNet): IP {
  return addTo(networkOf(n).ip, 1n)!;
}

/**
 * Points every IP at the container interface, fills in missing gateways (isGateway), and appends a
 * default route per family (isDefaultGateway) unless IPAM already returned one with a gateway.
 * Mutates `result` like the reference.
 */
export function calcGateways(result: Result, conf: Pick<BridgeConf, 'isGateway' | 'isDefaultGateway'>): Record<Family, GatewayInfo> {
  const info: Record<Family, GatewayInfo> = {
    4: { family: 4, gateways: [], defaultRouteFound: false },
    6: { family: 6, gateways: [], defaultRouteFound: false },
  };
  for (const ip of result.ips ?? []) {
    const net = parseCIDR(ip.address);
    if (!net) throw new CniError(ErrInternal, `Unknown IP object: ${JSON.stringify(ip)}`);
    const g = info[net.ip.family];
    ip.interface = CONTAINER_IF_INDEX;
    let gw: IP | null = ip.gateway ? parseIP(ip.gateway) : null;
    if (ip.gateway && !gw) throw new CniError(ErrInternal, `Unknown IP object: ${JSON.stringify(ip)}`);
    if (!gw && conf.isGateway) {
      gw = firstHost(net);
      ip.gateway = formatIP(gw);
    }
    if (conf.isDefaultGateway && !g.defaultRouteFound) {
      const dst = DEFAULT_DST[g.family];
      g.defaultRouteFound = (result.routes ?? []).some((r) => !!r.gw && sameNet(r.dst, dst));
      if (!g.defaultRouteFound) {
        // The reference appends {dst, gw: ip.gateway}: without isGateway's fill-in gw may be empty.
        (result.routes ??= []).push(ip.gateway ? { dst, gw: ip.gateway } : { dst });
        g.defaultRouteFound = true;
      }
    }
    if (conf.isGateway && gw) g.gateways.push({ ip: gw, prefix: net.prefix });
  }
  return info;
}

function sameNet(a: string, b: string): boolean {
  const x = parseCIDR(a);
  const y = parseCIDR(b);
  return !!x && !!y && ipNetEqual(networkOf(x), networkOf(y));
}
