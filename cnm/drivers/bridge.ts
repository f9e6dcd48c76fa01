// The bridge driver: Docker's default network type as our bridge + IPAM chain. The network's
// conflist (host-local on the network's store) goes to <state>/net.d for cnitool; a join runs the
// same chain with `static` IPAM carrying the endpoint's allocated addresses (see ../ipam.ts).
import { contains, parseCIDR } from '../../shared/ip';
import { deleteLink, findLink, getLink, isNotFound, listLinks, withNetlink } from '../../shared/linux/netlink';
import { bridgeConflist, bridgeSettings, OPT_BRIDGE_NAME, type BridgeNetworkSpec } from '../bridge-conflist';
import { conflict, invalid } from '../errors';
import type { NetworkRecord } from '../model';
import { cniAdd, cniDel, removeConflist, writeConflist } from './cni-attach';
import type { Driver, DriverContext, JoinRequest } from './driver';

const spec = (n: NetworkRecord): BridgeNetworkSpec => ({ id: n.id, name: n.name, ipam: n.ipam.config, internal: n.internal, options: n.options });

function joinList(j: JoinRequest, ctx: DriverContext): Record<string, unknown> {
  const { ipv4, ipv6 } = j.endpoint;
  const gw = (cidr: string): string => j.network.ipam.config.find((p) => p.subnet.includes(':') === cidr.includes(':') && inSubnet(cidr, p.subnet))?.gateway ?? '';
  const addresses = {
    ...(ipv4 ? { ipv4: { address: ipv4, gateway: gw(ipv4) } } : {}),
    ...(ipv6 ? { ipv6: { address: ipv6, gateway: gw(ipv6) } } : {}),
  };
  return bridgeConflist(spec(j.network), { ipam: { type: 'static', addresses, defaultRoute: j.defaultRoute }, cniPath: ctx.cniPath });
}

const inSubnet = (cidr: string, subnet: string): boolean => contains(parseCIDR(subnet)!, parseCIDR(cidr)!.ip);

export const bridgeDriver: Driver = {
  name: 'bridge',
  scope: 'local',
  usesIpam: true,

  async createNetwork(n, ctx) {
    if (!n.ipam.config.length) throw invalid(`network ${JSON.stringify(n.name)}: the bridge driver needs a --subnet`);
    const s = bridgeSettings(spec(n));
    // One device per network, as Docker's driver: two networks on one bridge would share a segment.
    const other = (await ctx.networks()).find((o) => o.driver === 'bridge' && o.data.bridge === s.bridge);
    if (other) throw conflict(`bridge ${JSON.stringify(s.bridge)} is already used by network ${JSON.stringify(other.name)}`);
    // A device that exists already (docker0, an admin's bridge) is used, and left alone at network rm.
    const existing = withNetlink((nl) => findLink(nl, s.bridge));
    // Refused now, as Docker's driver does, rather than by every join's CNI ADD.
    if (existing && existing.kind !== 'bridge') throw invalid(`-o ${OPT_BRIDGE_NAME}=${s.bridge}: existing interface ${JSON.stringify(s.bridge)} is not a bridge`);
    const existed = existing !== undefined;
    n.data = { bridge: s.bridge, ...(existed ? { bridgeExisted: true } : {}) };
    writeConflist(ctx, n.name, bridgeConflist(spec(n), { ipam: { type: 'host-local', dataDir: ctx.ipamDataDir }, cniPath: ctx.cniPath }));
  },

  async deleteNetwork(n, ctx) {
    removeConflist(ctx, n.name);
    // Docker removes its bridge with the network; ours goes when no port is left on it (a veth of
    // a cnitool attachment may still be there: then the device stays for cnitool's DEL).
    const name = typeof n.data.bridge === 'string' ? n.data.bridge : '';
    if (!name || n.data.bridgeExisted) return;
    withNetlink((nl) => {
      try {
        const l = getLink(nl, name);
        if (l.kind !== 'bridge') return;
        if (!listLinks(nl).some((p) => p.masterIndex === l.index)) deleteLink(nl, name);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    });
  },

  async join(j, ctx) {
    return cniAdd(ctx, joinList(j, ctx), j);
  },

  async leave(j, ctx) {
    await cniDel(ctx, joinList(j, ctx), j);
  },
};
