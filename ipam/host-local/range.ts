// One range of a range set (the reference's backend/allocator/range.go): a subnet, the inclusive
// [rangeStart, rangeEnd] handed out from it, and the gateway that is never handed out.
import { addTo, bits, compareIP, contains, formatIP, ipEqual, lastAddress, networkOf, type IP, type IPNet } from '../../shared/ip';

export interface Range {
  subnet: IPNet; // the network address (validated: no host bits)
  rangeStart: IP;
  rangeEnd: IP;
  gateway: IP;
}

/** A range as written in the config, before defaults. */
export interface RawRange {
  subnet: IPNet;
  rangeStart?: IP;
  rangeEnd?: IP;
  gateway?: IP;
}

/** A rule of the reference was broken; the message is the reference's own, `field` the key at fault. */
export class RangeRuleError extends Error {
  constructor(
    msg: string,
    readonly field: 'subnet' | 'rangeStart' | 'rangeEnd' | '' = 'subnet',
    readonly rangeIndex = 0,
  ) {
    super(msg);
  }
}

export const subnetString = (n: IPNet): string => `${formatIP(n.ip)}/${n.prefix}`;

/** Defaults and checks, with the reference's messages (Range.Canonicalize). */
export function canonicalizeRange(r: RawRange): Range {
  const { subnet } = r;
  const f = subnet.ip.family;
  if (subnet.prefix > bits(f) - 2) throw new RangeRuleError(`Network ${subnetString(subnet)} too small to allocate from`);
  const net = networkOf(subnet);
  if (!ipEqual(net.ip, subnet.ip))
    throw new RangeRuleError(`Network has host bits set. For a subnet mask of length ${subnet.prefix} the network address is ${formatIP(net.ip)}`);
  const first = addTo(net.ip, 1n)!;
  // The gateway may lie outside the subnet: the reference does not check it.
  const gateway = r.gateway ?? first;
  const partial = { subnet: net, gateway } as Range;
  let rangeStart = first;
  if (r.rangeStart) {
    if (!inRange(partial, r.rangeStart)) throw new RangeRuleError(`RangeStart ${formatIP(r.rangeStart)} not in network ${subnetString(subnet)}`, 'rangeStart');
    rangeStart = r.rangeStart;
  }
  // IPv4 excludes the broadcast address; IPv6 has none, so its default end is the last address.
  const last = lastAddress(net);
  let rangeEnd = f === 4 ? addTo(last, -1n)! : last;
  if (r.rangeEnd) {
    if (!inRange(partial, r.rangeEnd)) throw new RangeRuleError(`RangeEnd ${formatIP(r.rangeEnd)} not in network ${subnetString(subnet)}`, 'rangeEnd');
    rangeEnd = r.rangeEnd;
  }
  return { subnet: net, rangeStart, rangeEnd, gateway };
}

/** In the subnet and, once known, between rangeStart and rangeEnd (Range.Contains). */
export function inRange(r: Partial<Range> & { subnet: IPNet }, ip: IP): boolean {
  if (!contains(r.subnet, ip)) return false;
  if (r.rangeStart && compareIP(ip, r.rangeStart) < 0) return false;
  if (r.rangeEnd && compareIP(ip, r.rangeEnd) > 0) return false;
  return true;
}

export function rangesOverlap(a: Range, b: Range): boolean {
  if (a.rangeStart.family !== b.rangeStart.family) return false;
  return inRange(a, b.rangeStart) || inRange(a, b.rangeEnd) || inRange(b, a.rangeStart) || inRange(b, a.rangeEnd);
}

export const rangeString = (r: Range): string => `${formatIP(r.rangeStart)}-${formatIP(r.rangeEnd)}`;

/** How many addresses the range can hand out (its size minus the gateway when inside it). */
export function rangeCapacity(r: Range): bigint {
  const n = r.rangeEnd.value - r.rangeStart.value + 1n;
  return inRange(r, r.gateway) ? n - 1n : n;
}
