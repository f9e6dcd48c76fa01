// IP arithmetic on bigint so IPv4 and IPv6 share one code path (128-bit math for IPv6).

export type Family = 4 | 6;

export interface IP {
  readonly family: Family;
  readonly value: bigint;
}

export interface IPNet {
  readonly ip: IP; // as written (may have host bits set)
  readonly prefix: number;
}

export const bits = (f: Family): number => (f === 4 ? 32 : 128);
const maxValue = (f: Family): bigint => (1n << BigInt(bits(f))) - 1n;

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseV4(s: string): bigint | null {
  const m = V4.exec(s);
  if (!m) return null;
  let v = 0n;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    // Go rejects leading zeros ("010.0.0.1"): they are ambiguous (octal in some parsers).
    if (part.length > 1 && part[0] === '0') return null;
    const n = Number(part);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(s: string): bigint | null {
  if (s.length < 2 || s.includes(':::')) return null;
  let groups: number[] = [];
  let tailV4: bigint | null = null;
  const lastColon = s.lastIndexOf(':');
  let body = s;
  if (s.indexOf('.', lastColon) !== -1) {
    tailV4 = parseV4(s.slice(lastColon + 1));
    if (tailV4 === null) return null;
    body = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = body.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  if (head === null) return null;
  if (halves.length === 2) {
    const tail = parseGroups(halves[1]!);
    if (tail === null || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    if (head.length !== 8) return null;
    groups = head;
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  if (tailV4 !== null) v = (v & ~0xffffffffn) | tailV4;
  return v;
}

export function parseIP(s: string): IP | null {
  if (typeof s !== 'string') return null;
  if (s.includes(':')) {
    const v = parseV6(s);
    if (v === null) return null;
    // An IPv4-mapped address (::ffff:a.b.c.d) is IPv4, as Go's To4() treats it.
    if (v >> 32n === 0xffffn) return { family: 4, value: v & 0xffffffffn };
    return { family: 6, value: v };
  }
  const v = parseV4(s);
  return v === null ? null : { family: 4, value: v };
}

/**
 * Formats like Go's net.IP.String(): dotted IPv4; RFC 5952 IPv6 (longest zero run of ≥2 groups as ::).
 * An IPv6 value holding an IPv4-mapped address (only netlink bytes give one: parseIP makes those
 * IPv4) prints as ::ffff:a.b.c.d, as iproute2 and RFC 5952 §5 do.
 */
export function formatIP(ip: IP): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => Number((v >> s) & 255n)).join('.');
  }
  if (ip.value >> 32n === 0xffffn) return `::ffff:${formatIP({ family: 4, value: ip.value & 0xffffffffn })}`;
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function parseCIDR(s: string): IPNet | null {
  if (typeof s !== 'string') return null;
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const addr = s.slice(0, slash);
  const p = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(p)) return null;
  const ip = parseIP(addr);
  if (!ip) return null;
  // "::ffff:1.2.3.4/120" style prefixes count over 128 bits; keep it simple and require native notation.
  const prefix = Number(p);
  if (ip.family === 4 && addr.includes(':')) return null;
  if (prefix > bits(ip.family)) return null;
  return { ip, prefix };
}

export const ipEqual = (a: IP, b: IP): boolean => a.family === b.family && a.value === b.value;

/** Same address and prefix length (host bits count: 198.18.0.5/24 is not 198.18.0.0/24). */
export const ipNetEqual = (a: IPNet, b: IPNet): boolean => a.prefix === b.prefix && ipEqual(a.ip, b.ip);

export function mask(f: Family, prefix: number): bigint {
  const host = BigInt(bits(f) - prefix);
  return maxValue(f) ^ ((1n << host) - 1n);
}

export function networkOf(n: IPNet): IPNet {
  return { ip: { family: n.ip.family, value: n.ip.value & mask(n.ip.family, n.prefix) }, prefix: n.prefix };
}

export function lastAddress(n: IPNet): IP {
  const f = n.ip.family;
  return { family: f, value: (n.ip.value & mask(f, n.prefix)) | (maxValue(f) ^ mask(f, n.prefix)) };
}

export function contains(n: IPNet, ip: IP): boolean {
  return n.ip.family === ip.family && (ip.value & mask(ip.family, n.prefix)) === (n.ip.value & mask(ip.family, n.prefix));
}

/** ip + delta, or null when it leaves the family's address space. */
export function addTo(ip: IP, delta: bigint): IP | null {
  const v = ip.value + delta;
  if (v < 0n || v > maxValue(ip.family)) return null;
  return { family: ip.family, value: v };
}

/**
 * The address `i` places into network `n`: from its network address for i >= 0, back from its last
 * address for i < 0 (-1n is the last), like Python's ipaddress `network[i]`. Never null: an `i`
 * outside the network is a caller's bug and throws RangeError.
 */
export function addressAt(n: IPNet, i: bigint): IP {
  const first = networkOf(n).ip;
  const last = lastAddress(n);
  return spanAt(first, last, i >= 0n ? i : last.value - first.value + 1n + i);
}

/** How many addresses the inclusive span [first, last] holds: 0n when last < first or the families differ. */
export function spanSize(first: IP, last: IP): bigint {
  if (first.family !== last.family || last.value < first.value) return 0n;
  return last.value - first.value + 1n;
}

/**
 * The address `off` after `first` in the inclusive span [first, last], for 0n <= off < spanSize.
 * Iterating offsets instead of stepping with addTo can never leave the span or the family's
 * address space; an offset outside it is a caller's bug and throws RangeError.
 */
export function spanAt(first: IP, last: IP, off: bigint): IP {
  if (off < 0n || off >= spanSize(first, last)) throw new RangeError(`offset ${off} outside ${formatIP(first)}-${formatIP(last)}`);
  return { family: first.family, value: first.value + off };
}

export const compareIP = (a: IP, b: IP): number => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0);

export const formatCIDR = (n: IPNet): string => `${formatIP(n.ip)}/${n.prefix}`;

export const familyOf = (s: string): Family | null => parseIP(s.split('/')[0] ?? '')?.family ?? null;

/** Dotted netmask for IPv4 (libc-style), used where the kernel or iptables wants one. */
export function prefixToMask4(prefix: number): string {
  return formatIP({ family: 4, value: mask(4, prefix) });
}
