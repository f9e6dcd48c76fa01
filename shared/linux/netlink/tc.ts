// Traffic control over rtnetlink: the qdiscs and the filter the bandwidth plugin installs (a tbf
// root qdisc, an ingress qdisc, a u32 match-all filter whose mirred action redirects to an ifb),
// their dump and their removal. Each request has a pure `build*` encoder, unit-tested byte for byte
// against what iproute2's `tc` sends for the same command (linux/pkt_sched.h, pkt_cls.h, tc_act/).
import { readFileSync } from 'node:fs';
import { NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST } from './constants';
import { type NlMsg, attr, attrStr, attrString, attrU32, nested, nlmsg, parseAttrList, parseAttrs } from './message';
import type { NetlinkSocket } from './socket';

export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_GETQDISC = 38;
export const RTM_NEWTFILTER = 44;
export const RTM_GETTFILTER = 46;

export const TCA_KIND = 1;
export const TCA_OPTIONS = 2;
export const TCA_TBF_PARMS = 1;
export const TCA_TBF_RTAB = 2;
export const TCA_TBF_RATE64 = 4;
const TCA_U32_CLASSID = 1;
const TCA_U32_SEL = 5;
const TCA_U32_ACT = 7;
const TC_U32_TERMINAL = 1;
const TCA_ACT_KIND = 1;
const TCA_ACT_OPTIONS = 2;
const TCA_MIRRED_PARMS = 2;
const TC_ACT_STOLEN = 4;
const TCA_EGRESS_REDIR = 1;
const TC_LINKLAYER_ETHERNET = 1;
const ETH_P_ALL = 0x0003;

/** The root of a device's egress (TC_H_ROOT) and the ingress hook's parent (TC_H_INGRESS). */
export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
/** `major:minor` as the kernel's u32 handle (TC_H_MAKE). */
export const tcHandle = (major: number, minor: number): number => (((major & 0xffff) << 16) | (minor & 0xffff)) >>> 0;
/** The ingress qdisc's own handle, `ffff:`. */
export const INGRESS_HANDLE = tcHandle(0xffff, 0);

const TCMSG_LEN = 20;
const U32_MAX = 0xffffffff;
const REQ = NLM_F_REQUEST | NLM_F_ACK;
const CREATE = REQ | NLM_F_CREATE | NLM_F_EXCL; // `tc qdisc add` / `tc filter add`

export interface TcMsg {
  ifindex: number;
  handle: number;
  parent: number;
  /** filters: priority << 16 | protocol (network byte order) */
  info: number;
}

export function tcmsg(m: Partial<TcMsg>): Buffer {
  const b = Buffer.alloc(TCMSG_LEN);
  b.writeInt32LE(m.ifindex ?? 0, 4);
  b.writeUInt32LE((m.handle ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.parent ?? 0) >>> 0, 12);
  b.writeUInt32LE((m.info ?? 0) >>> 0, 16);
  return b;
}

let tickCache: number | undefined;

/**
 * Scheduler ticks per microsecond, from /proc/net/psched as tc and vishvananda/netlink read it
 * (t2us / us2t * clock_res / 1e6; 15.625 on every kernel since 2.6.x with a 1 GHz clock).
 */
export function tickInUsec(): number {
  if (tickCache !== undefined) return tickCache;
  const [t2us, us2t, clockRes] = readFileSync('/proc/net/psched', 'ascii').trim().split(/\s+/).map((h) => parseInt(h, 16));
  if (!t2us || !us2t || !clockRes) throw new Error('cannot read the packet scheduler clock from /proc/net/psched');
  // tc's compatibility rule: a clock resolution of 1e9 means t2us is wrong and us2t holds the value.
  const t = clockRes === 1e9 ? us2t : t2us;
  tickCache = (t / us2t) * (clockRes / 1e6);
  return tickCache;
}

/** Microseconds as scheduler ticks, truncated to a u32 like tc's tc_core_time2tick. */
export const timeToTicks = (usec: number): number => Math.min(Math.floor(Math.floor(usec) * tickInUsec()), U32_MAX);

/**
 * tc's rate table (tc_calc_rtable for an Ethernet link layer, mtu 2047 → cell_log 3): the
 * transmit time in ticks of (i+1) << cell_log bytes at `rateBytes` bytes/s, for i in 0..255.
 */
export function rateTable(rateBytes: number): { cellLog: number; table: Buffer } {
  let cellLog = 0;
  while (2047 >> cellLog > 255) cellLog++;
  const table = Buffer.alloc(1024);
  for (let i = 0; i < 256; i++) table.writeUInt32LE(timeToTicks(1e6 * (((i + 1) << cellLog) / rateBytes)), i * 4);
  return { cellLog, table };
}

