// VLANs on bridge ports (what `bridge vlan add/del/show` does): RTM_SETLINK / RTM_DELLINK with
// family AF_BRIDGE and IFLA_AF_SPEC { IFLA_BRIDGE_FLAGS, IFLA_BRIDGE_VLAN_INFO... }.
// Needs a kernel with CONFIG_BRIDGE_VLAN_FILTERING; without it the kernel answers EOPNOTSUPP.
import {
  AF_BRIDGE,
  BRIDGE_FLAGS_MASTER,
  BRIDGE_FLAGS_SELF,
  BRIDGE_VLAN_INFO_PVID,
  BRIDGE_VLAN_INFO_RANGE_BEGIN,
  BRIDGE_VLAN_INFO_RANGE_END,
  BRIDGE_VLAN_INFO_UNTAGGED,
  IFLA_AF_SPEC,
  IFLA_BRIDGE_FLAGS,
  IFLA_BRIDGE_VLAN_INFO,
  IFLA_EXT_MASK,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  RTEXT_FILTER_BRVLAN_COMPRESSED,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
} from './constants';
import { refName } from './errors';
import { IFINFOMSG_LEN, type NlMsg, attr, attrU16, attrU32, decodeIfinfomsg, ifinfomsg, nested, nlmsg, parseAttrList, parseAttrs } from './message';
import type { NetlinkSocket } from './socket';

export interface BridgeVlan {
  vid: number;
  /** last VID of a range; equal to vid for a single VLAN */
  vidEnd: number;
  pvid: boolean;
  untagged: boolean;
}

export interface VlanSpec {
  vid: number;
  /** make it a range vid..vidEnd (PVID cannot be a range) */
  vidEnd?: number;
  pvid?: boolean;
  untagged?: boolean;
  /** program the bridge device itself (BRIDGE_FLAGS_SELF) instead of a port (MASTER) */
  self?: boolean;
}

function vlanInfo(flags: number, vid: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(flags, 0);
  b.writeUInt16LE(vid, 2);
  return attr(IFLA_BRIDGE_VLAN_INFO, b);
}

export function buildBridgeVlan(verb: 'add' | 'delete', index: number, v: VlanSpec): Buffer {
  let flags = 0;
  if (v.pvid) flags |= BRIDGE_VLAN_INFO_PVID;
  if (v.untagged) flags |= BRIDGE_VLAN_INFO_UNTAGGED;
  const infos =
    v.vidEnd !== undefined && v.vidEnd !== v.vid
      ? [vlanInfo(flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, v.vid), vlanInfo(flags | BRIDGE_VLAN_INFO_RANGE_END, v.vidEnd)]
      : [vlanInfo(flags, v.vid)];
  return nlmsg(
    verb === 'add' ? RTM_SETLINK : RTM_DELLINK,
    NLM_F_REQUEST | NLM_F_ACK,
    ifinfomsg({ family: AF_BRIDGE, index }),
    nested(IFLA_AF_SPEC, attrU16(IFLA_BRIDGE_FLAGS, v.self ? BRIDGE_FLAGS_SELF : BRIDGE_FLAGS_MASTER), ...infos),
  );
}

type PortRef = number | { index: number; name: string };
const idx = (p: PortRef): number => (typeof p === 'number' ? p : p.index);
const vids = (v: VlanSpec): string => (v.vidEnd !== undefined && v.vidEnd !== v.vid ? `${v.vid}-${v.vidEnd}` : `${v.vid}`);

/** `bridge vlan add dev <port> vid <v> [pvid] [untagged] master`. */
export function addBridgeVlan(nl: NetlinkSocket, port: PortRef, v: VlanSpec): void {
  nl.request(buildBridgeVlan('add', idx(port), v), 'adding vlan', `${vids(v)} on ${refName(port)}`);
}

/** `bridge vlan del dev <port> vid <v> master`. */
export function deleteBridgeVlan(nl: NetlinkSocket, port: PortRef, v: VlanSpec): void {
  nl.request(buildBridgeVlan('delete', idx(port), v), 'deleting vlan', `${vids(v)} on ${refName(port)}`);
}

export function buildListBridgeVlans(): Buffer {
  return nlmsg(
    RTM_GETLINK,
    NLM_F_REQUEST | NLM_F_DUMP,
    ifinfomsg({ family: AF_BRIDGE }),
    attrU32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN_COMPRESSED),
  );
}

/** VLANs in one AF_BRIDGE link message (compressed dumps use RANGE_BEGIN/RANGE_END pairs). */
export function decodeBridgeVlans(m: NlMsg): BridgeVlan[] {
  const spec = parseAttrs(m.payload, IFINFOMSG_LEN).get(IFLA_AF_SPEC);
  if (!spec) return [];
  const out: BridgeVlan[] = [];
  let begin: BridgeVlan | undefined;
  for (const a of parseAttrList(spec)) {
    if (a.type !== IFLA_BRIDGE_VLAN_INFO || a.value.length < 4) continue;
    const flags = a.value.readUInt16LE(0);
    const vid = a.value.readUInt16LE(2);
    const entry = {
      vid,
      vidEnd: vid,
      pvid: (flags & BRIDGE_VLAN_INFO_PVID) !== 0,
      untagged: (flags & BRIDGE_VLAN_INFO_UNTAGGED) !== 0,
    };
    if (flags & BRIDGE_VLAN_INFO_RANGE_BEGIN) begin = entry;
    else if (flags & BRIDGE_VLAN_INFO_RANGE_END && begin) {
      out.push({ ...begin, vidEnd: vid });
      begin = undefined;
    } else out.push(entry);
  }
  return out;
}

/** VLANs of every bridge port (and of VLAN-filtering bridges themselves), by ifindex. */
export function listBridgeVlans(nl: NetlinkSocket): Map<number, BridgeVlan[]> {
  const out = new Map<number, BridgeVlan[]>();
  for (const m of nl.request(buildListBridgeVlans(), 'listing bridge vlans')) {
    if (m.type !== RTM_NEWLINK) continue;
    const vl = decodeBridgeVlans(m);
    if (vl.length) out.set(decodeIfinfomsg(m.payload).index, vl);
  }
  return out;
}

/** VLANs of one port ([] when it has none). */
export function getBridgeVlans(nl: NetlinkSocket, port: PortRef): BridgeVlan[] {
  return listBridgeVlans(nl).get(idx(port)) ?? [];
}
