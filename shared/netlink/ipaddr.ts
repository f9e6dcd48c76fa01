// Minimal IP/MAC text <-> bytes for netlink attributes. Kept here (pure, no deps) so the netlink layer
// does not depend on the CNI-level IP helpers; IPv6 output follows RFC 5952 like Go's net.IP.String().
import { AF_INET, AF_INET6 } from './constants';

export interface IpBytes {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Uint8Array;
}

export interface Cidr extends IpBytes {
  prefixLen: number;
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i]!)) return undefined;
    const v = Number(parts[i]);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  if (s.includes('%')) return undefined;
  let t = s;
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s); // trailing embedded IPv4 (::ffff:1.2.3.4)
  if (m) {
    const v4 = parseV4(m[2]!);
    if (!v4) return undefined;
    t = `${m[1]}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = t.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !rest) return undefined;
  let groups = head;
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  }
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Parses an IPv4 or IPv6 address (no prefix). Throws on bad input. */
export function parseIp(s: string): IpBytes {
  const v4 = parseV4(s);
  if (v4) return { family: AF_INET, bytes: v4 };
  const v6 = s.includes(':') ? parseV6(s) : undefined;
  if (v6) return { family: AF_INET6, bytes: v6 };
  throw new Error(`invalid IP address "${s}"`);
}

/** Parses "ip/prefix" (or a bare ip, as a host prefix). Host bits are kept (interface addresses). */
export function parseCidr(s: string): Cidr {
  const slash = s.indexOf('/');
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash));
  const max = ip.family === AF_INET ? 32 : 128;
  if (slash < 0) return { ...ip, prefixLen: max };
  const p = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw new Error(`invalid CIDR address "${s}"`);
  return { ...ip, prefixLen: Number(p) };
}

/** Formats 4 or 16 address bytes; IPv6 as RFC 5952 (longest run of >= 2 zero groups as ::). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new Error(`invalid IP address length ${b.length}`);
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  // IPv4-mapped addresses print as ::ffff:a.b.c.d, like Go and iproute2
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** The IPv4 broadcast address of ip/prefixLen (all host bits set). */
export function broadcastOf(ip: Uint8Array, prefixLen: number): Uint8Array {
  const out = Uint8Array.from(ip);
  for (let bit = prefixLen; bit < 32; bit++) out[bit >> 3]! |= 0x80 >> (bit & 7);
  return out;
}

/** Zeroes the host bits (route destinations must be network addresses). */
export function maskIp(ip: Uint8Array, prefixLen: number): Uint8Array {
  const out = Uint8Array.from(ip);
  for (let bit = prefixLen; bit < out.length * 8; bit++) out[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return out;
}

/** "aa:bb:cc:dd:ee:ff" (or '-' separated) to bytes. Throws on bad input. */
export function parseMac(s: string): Uint8Array {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`invalid MAC address "${s}"`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** Bytes to lower-case colon hex, as Go's net.HardwareAddr.String() prints it. */
export function formatMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}
