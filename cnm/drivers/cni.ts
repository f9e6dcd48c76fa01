// The cni driver: a CNM network that is any existing CNI network list, named with
// `-o cni.network=NAME` and read from the conf dir when the network is created. The list is kept
// with the network (and written to net.d under the CNM network's name), so a later edit of the
// source does not change a network that has endpoints. Addresses come from the chain's own IPAM at
// join; --ip/--ip6 are passed on as requested addresses (requestedIPs below).
import { loadConfList } from '../../runner/conf';
import { failed, invalid } from '../errors';
import type { NetworkRecord } from '../model';
import { cniAdd, cniDel, removeConflist, writeConflist } from './cni-attach';
import type { Driver, JoinRequest } from './driver';

export const OPT_CNI_NETWORK = 'cni.network';

const list = (n: NetworkRecord): Record<string, unknown> => ({ ...(n.data.conflist as Record<string, unknown>), name: n.name });

const requested = (j: JoinRequest): string[] => [j.endpoint.requested?.ipv4, j.endpoint.requested?.ipv6].filter((x): x is string => !!x);

/**
 * Requested addresses (IPs or CIDRs) reach the chain as the `ips` capability (runtimeConfig.ips) when
 * a plugin of the list declares it, else as CNI_ARGS IP= (host-local and the reference's IPAMs read
 * it; one address), with IgnoreUnknown=1 so plugins that do not know IP do not fail on it (the
 * reference's LoadArgs). Used for --ip/--ip6 here and for Docker's addresses by the Docker plugin.
 */
export function requestedIPArgs(list: Record<string, unknown>, ips: string[]): { capabilityArgs: Record<string, unknown>; args: Array<[string, string]> } {
  if (!ips.length) return { capabilityArgs: {}, args: [] };
  const plugins = Array.isArray(list.plugins) ? (list.plugins as Array<{ capabilities?: Record<string, unknown> }>) : [];
  if (plugins.some((p) => p.capabilities?.ips === true)) return { capabilityArgs: { ips }, args: [] };
  return { capabilityArgs: {}, args: [['IgnoreUnknown', '1'], ['IP', ips[0]!]] };
}

const requestedIPs = (list: Record<string, unknown>, j: JoinRequest) => requestedIPArgs(list, requested(j));

export const cniDriver: Driver = {
  name: 'cni',
  scope: 'local',
  usesIpam: false,

  async createNetwork(n, ctx) {
    const source = n.options[OPT_CNI_NETWORK];
    if (!source) throw invalid(`network ${JSON.stringify(n.name)}: the cni driver needs -o ${OPT_CNI_NETWORK}=NAME`);
    for (const k of Object.keys(n.options)) if (k !== OPT_CNI_NETWORK) throw invalid(`unsupported option ${JSON.stringify(k)} for the cni driver (supported: ${OPT_CNI_NETWORK})`);
    if (n.ipam.config.length) throw invalid(`network ${JSON.stringify(n.name)}: a cni network's addresses come from its conflist's IPAM (no --subnet)`);
    let conf;
    try {
      conf = loadConfList(ctx.confDir, source);
    } catch (e) {
      throw failed(`-o ${OPT_CNI_NETWORK}=${source}`, e);
    }
    // The list as loaded, fragments from <confDir>/<name>/*.conf included in its plugins.
    const conflist = { ...(JSON.parse(conf.bytes.toString('utf8')) as Record<string, unknown>), plugins: conf.plugins.map((p) => p.raw) };
    n.data = { source, conflist };
    writeConflist(ctx, n.name, list(n));
  },
  async deleteNetwork(n, ctx) {
    removeConflist(ctx, n.name);
  },
  async join(j, ctx) {
    const l = list(j.network);
    return cniAdd(ctx, l, j, requestedIPs(l, j));
  },
  async leave(j, ctx) {
    const l = list(j.network);
    await cniDel(ctx, l, j, requestedIPs(l, j));
  },
};
