// Neighbour (ARP/NDP) entries and forwarding-database (FDB) entries: both are RTM_*NEIGH messages,
// a neighbour in family AF_INET/AF_INET6 (IP -> MAC), an FDB entry in family AF_BRIDGE (MAC -> where
// to send it; for a vxlan device, the remote VTEP's underlay IP in NDA_DST). The overlay agent
// programs both by hand on a vxlan device with learning off, as flannel's vxlan backend does.
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NTF_SELF,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from './constants';
import { afOf, ipFromBytes, ipToBytes } from './ipaddr';
import { type NlMsg, attr, nlmsg, parseAttrs } from './message';
import type { NetlinkSocket } from './socket';
import { formatIP, type IP } from '../../ip';
import { formatMAC, parseMAC } from '../../mac';

export const NDMSG_LEN = 12;

/** struct ndmsg: family, ifindex, state (NUD_*), flags (NTF_*), type. */
export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}

export function ndmsg(m: Partial<NdMsg> = {}): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt16LE(m.state ?? 0, 8);
  b.writeUInt8(m.flags ?? 0, 10);
  b.writeUInt8(m.type ?? 0, 11);
  return b;
}

export function decodeNdmsg(p: Buffer): NdMsg {
  return { family: p.readUInt8(0), index: p.readInt32LE(4), state: p.readUInt16LE(8), flags: p.readUInt8(10), type: p.readUInt8(11) };
}

/** A neighbour entry: on link `index`, IP `ip` is at MAC `mac`. */
export interface Neighbour {
  index: number;
  ip: IP;
  mac: string;
  /** NUD_* state; PERMANENT for the entries we set */
  state: number;
}

/** A vxlan FDB entry: frames for `mac` on vxlan link `index` go to the VTEP at underlay IP `dst`. */
export interface FdbEntry {
  index: number;
  mac: string;
  /** the remote VTEP (absent for entries without NDA_DST, e.g. the device's own) */
  dst?: IP;
  state: number;
  flags: number;
}

function macBytes(mac: string): Uint8Array {
  const b = parseMAC(mac);
  if (!b) throw new Error(`invalid MAC address "${mac}"`);
  return b;
}

const REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;

/** `ip neigh replace IP lladdr MAC dev INDEX nud permanent`. */
export function buildReplaceNeighbour(n: { index: number; ip: IP; mac: string }): Buffer {
  return nlmsg(
    RTM_NEWNEIGH,
    REPLACE,
    ndmsg({ family: afOf(n.ip.family), index: n.index, state: NUD_PERMANENT }),
    attr(NDA_DST, ipToBytes(n.ip)),
    attr(NDA_LLADDR, macBytes(n.mac)),
  );
}

export function buildDeleteNeighbour(n: { index: number; ip: IP }): Buffer {
  return nlmsg(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, ndmsg({ family: afOf(n.ip.family), index: n.index }), attr(NDA_DST, ipToBytes(n.ip)));
}

/** Adds or replaces a permanent neighbour entry. */
export function replaceNeighbour(nl: NetlinkSocket, n: { index: number; ip: IP; mac: string }): void {
  nl.request(buildReplaceNeighbour(n), 'setting neighbour', `${formatIP(n.ip)} lladdr ${n.mac} dev ${n.index}`);
}

/** Deletes a neighbour entry; missing -> ENOENT (isNotFound). */
export function deleteNeighbour(nl: NetlinkSocket, n: { index: number; ip: IP }): void {
  nl.request(buildDeleteNeighbour(n), 'deleting neighbour', `${formatIP(n.ip)} dev ${n.index}`);
}

export function buildListNeighbours(family: number): Buffer {
  return nlmsg(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, ndmsg({ family }));
}

/** Neighbour entries of family `af` (AF_INET/AF_INET6) on link `index`. */
export function listNeighbours(nl: NetlinkSocket, af: number, index: number): Neighbour[] {
  const out: Neighbour[] = [];
  for (const m of nl.request(buildListNeighbours(af), 'listing neighbours')) {
    if (m.type !== RTM_NEWNEIGH) continue;
    const h = decodeNdmsg(m.payload);
    if (h.family !== af || h.index !== index) continue;
    const a = parseAttrs(m.payload, NDMSG_LEN);
    const dst = a.get(NDA_DST);
    if (!dst) continue;
    const ll = a.get(NDA_LLADDR);
    out.push({ index: h.index, ip: ipFromBytes(h.family, dst), mac: ll && ll.length === 6 ? formatMAC(ll) : '', state: h.state });
  }
  return out;
}

/** `bridge fdb replace MAC dev INDEX dst DST self permanent`. */
export function buildReplaceFdb(f: { index: number; mac: string; dst: IP }): Buffer {
  return nlmsg(
    RTM_NEWNEIGH,
    REPLACE,
    ndmsg({ family: AF_BRIDGE, index: f.index, state: NUD_PERMANENT, flags: NTF_SELF }),
    attr(NDA_LLADDR, macBytes(f.mac)),
    attr(NDA_DST, ipToBytes(f.dst)),
  );
}

/** `bridge fdb del MAC dev INDEX dst DST self` (a vxlan device may hold several remotes per MAC). */
export function buildDeleteFdb(f: { index: number; mac: string; dst?: IP }): Buffer {
  return nlmsg(
    RTM_DELNEIGH,
    NLM_F_REQUEST | NLM_F_ACK,
    ndmsg({ family: AF_BRIDGE, index: f.index, flags: NTF_SELF }),
    attr(NDA_LLADDR, macBytes(f.mac)),
    ...(f.dst ? [attr(NDA_DST, ipToBytes(f.dst))] : []),
  );
}

/** Adds or replaces a permanent FDB entry on a vxlan device. */
export function replaceFdb(nl: NetlinkSocket, f: { index: number; mac: string; dst: IP }): void {
  nl.request(buildReplaceFdb(f), 'setting fdb entry', `${f.mac} dev ${f.index} dst ${formatIP(f.dst)}`);
}

/** Deletes an FDB entry; missing -> ENOENT (isNotFound). */
export function deleteFdb(nl: NetlinkSocket, f: { index: number; mac: string; dst?: IP }): void {
  nl.request(buildDeleteFdb(f), 'deleting fdb entry', `${f.mac} dev ${f.index}${f.dst ? ` dst ${formatIP(f.dst)}` : ''}`);
}

/** The FDB entries on link `index` (a dump of AF_BRIDGE neighbours, filtered here). */
export function listFdb(nl: NetlinkSocket, index: number): FdbEntry[] {
  const out: FdbEntry[] = [];
  for (const m of nl.request(buildListNeighbours(AF_BRIDGE), 'listing fdb entries')) {
    if (m.type !== RTM_NEWNEIGH) continue;
    out.push(...decodeFdb(m, index));
  }
  return out;
}

function decodeFdb(m: NlMsg, index: number): FdbEntry[] {
  const h = decodeNdmsg(m.payload);
  if (h.family !== AF_BRIDGE || h.index !== index) return [];
  const a = parseAttrs(m.payload, NDMSG_LEN);
  const ll = a.get(NDA_LLADDR);
  if (!ll || ll.length !== 6) return [];
  const e: FdbEntry = { index: h.index, mac: formatMAC(ll), state: h.state, flags: h.flags };
  const dst = a.get(NDA_DST);
  if (dst && (dst.length === 4 || dst.length === 16)) e.dst = ipFromBytes(dst.length === 4 ? AF_INET : AF_INET6, dst);
  return [e];
}
