// An overlay network as it lives in etcd, and the subnet arithmetic of its host subnets. Shared by
// the agent (overlay/agent.ts), the CNM overlay driver and the per-pod plugin's lease file; no etcd
// client here, so the per-pod path does not load one.
//
// Key layout under the prefix (default /cnikit/overlay/; README "Overlay networks"):
//   networks/<name>                      definition (JSON NetworkDef), global: written once by whoever creates it
//   vnis/<vni>                           "<name>": the VNI's owner, so two networks never share a VNI
//   subnets/<name>/<a.b.c.d>-<prefix>    one host's subnet (JSON HostRecord), attached to that host
//                                        agent's etcd lease: it disappears TTL seconds after the host does
import { NAME_RE } from '../shared/cni/skel';
import { addressAt, contains, formatCIDR, formatIP, lastAddress, networkOf, parseCIDR, parseIP, type IP, type IPNet } from '../shared/ip';
import { normalizeMAC } from '../shared/mac';

export const DEFAULT_PREFIX = '/cnikit/overlay/';
export const DEFAULT_HOST_PREFIX = 24;
/** VXLAN's IANA UDP port (RFC 7348). */
export const VXLAN_PORT = 4789;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers: the pod MTU is the underlay's minus this. */
export const VXLAN_OVERHEAD = 50;
/** The smallest pod MTU we accept: 576, the datagram size every IPv4 host must take (RFC 791). */
export const MIN_POD_MTU = 576;
export const MAX_VNI = 0xffffff;

/** What `networks/<name>` holds. */
export interface NetworkDef {
  /** the whole overlay, e.g. 198.18.128.0/17 (IPv4) */
  subnet: IPNet;
  /** each host's share, e.g. 24 */
  hostPrefix: number;
  /** VXLAN network identifier, 1..16777215 */
  vni: number;
}

/** What `subnets/<name>/<subnet>` holds: where that subnet's host is. */
export interface HostRecord {
  host: string;
  /** the host's underlay address: its VTEP */
  underlay: IP;
  /** MAC of the host's vxlan device */
  mac: string;
}

export const isNetworkName = (s: string): boolean => NAME_RE.test(s) && s.length <= 128;

/** The vxlan device of a VNI in each host netns: "ovl.<vni>" (≤ 12 bytes, IFNAMSIZ fits). */
export const vxlanName = (vni: number): string => `ovl.${vni}`;
/** The bridge pods of a VNI hang on: "ovlbr.<vni>". */
export const bridgeName = (vni: number): string => `ovlbr.${vni}`;

export const networkKey = (prefix: string, name: string): string => `${prefix}networks/${name}`;
export const vniKey = (prefix: string, vni: number): string => `${prefix}vnis/${vni}`;
export const subnetsPrefix = (prefix: string, name: string): string => `${prefix}subnets/${name}/`;
export const subnetKey = (prefix: string, name: string, subnet: IPNet): string => `${subnetsPrefix(prefix, name)}${formatIP(subnet.ip)}-${subnet.prefix}`;

/** Why a definition cannot be used, or undefined when it can. */
export function defProblem(d: { subnet: IPNet; hostPrefix: number; vni: number }): string | undefined {
  if (d.subnet.ip.family !== 4) return `subnet ${formatCIDR(d.subnet)}: only IPv4 overlays are supported`;
  if (!Number.isInteger(d.hostPrefix) || d.hostPrefix < d.subnet.prefix || d.hostPrefix > 30)
    return `host-prefix ${d.hostPrefix}: must be between the subnet's prefix ${d.subnet.prefix} and 30`;
  if (!Number.isInteger(d.vni) || d.vni < 1 || d.vni > MAX_VNI) return `vni ${d.vni}: must be 1..${MAX_VNI}`;
  return undefined;
}

export function encodeDef(d: NetworkDef): string {
  return JSON.stringify({ subnet: formatCIDR(d.subnet), hostPrefix: d.hostPrefix, vni: d.vni });
}

/** Parses a definition's value; throws Error naming the key's network when it is not one. */
export function decodeDef(name: string, text: string): NetworkDef {
  let raw: { subnet?: unknown; hostPrefix?: unknown; vni?: unknown };
  try {
    raw = JSON.parse(text) as typeof raw;
  } catch {
    throw new Error(`network ${name}: definition is not JSON`);
  }
  const subnet = typeof raw?.subnet === 'string' ? parseCIDR(raw.subnet) : null;
  if (!subnet) throw new Error(`network ${name}: definition has no valid "subnet" (${JSON.stringify(raw?.subnet)})`);
  const d: NetworkDef = { subnet: networkOf(subnet), hostPrefix: Number(raw.hostPrefix ?? DEFAULT_HOST_PREFIX), vni: Number(raw.vni) };
  const why = defProblem(d);
  if (why) throw new Error(`network ${name}: ${why}`);
  return d;
}

export function encodeHost(h: HostRecord): string {
  return JSON.stringify({ host: h.host, underlay: formatIP(h.underlay), mac: h.mac });
}

/** Parses a host record; null when it is not one (a foreign or damaged key is skipped, never programmed). */
export function decodeHost(text: string): HostRecord | null {
  try {
    const raw = JSON.parse(text) as { host?: unknown; underlay?: unknown; mac?: unknown };
    const underlay = typeof raw.underlay === 'string' ? parseIP(raw.underlay) : null;
    const mac = typeof raw.mac === 'string' ? normalizeMAC(raw.mac) : null;
    if (typeof raw.host !== 'string' || !raw.host || !underlay || underlay.family !== 4 || !mac) return null;
    return { host: raw.host, underlay, mac };
  } catch {
    return null;
  }
}

/** The subnet a `subnets/<name>/` key names ("198.18.129.0-24"), if it is a host subnet of `d`. */
export function subnetFromKey(d: NetworkDef, suffix: string): IPNet | null {
  const n = parseCIDR(suffix.replace('-', '/'));
  if (!n || n.prefix !== d.hostPrefix || !contains(d.subnet, n.ip) || networkOf(n).ip.value !== n.ip.value) return null;
  return n;
}

/** How many host subnets `d` has. */
export const hostSubnetCount = (d: NetworkDef): number => 2 ** (d.hostPrefix - d.subnet.prefix);

/** The i-th host subnet of `d` (0-based). */
export function hostSubnetAt(d: NetworkDef, i: number): IPNet {
  return { ip: addressAt(d.subnet, BigInt(i) << BigInt(32 - d.hostPrefix)), prefix: d.hostPrefix };
}

/** True when the two networks share an address. */
export function overlaps(a: IPNet, b: IPNet): boolean {
  return a.ip.family === b.ip.family && (contains(a, b.ip) || contains(b, a.ip) || contains(a, lastAddress(b)));
}

/** The VTEP address of a host subnet: its network address, put on the vxlan device as /32 (flannel's scheme). */
export const vtepAddress = (hostSubnet: IPNet): IP => networkOf(hostSubnet).ip;
