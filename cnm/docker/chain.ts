// Which CNI chain a Docker network runs, and what each endpoint's ADD is given.
// A network is either `-o cni.network=X` (conflist X from --conf-dir, read once at CreateNetwork and
// kept with the network's record) or a bridge network generated from Docker's IPAM data.
import { contains, formatIP, parseCIDR, type IPNet } from '../../shared/ip';
import { bridgeConflist, OPT_CNI_NETWORK, type IpamPoolConfig, type NetworkRecord } from '../index';
import { requestedIPArgs } from '../drivers/cni';
import { errorMessage } from '../../shared/cni/errors';
import { confListFromBytes, loadConfList, type Json, type NetworkConfList } from '../../runner/conf';
import { ProtocolError, type EndpointInterface, type CniPortMapping, type IPAMData } from './protocol';

/** The generic option naming an existing conflist (`docker network create -o cni.network=NAME`): the library's. */
export const CNI_NETWORK_OPTION = OPT_CNI_NETWORK;

export interface NetworkInput {
  id: string;
  options: Record<string, string>; // `-o k=v`
  ipv4: IPAMData[];
  ipv6: IPAMData[];
  internal: boolean;
  confDir: string;
  cniPath: string[];
  ipamDir: string;
}

export interface NetworkChain {
  conflist: string;
  generated: boolean;
  /** generated networks: the CNM library's record (the bridge driver creates and deletes it) */
  model?: NetworkRecord;
}

/**
 * The chain for a new network. Throws ProtocolError (answered to `docker network create`) for an
 * unknown or unreadable `cni.network` (naming it), a Docker subnet outside that conflist's IPAM
 * ranges (naming both), or a bad option value (naming the option).
 */
export function networkChain(n: NetworkInput): NetworkChain {
  const named = n.options[CNI_NETWORK_OPTION];
  if (named !== undefined) return { conflist: namedChain(named, n), generated: false };
  return generatedChain(n);
}

function namedChain(name: string, n: NetworkInput): string {
  let list: NetworkConfList;
  try {
    list = loadConfList(n.confDir, name);
  } catch (e) {
    throw new ProtocolError(`-o ${CNI_NETWORK_OPTION}=${name}: ${errorMessage(e)}`);
  }
  const ranges = ipamSubnets(list);
  for (const d of [...n.ipv4, ...n.ipv6]) {
    const pool = parseCIDR(d.Pool);
    // --ipam-driver null sends 0.0.0.0/0: the chain's own IPAM picks the address then.
    if (!pool || pool.prefix === 0) continue;
    if (!ranges.some((r) => r.ip.family === pool.ip.family && r.prefix <= pool.prefix && contains(r, pool.ip)))
      throw new ProtocolError(
        `subnet ${d.Pool} is not inside the IPAM ranges of CNI network "${name}" (${ranges.map((r) => `${formatIP(r.ip)}/${r.prefix}`).join(', ') || 'none'}); give a --subnet inside them`,
      );
  }
  return list.bytes.toString();
}

/** The subnets of the first plugin's IPAM (`ipam.subnet`, `ipam.ranges[][].subnet`). */
function ipamSubnets(list: NetworkConfList): IPNet[] {
  const out: IPNet[] = [];
  const ipam = list.plugins[0]?.raw.ipam as Json | undefined;
  const add = (s: unknown): void => {
    const c = typeof s === 'string' ? parseCIDR(s) : null;
    if (c) out.push(c);
  };
  if (!ipam || typeof ipam !== 'object') return out;
  add(ipam.subnet);
  if (Array.isArray(ipam.ranges)) for (const set of ipam.ranges) if (Array.isArray(set)) for (const r of set) add((r as Json | null)?.subnet);
  return out;
}

const bare = (cidr: string): string => cidr.split('/')[0] ?? '';

/** The CNM library's record of a generated network (bridge driver), from Docker's IPAM data. */
export function bridgeModel(n: NetworkInput): NetworkRecord {
  const config: IpamPoolConfig[] = [...n.ipv4, ...n.ipv6]
    .filter((d) => (parseCIDR(d.Pool)?.prefix ?? 0) > 0)
    .map((d) => ({ subnet: d.Pool, gateway: bare(d.Gateway) }));
  if (config.length === 0) throw new ProtocolError('a generated bridge network needs a subnet: give --subnet (or -o cni.network=NAME for a chain with its own IPAM)');
  return {
    id: n.id,
    name: `docker-${n.id.slice(0, 12)}`,
    driver: 'bridge',
    scope: 'local',
    created: new Date().toISOString(),
    ipv6: n.ipv6.length > 0,
    internal: n.internal,
    ipam: { driver: 'remote', options: {}, config },
    options: n.options,
    labels: {},
    data: {},
  };
}