export interface TbfSpec {
  ifindex: number;
  /** bytes per second */
  rate: number;
  /** bytes queued before dropping */
  limit: number;
  /** bucket size as transmit time in scheduler ticks */
  buffer: number;
}

/**
 * `tc qdisc add dev X root handle 1: tbf rate R burst B limit L`, without TCA_TBF_BURST: given the
 * burst in bytes the kernel recomputes the bucket from it and no longer keeps `buffer` as sent, so
 * the state would differ from what the reference plugin (vishvananda/netlink) installs.
 */
export function buildAddTbf(t: TbfSpec): Buffer {
  const { cellLog, table } = rateTable(t.rate);
  const parms = Buffer.alloc(36); // struct tc_tbf_qopt: rate, peakrate (tc_ratespec), limit, buffer, mtu
  parms.writeUInt8(cellLog, 0);
  parms.writeUInt8(TC_LINKLAYER_ETHERNET, 1);
  parms.writeInt16LE(-1, 4); // cell_align
  parms.writeUInt32LE(Math.min(t.rate, U32_MAX), 8); // above 4 GB/s the rate goes in TCA_TBF_RATE64
  parms.writeUInt32LE(t.limit, 24);
  parms.writeUInt32LE(t.buffer, 28);
  const opts = [attr(TCA_TBF_PARMS, parms)];
  if (t.rate >= 2 ** 32) {
    const r64 = Buffer.alloc(8);
    r64.writeBigUInt64LE(BigInt(t.rate));
    opts.push(attr(TCA_TBF_RATE64, r64));
  }
  opts.push(attr(TCA_TBF_RTAB, table));
  return nlmsg(RTM_NEWQDISC, CREATE, tcmsg({ ifindex: t.ifindex, handle: tcHandle(1, 0), parent: TC_H_ROOT }), attrStr(TCA_KIND, 'tbf'), nested(TCA_OPTIONS, ...opts));
}

/** `tc qdisc add dev X handle ffff: ingress`. */
export function buildAddIngress(ifindex: number): Buffer {
  return nlmsg(RTM_NEWQDISC, CREATE, tcmsg({ ifindex, handle: INGRESS_HANDLE, parent: TC_H_INGRESS }), attrStr(TCA_KIND, 'ingress'));
}

/** Deletes the qdisc at `parent` of a device (`tc qdisc del dev X root` / `ingress`); its filters go with it. */
export function buildDeleteQdisc(ifindex: number, parent: number): Buffer {
  return nlmsg(RTM_DELQDISC, REQ, tcmsg({ ifindex, parent }));
}

/**
 * `tc filter add dev X parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1 action mirred
 * egress redirect dev <to>`: every packet entering X leaves through device `toIndex`.
 */
export function buildAddRedirectFilter(ifindex: number, toIndex: number): Buffer {
  const mirred = Buffer.alloc(28); // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex
  mirred.writeInt32LE(TC_ACT_STOLEN, 8);
  mirred.writeInt32LE(TCA_EGRESS_REDIR, 20);
  mirred.writeUInt32LE(toIndex, 24);
  const action = attr(1, Buffer.concat([attrStr(TCA_ACT_KIND, 'mirred'), nested(TCA_ACT_OPTIONS | NLA_F_NESTED, attr(TCA_MIRRED_PARMS, mirred))]));
  const sel = Buffer.alloc(32); // struct tc_u32_sel with one zero key (mask 0: matches everything)
  sel.writeUInt8(TC_U32_TERMINAL, 0);
  sel.writeUInt8(1, 2); // nkeys
  const info = ((1 << 16) | ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8)) >>> 0; // prio 1, htons(ETH_P_ALL)
  return nlmsg(
    RTM_NEWTFILTER,
    CREATE,
    tcmsg({ ifindex, parent: INGRESS_HANDLE, info }),
    attrStr(TCA_KIND, 'u32'),
    nested(TCA_OPTIONS, attrU32(TCA_U32_CLASSID, tcHandle(1, 1)), nested(TCA_U32_ACT, action), attr(TCA_U32_SEL, sel)),
  );
}

/** `tc qdisc show dev X`: the kernel dumps every device's qdiscs; tc (and listQdiscs) keep X's. */
export function buildListQdiscs(ifindex: number): Buffer {
  return nlmsg(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, tcmsg({ ifindex }));
}

/** `tc filter show dev X parent P`. */
export function buildListFilters(ifindex: number, parent: number): Buffer {
  return nlmsg(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP, tcmsg({ ifindex, parent }));
}

export interface Filter {
  kind: string;
  /** ifindexes the filter's mirred actions redirect to on egress, in action order */
  redirectsTo: number[];
}

