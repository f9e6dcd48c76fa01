// The overlay driver: a global network whose definition lives in etcd (the cluster store) and whose
// data plane is the overlay agent's on every host (VXLAN, overlay/agent.ts). create writes the
// definition the agents watch and allocates the VNI in one etcd transaction; a join runs the
// `overlay` CNI plugin, so a sandbox gets an address from this host's subnet of the network exactly
// as a CNI pod does (same host-local store: CNM sandboxes and CNI pods never collide).
import { parseCIDR } from '../../shared/ip';
import { DEFAULT_HOST_PREFIX, MAX_VNI, decodeDef, defProblem, encodeDef, networkKey, subnetsPrefix, vniKey, type NetworkDef } from '../../overlay/network';
import { readLease } from '../../overlay/lease-file';
import { cnmEndpointsPrefix, etcdCall, type Cluster } from '../cluster-store';
import { conflict, invalid } from '../errors';
import type { EndpointIpam } from '../ipam';
import type { NetworkRecord } from '../model';
import { cniAdd, cniDel, removeConflist, writeConflist } from './cni-attach';
import type { Driver, JoinRequest } from './driver';

export const OPT_HOST_PREFIX = 'host-prefix';
export const OPT_VNI = 'vni';

const list = (c: Cluster, n: NetworkRecord): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name: n.name,
  plugins: [{ type: 'overlay', network: n.name, stateDir: c.overlayStateDir, capabilities: { ips: true } }],
});

/** --ip: the `ips` capability, which the overlay plugin passes on to host-local (the address must be in this host's subnet). */
const requestedIPs = (j: JoinRequest): { capabilityArgs: Record<string, unknown> } => {
  const ips = [j.endpoint.requested?.ipv4, j.endpoint.requested?.ipv6].filter((x): x is string => !!x);
  return { capabilityArgs: ips.length ? { ips } : {} };
};

/** Addresses come from this host's subnet of the network at join (the overlay chain's host-local; --ip through the ips capability). */
const hostSubnetIpam: EndpointIpam = {
  reserveAux: () => undefined,
  allocate: () => ({}),
  release: () => undefined,
  destroy: () => undefined,
};

/** The definition from `network create -d overlay --subnet S [-o host-prefix=N] [-o vni=N]`; throws CnmError 'invalid'. */
function definition(n: NetworkRecord): { def: Omit<NetworkDef, 'vni'>; vni?: number } {
  for (const k of Object.keys(n.options)) if (k !== OPT_HOST_PREFIX && k !== OPT_VNI) throw invalid(`unsupported option ${JSON.stringify(k)} for the overlay driver (supported: ${OPT_HOST_PREFIX}, ${OPT_VNI})`);
  const pools = n.ipam.config;
  if (pools.length !== 1 || pools[0]!.subnet.includes(':')) throw invalid(`network ${JSON.stringify(n.name)}: the overlay driver needs exactly one IPv4 --subnet`);
  if (pools[0]!.ipRange || Object.keys(pools[0]!.auxAddresses ?? {}).length) throw invalid(`network ${JSON.stringify(n.name)}: --ip-range and --aux-address do not apply: each host hands out its own subnet`);
  const subnet = parseCIDR(pools[0]!.subnet)!;
  const hp = n.options[OPT_HOST_PREFIX] ?? String(DEFAULT_HOST_PREFIX);
  if (!/^\d+$/.test(hp)) throw invalid(`-o ${OPT_HOST_PREFIX}=${hp}: not a prefix length`);
  const v = n.options[OPT_VNI];
  if (v !== undefined && (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_VNI)) throw invalid(`-o ${OPT_VNI}=${v}: must be 1..${MAX_VNI}`);
  const def = { subnet, hostPrefix: Number(hp) };
  const why = defProblem({ ...def, vni: Number(v ?? 1) });
  if (why) throw invalid(`network ${JSON.stringify(n.name)}: ${why}`);
  return { def, vni: v === undefined ? undefined : Number(v) };
}

function hostOf(v: string): string {
  try {
    return String((JSON.parse(v) as { host?: unknown }).host ?? '?');
  } catch {
    return '?';
  }
}

/**
 * The VNIs in use: `reserved`, those with a vnis/ key (cnm's), and `byHand`, VNI → network name of
 * the definitions no vnis/ key reserves (written with etcdctl, as the README shows). The agents
 * leave a definition whose VNI an older one has unjoined, so a new network must avoid both.
 */