/** The CNI network list of a generated network: the library's bridge conflist on host-local (Docker picks, `ips` requests it). */
function generatedChain(n: NetworkInput): NetworkChain {
  const model = bridgeModel(n);
  const spec = { id: model.id, name: model.name, ipam: model.ipam.config, internal: model.internal, options: model.options };
  let list: Json;
  try {
    list = bridgeConflist(spec, { ipam: { type: 'host-local', dataDir: n.ipamDir }, cniPath: n.cniPath });
  } catch (e) {
    throw new ProtocolError(e instanceof Error ? e.message : String(e));
  }
  return { conflist: JSON.stringify(list, null, 2), generated: true, model };
}

/** The parsed list of a stored conflist. */
export function parseChain(conflist: string): NetworkConfList {
  return confListFromBytes(Buffer.from(conflist));
}

/** What an endpoint's ADD (and its DEL) is given besides the IDs. */
export interface EndpointArgs {
  list: NetworkConfList;
  capabilityArgs: Record<string, unknown>;
  args: Array<[string, string]>;
}

/**
 * The ADD's inputs for an endpoint. With Docker's IPAM the chain's IPAM must hand out exactly
 * Docker's address: `runtimeConfig.ips` when a plugin declares the `ips` capability, else CNI_ARGS
 * `IP=` with the first address (the library's rule, requestedIPArgs). With this driver's IPAM the address is already
 * leased in its pool's store, so the first plugin's IPAM becomes `static` with that address (a
 * second host-local lease of it would fail or double-count). `mac` and `portMappings` go as
 * capability args (filtered by each plugin's capabilities, as libcni does).
 */
export function endpointArgs(
  conflist: string,
  iface: EndpointInterface,
  ports: CniPortMapping[],
  ownIpam: { gateway4: string; gateway6: string; model?: NetworkRecord; cniPath: string[] } | null,
): EndpointArgs {
  let list = parseChain(conflist);
  const ips = [iface.Address, iface.AddressIPv6].filter((a) => a !== '');
  const capabilityArgs: Record<string, unknown> = {};
  const args: Array<[string, string]> = [];
  if (iface.MacAddress) capabilityArgs.mac = iface.MacAddress;
  if (ports.length) capabilityArgs.portMappings = ports;
  if (ownIpam && ips.length && ownIpam.model) {
    // A generated network: the library's bridge conflist with `static` IPAM, as its bridge driver joins.
    const m = ownIpam.model;
    const gw = (a: string): string => (a.includes(':') ? bare(ownIpam.gateway6) : bare(ownIpam.gateway4));
    const addresses = Object.fromEntries(ips.map((a) => [a.includes(':') ? 'ipv6' : 'ipv4', { address: a, gateway: gw(a) }]));
    const spec = { id: m.id, name: m.name, ipam: m.ipam.config, internal: m.internal, options: m.options };
    list = confListFromBytes(Buffer.from(JSON.stringify(bridgeConflist(spec, { ipam: { type: 'static', addresses, defaultRoute: true }, cniPath: ownIpam.cniPath }), null, 2)));
  } else if (ownIpam && ips.length) {
    list = withStaticIpam(list, ips, ownIpam.gateway4, ownIpam.gateway6);
  } else {
    // Docker's addresses as CIDRs (CONVENTIONS.md `ips`; host-local takes either, static needs them).
    const r = requestedIPArgs({ plugins: list.plugins.map((p) => p.raw) }, ips);
    Object.assign(capabilityArgs, r.capabilityArgs);
    args.push(...r.args);
  }
  return { list, capabilityArgs, args };
}

function withStaticIpam(list: NetworkConfList, ips: string[], gw4: string, gw6: string): NetworkConfList {
  const [first, ...rest] = list.plugins;
  if (!first) throw new ProtocolError(`CNI network "${list.name}" has no plugins`);
  const old = (first.raw.ipam ?? {}) as Json;
  const gwFor = (a: string): string => (a.includes(':') ? bare(gw6) : bare(gw4));
  const ipam: Json = {
    type: 'static',
    addresses: ips.map((a) => ({ address: a, ...(gwFor(a) ? { gateway: gwFor(a) } : {}) })),
    ...(Array.isArray(old.routes) ? { routes: old.routes } : {}),
    ...(old.dns ? { dns: old.dns } : {}),
  };
  const conf = { cniVersion: list.cniVersion, name: list.name, plugins: [{ ...first.raw, ipam }, ...rest.map((p) => p.raw)] };
  return confListFromBytes(Buffer.from(JSON.stringify(conf, null, 2)));
}