/** Decodes an RTM_NEWTFILTER dump entry; only u32's mirred egress redirects are read. */
export function decodeFilter(m: NlMsg): Filter {
  const a = parseAttrs(m.payload, TCMSG_LEN);
  const f: Filter = { kind: a.has(TCA_KIND) ? attrString(a.get(TCA_KIND)!) : '', redirectsTo: [] };
  const acts = f.kind === 'u32' && a.get(TCA_OPTIONS) ? parseAttrs(a.get(TCA_OPTIONS)!).get(TCA_U32_ACT) : undefined;
  for (const act of acts ? parseAttrList(acts) : []) {
    const x = parseAttrs(act.value);
    if (attrString(x.get(TCA_ACT_KIND) ?? Buffer.alloc(0)) !== 'mirred') continue;
    const parms = parseAttrs(x.get(TCA_ACT_OPTIONS) ?? Buffer.alloc(0)).get(TCA_MIRRED_PARMS);
    if (parms && parms.length >= 28 && parms.readInt32LE(20) === TCA_EGRESS_REDIR) f.redirectsTo.push(parms.readUInt32LE(24));
  }
  return f;
}

/** The filters attached at `parent` of a device (u32 lists its hash table node too: kind u32, no actions). */
export function listFilters(nl: NetlinkSocket, ifindex: number, parent: number, devName: string): Filter[] {
  return nl
    .request(buildListFilters(ifindex, parent), 'listing filters on', devName)
    .filter((m) => m.type === RTM_NEWTFILTER)
    .map(decodeFilter);
}

export interface Qdisc {
  ifindex: number;
  handle: number;
  parent: number;
  kind: string;
  /** tbf only: as in TCA_TBF_PARMS (rate from TCA_TBF_RATE64 when present) */
  tbf?: { rate: number; limit: number; buffer: number };
}

export function decodeQdisc(m: NlMsg): Qdisc {
  const p = m.payload;
  const a = parseAttrs(p, TCMSG_LEN);
  const q: Qdisc = {
    ifindex: p.readInt32LE(4),
    handle: p.readUInt32LE(8),
    parent: p.readUInt32LE(12),
    kind: a.has(TCA_KIND) ? attrString(a.get(TCA_KIND)!) : '',
  };
  const opts = a.get(TCA_OPTIONS);
  if (q.kind === 'tbf' && opts) {
    const o = parseAttrs(opts);
    const parms = o.get(TCA_TBF_PARMS);
    const r64 = o.get(TCA_TBF_RATE64);
    if (parms && parms.length >= 36)
      q.tbf = {
        rate: r64 && r64.length >= 8 ? Number(r64.readBigUInt64LE(0)) : parms.readUInt32LE(8),
        limit: parms.readUInt32LE(24),
        buffer: parms.readUInt32LE(28),
      };
  }
  return q;
}

/** The qdiscs of one device (the kernel's dump is of every device; filtered here). */
export function listQdiscs(nl: NetlinkSocket, ifindex: number): Qdisc[] {
  return nl
    .request(buildListQdiscs(ifindex), 'listing qdiscs')
    .filter((m) => m.type === RTM_NEWQDISC)
    .map(decodeQdisc)
    .filter((q) => q.ifindex === ifindex);
}

/**
 * Adds a tbf root qdisc (handle 1:) to device `t.ifindex`; `devName` is for messages. Throws
 * NetlinkError: EEXIST (isExists) when the device already has a root qdisc of its own, ENODEV when
 * the device is gone, EINVAL for parameters the kernel refuses.
 */
export function addTbf(nl: NetlinkSocket, t: TbfSpec, devName: string): void {
  nl.request(buildAddTbf(t), 'adding tbf qdisc on', devName);
}

/** Adds the ingress qdisc (ffff:) to a device. Throws NetlinkError EEXIST when it has one already. */
export function addIngressQdisc(nl: NetlinkSocket, ifindex: number, devName: string): void {
  nl.request(buildAddIngress(ifindex), 'adding ingress qdisc on', devName);
}

/**
 * Adds buildAddRedirectFilter's filter to the ingress qdisc of device `ifindex` (which must exist:
 * EINVAL otherwise), redirecting to device `toIndex` (ENODEV if gone). `what` names it in messages.
 */
export function addRedirectFilter(nl: NetlinkSocket, ifindex: number, toIndex: number, what: string): void {
  nl.request(buildAddRedirectFilter(ifindex, toIndex), 'adding redirect filter', what);
}

/** Deletes the root (TC_H_ROOT) or ingress (TC_H_INGRESS) qdisc of a device. Missing → ENOENT/EINVAL from the kernel. */
export function deleteQdisc(nl: NetlinkSocket, ifindex: number, parent: number, devName: string): void {
  nl.request(buildDeleteQdisc(ifindex, parent), 'deleting qdisc on', devName);
}