async function usedVnis(c: Cluster): Promise<{ reserved: Set<number>; byHand: Map<number, string> }> {
  const prefix = `${c.prefix}networks/`;
  const [defs, owners] = await Promise.all([
    etcdCall(c, 'listing overlay networks', c.client.getAll().prefix(prefix).strings()),
    etcdCall(c, 'listing VNIs', c.client.getAll().prefix(`${c.prefix}vnis/`).strings()),
  ]);
  const reserved = new Set(Object.keys(owners).map((k) => Number(k.slice(`${c.prefix}vnis/`.length))));
  const byHand = new Map<number, string>();
  for (const [key, value] of Object.entries(defs)) {
    const name = key.slice(prefix.length);
    try {
      const { vni } = decodeDef(name, value);
      if (owners[vniKey(c.prefix, vni)] !== name) byHand.set(vni, name);
    } catch {
      // not a definition the agents use
    }
  }
  return { reserved, byHand };
}

/**
 * This host's name in endpoint keys: the agent's --name from its host lease of the network (the
 * name its subnets/ key carries, so `network rm` names hosts as the agents do), else the hostname.
 */
function hostName(c: Cluster, network: string): string {
  try {
    return readLease(c.overlayStateDir, network)?.host ?? c.host;
  } catch {
    return c.host; // an unreadable lease fails the ADD that follows, naming it
  }
}

const endpointKey = (c: Cluster, j: JoinRequest): string => `${cnmEndpointsPrefix(c, j.network.name)}${j.endpoint.id}`;

export function overlayDriver(c: Cluster): Driver {
  return {
    name: 'overlay',
    scope: 'global',
    usesIpam: true,
    ipam: () => hostSubnetIpam,

    async createNetwork(n, ctx) {
      const { def, vni: asked } = definition(n);
      const name = networkKey(c.prefix, n.name);
      for (let tries = 0; ; tries++) {
        const used = await usedVnis(c);
        const byHand = used.byHand.get(asked ?? 0);
        if (byHand !== undefined && byHand !== n.name) throw conflict(`-o ${OPT_VNI}=${asked}: VNI ${asked} is used by network ${JSON.stringify(byHand)}`);
        let vni = asked;
        if (vni === undefined) {
          vni = 1;
          while (used.reserved.has(vni) || used.byHand.has(vni)) vni++;
        }
        // One transaction: the name and the VNI are both free, or nothing is written.
        const r = await etcdCall(
          c,
          `creating overlay network ${JSON.stringify(n.name)}`,
          c.client.if(name, 'Create', '==', 0).and(vniKey(c.prefix, vni), 'Create', '==', 0).then(c.client.put(name).value(encodeDef({ ...def, vni })), c.client.put(vniKey(c.prefix, vni)).value(n.name)).commit(),
        );
        if (r.succeeded) {
          n.data = { vni, hostPrefix: def.hostPrefix };
          break;
        }
        if (await etcdCall(c, 'reading the network', c.client.get(name).exists())) throw conflict(`network with name ${JSON.stringify(n.name)} already exists in the cluster store`);
        if (asked !== undefined) throw conflict(`-o ${OPT_VNI}=${asked}: VNI ${asked} is used by network ${JSON.stringify(await c.client.get(vniKey(c.prefix, asked)).string())}`);
        if (tries > 8) throw conflict(`network ${JSON.stringify(n.name)}: could not allocate a VNI (other networks are being created)`);
      }
      writeConflist(ctx, n.name, list(c, n));
    },

    async deleteNetwork(n, ctx) {
      const eps = await etcdCall(c, 'listing endpoints', c.client.getAll().prefix(cnmEndpointsPrefix(c, n.name)).strings());
      const where = [...new Set(Object.values(eps).map(hostOf))];
      if (where.length) throw conflict(`network ${JSON.stringify(n.name)} has active endpoints on ${where.join(', ')}: ${Object.keys(eps).length}`);
      const vni = Number(n.data.vni);
      const ops = [c.client.delete().key(networkKey(c.prefix, n.name)), c.client.delete().prefix(subnetsPrefix(c.prefix, n.name))];
      if (vni) ops.push(c.client.delete().key(vniKey(c.prefix, vni)));
      // Only while the definition is still ours (a network created again under this name is not).
      await etcdCall(c, `removing overlay network ${JSON.stringify(n.name)}`, c.client.if(vniKey(c.prefix, vni), 'Value', '==', n.name).then(...ops).commit());
      removeConflist(ctx, n.name);
    },

    async join(j, ctx) {
      const key = endpointKey(c, j);
      await etcdCall(c, 'registering the endpoint', c.client.put(key).value(JSON.stringify({ host: hostName(c, j.network.name), sandbox: j.sandbox.name })).exec());
      try {
        return await cniAdd(ctx, list(c, j.network), j, requestedIPs(j));
      } catch (e) {
        await c.client.delete().key(key).exec().catch(() => undefined);
        throw e;
      }
    },

    async leave(j, ctx) {
      await cniDel(ctx, list(c, j.network), j, requestedIPs(j));
      await etcdCall(c, 'unregistering the endpoint', c.client.delete().key(endpointKey(c, j)).exec());
    },
  };
}
