// One range of a range set (the reference's backend/allocator/range.go): a subnet, the inclusive
// [rangeStart, rangeEnd] handed out from it, and the gateway that is never handed out.
import { addressAt, bits, compareIP, contains, formatIP, ipEqual, networkOf, spanAt, spanSize, type IP, type IPNet } from '../../shared/ip';

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

export type RangeField = 'subnet' | 'rangeStart' | 'rangeEnd' | 'gateway';

/** A range rule was broken; `field` is the key at fault ('' = the whole set), `rangeIndex` its range. */
export class RangeRuleError extends Error {
  constructor(
    msg: string,
    readonly field: RangeField | '' = 'subnet',
    readonly rangeIndex = 0,
  ) {
    super(msg);
  }
}

export const subnetString = (n: IPNet): string => `${formatIP(n.ip)}/${n.prefix}`;

/**
 * Fills in the defaults, then checks every field against the others (Range.Canonicalize, plus the
 * rules of issue 10): network < rangeStart <= rangeEnd <= last usable address (IPv4: the one before
 * broadcast; IPv6: the last), gateway inside the subnet. Messages are the reference's where it has
 * the rule. Throws RangeRuleError naming the field at fault.
 */
export function canonicalizeRange(r: RawRange): Range {
  const { subnet } = r;
  const f = subnet.ip.family;
  const net = subnetString(subnet);
  if (subnet.prefix > bits(f) - 2) throw new RangeRuleError(`Network ${net} too small to allocate from`);
  const network = networkOf(subnet).ip;
  if (!ipEqual(network, subnet.ip))
    throw new RangeRuleError(`Network has host bits set. For a subnet mask of length ${subnet.prefix} the network address is ${formatIP(network)}`);
  // The prefix leaves at least 4 addresses, so these exist.
  const first = addressAt(subnet, 1n);
  const broadcast = f === 4 ? addressAt(subnet, -1n) : null; // IPv6 has none: its last address is usable
  const lastUsable = addressAt(subnet, f === 4 ? -2n : -1n);

  // Newer references check the gateway too (1.1.1 does not): outside the subnet it cannot be a gateway.
  if (r.gateway && !contains(subnet, r.gateway))
    throw new RangeRuleError(`gateway ${formatIP(r.gateway)} not in network ${net}`, 'gateway');
  const gateway = r.gateway ?? first;

  const bound = (label: 'RangeStart' | 'RangeEnd', ip: IP): IP => {
    const field = label === 'RangeStart' ? 'rangeStart' : 'rangeEnd';
    const at = `${label} ${formatIP(ip)}`;
    if (!contains(subnet, ip)) throw new RangeRuleError(`${at} not in network ${net}`, field);
    // The reference accepts these and hands them out: nothing can use the network or broadcast address.
    if (ipEqual(ip, network)) throw new RangeRuleError(`${at} is the network address of network ${net}`, field);
    if (broadcast && ipEqual(ip, broadcast)) throw new RangeRuleError(`${at} is the broadcast address of network ${net}`, field);
    return ip;
  };
  const rangeStart = r.rangeStart ? bound('RangeStart', r.rangeStart) : first;
  const rangeEnd = r.rangeEnd ? bound('RangeEnd', r.rangeEnd) : lastUsable;
  // Only both given can be out of order (each alone lies in [first, lastUsable]); the reference's wording.
  if (compareIP(rangeStart, rangeEnd) > 0)
    throw new RangeRuleError(`${formatIP(rangeStart)} is in network ${net} but after end ${formatIP(rangeEnd)}`, 'rangeStart');
  return { subnet: { ip: network, prefix: subnet.prefix }, rangeStart, rangeEnd, gateway };
}

/** In [rangeStart, rangeEnd] (Range.Contains; the subnet holds both ends). */
export function inRange(r: Range, ip: IP): boolean {
  return ip.family === r.rangeStart.family && compareIP(ip, r.rangeStart) >= 0 && compareIP(ip, r.rangeEnd) <= 0;
}

export const rangeString = (r: Range): string => `${formatIP(r.rangeStart)}-${formatIP(r.rangeEnd)}`;

/** How many addresses [rangeStart, rangeEnd] holds; 0n for a range out of order. */
export const rangeSize = (r: Range): bigint => spanSize(r.rangeStart, r.rangeEnd);

/** The address `off` after rangeStart, for 0n <= off < rangeSize(r) (RangeError otherwise: never outside the range). */
export const rangeAt = (r: Range, off: bigint): IP => spanAt(r.rangeStart, r.rangeEnd, off);

/** How many addresses the range can hand out (its size minus the gateway when inside it). */
export function rangeCapacity(r: Range): bigint {
  const n = rangeSize(r);
  return n > 0n && inRange(r, r.gateway) ? n - 1n : n;
}
