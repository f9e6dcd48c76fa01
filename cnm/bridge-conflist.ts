// A Docker bridge network as a CNI network list: our `bridge` (the device, veths, gateway address,
// masquerade) with IPAM, plus `portmap` when one is in the CNI path (for -p / portMappings).
// Used by the bridge driver and by the Docker remote driver for its generated networks.
import { findInPath } from '../shared/cni/invoke';
import { ifNameProblem } from '../shared/cni/ifname';
import { invalid } from './errors';
import { hostLocalRanges, type Allocation } from './ipam';
import type { IpamPoolConfig } from './model';

export const OPT_BRIDGE_NAME = 'com.docker.network.bridge.name';
export const OPT_MASQUERADE = 'com.docker.network.bridge.enable_ip_masquerade';
export const OPT_MTU = 'com.docker.network.driver.mtu';
export const OPT_ICC = 'com.docker.network.bridge.enable_icc';
/** The -o options the bridge driver understands (anything else is refused by name). */
export const BRIDGE_OPTIONS = [OPT_BRIDGE_NAME, OPT_MASQUERADE, OPT_MTU, OPT_ICC] as const;

/** What a bridge network is made of, as `docker network create` gives it. */
export interface BridgeNetworkSpec {
  id: string; // 64 hex: the default device name is br-<id[0:12]>, as Docker's
  name: string; // the CNI network name
  ipam: readonly IpamPoolConfig[];
  internal: boolean;
  options: Readonly<Record<string, string>>;
}

export interface BridgeSettings {
  bridge: string;
  masquerade: boolean;
  mtu?: number;
}

/** Go's strconv.ParseBool, which Docker uses for its boolean options. */
function parseBool(key: string, v: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw invalid(`invalid option ${key}=${JSON.stringify(v)}: expected true or false`);
}

/**
 * The driver options checked and defaulted (Docker's bridge driver: name br-<id12>, masquerade
 * on, MTU from the link defaults). `--internal` turns masquerade off. Throws CnmError 'invalid'
 * naming the option.
 */
export function bridgeSettings(spec: BridgeNetworkSpec, known: readonly string[] = BRIDGE_OPTIONS): BridgeSettings {
  for (const k of Object.keys(spec.options))
    if (!known.includes(k)) throw invalid(`unsupported option ${JSON.stringify(k)} for the bridge driver (supported: ${BRIDGE_OPTIONS.join(', ')})`);
  const o = spec.options;
  const bridge = o[OPT_BRIDGE_NAME] ?? `br-${spec.id.slice(0, 12)}`;
  const bad = ifNameProblem(bridge);
  if (bad) throw invalid(`invalid option ${OPT_BRIDGE_NAME}=${JSON.stringify(bridge)}: ${bad}`);
  // Isolation between containers of one bridge is not something our bridge offers.
  if (o[OPT_ICC] !== undefined && !parseBool(OPT_ICC, o[OPT_ICC])) throw invalid(`option ${OPT_ICC}=false is not supported: containers on one bridge always reach each other`);
  const masquerade = !spec.internal && (o[OPT_MASQUERADE] === undefined || parseBool(OPT_MASQUERADE, o[OPT_MASQUERADE]));
  let mtu: number | undefined;
  if (o[OPT_MTU] !== undefined) {
    mtu = Number(o[OPT_MTU]);
    if (!/^\d+$/.test(o[OPT_MTU]) || mtu < 68 || mtu > 65535) throw invalid(`invalid option ${OPT_MTU}=${JSON.stringify(o[OPT_MTU])}: an MTU from 68 to 65535`);
  }
  return { bridge, masquerade, ...(mtu ? { mtu } : {}) };
}

/** How the chain gets its addresses. */
export type BridgeIpam =
  | { type: 'host-local'; dataDir: string } // the network's store: what cnitool and Docker-IPAM-requested `ips` use
  | { type: 'static'; addresses: Allocation; defaultRoute: boolean }; // one endpoint's allocated addresses

export interface BridgeConflistOptions {
  ipam: BridgeIpam;
  cniPath: readonly string[]; // portmap is added when found here
  cniVersion?: string; // default 1.1.0
}

const defaultRoutes = (ipam: readonly IpamPoolConfig[]): Array<{ dst: string }> => {
  const fams = new Set(ipam.map((p) => (p.subnet.includes(':') ? 6 : 4)));
  return [...(fams.has(4) ? [{ dst: '0.0.0.0/0' }] : []), ...(fams.has(6) ? [{ dst: '::/0' }] : [])];
};

/**
 * The network list (a JSON object, ready to write as a .conflist) for a bridge network. With
 * host-local IPAM, routes are the default routes unless `internal`; with static IPAM, the default
 * routes only when this endpoint owns the sandbox's default route (`defaultRoute`), via the
 * subnet's gateway. The bridge always holds the gateway address (isGateway), as Docker's does.
 * Throws CnmError 'invalid' for a bad option (bridgeSettings).
 */
export function bridgeConflist(spec: BridgeNetworkSpec, o: BridgeConflistOptions): Record<string, unknown> {
  const s = bridgeSettings(spec);
  let ipam: Record<string, unknown>;
  if (o.ipam.type === 'host-local') {
    const routes = spec.internal ? [] : defaultRoutes(spec.ipam);
    // reclaimStaleLeases off: an endpoint's lease lives as long as its record, across reboots.
    ipam = { type: 'host-local', dataDir: o.ipam.dataDir, ranges: hostLocalRanges(spec.ipam), reclaimStaleLeases: false, ...(routes.length ? { routes } : {}) };
  } else {
    const { ipv4, ipv6 } = o.ipam.addresses;
    const addrs = [ipv4, ipv6].filter((a): a is NonNullable<typeof a> => !!a);
    const routes = o.ipam.defaultRoute && !spec.internal ? addrs.map((a) => ({ dst: a.address.includes(':') ? '::/0' : '0.0.0.0/0', gw: a.gateway })) : [];
    ipam = { type: 'static', addresses: addrs.map((a) => ({ address: a.address, gateway: a.gateway })), ...(routes.length ? { routes } : {}) };
  }
  const bridge: Record<string, unknown> = {
    type: 'bridge',
    bridge: s.bridge,
    isGateway: true,
    ipMasq: s.masquerade,
    ...(s.mtu ? { mtu: s.mtu } : {}),
    capabilities: { mac: true, ips: true },
    ipam,
  };
  const plugins: Array<Record<string, unknown>> = [bridge];
  if (hasPlugin('portmap', o.cniPath)) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
  return { cniVersion: o.cniVersion ?? '1.1.0', name: spec.name, plugins };
}

/** Whether a plugin of that type is in the CNI path (findInPath's rules). */
export function hasPlugin(type: string, cniPath: readonly string[]): boolean {
  try {
    findInPath(type, cniPath.join(':'));
    return true;
  } catch {
    return false;
  }
}
