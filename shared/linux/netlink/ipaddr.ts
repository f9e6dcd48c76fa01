// IP/MAC text <-> bytes for netlink attributes; the text rules are shared/ip's (Go's net package).
import { AF_INET, AF_INET6 } from './constants';
import { formatIP, parseCIDR, parseIP, type IP } from '../../ip';

export interface IpBytes {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Uint8Array;
}

export interface Cidr extends IpBytes {
  prefixLen: number;
}

/** Address bytes of a shared/ip value (network byte order). */
function toBytes(ip: IP): Uint8Array {
  const n = ip.family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/** Parses an IPv4 or IPv6 address (no prefix). Throws on bad input. */
export function parseIp(s: string): IpBytes {
  const ip = parseIP(s);
  if (!ip) throw new Error(`invalid IP address "${s}"`);
  return { family: ip.family === 4 ? AF_INET : AF_INET6, bytes: toBytes(ip) };
}

/** Parses "ip/prefix" (or a bare ip, as a host prefix). Host bits are kept (interface addresses). */
export function parseCidr(s: string): Cidr {
  if (!s.includes('/')) {
    const ip = parseIp(s);
    return { ...ip, prefixLen: ip.family === AF_INET ? 32 : 128 };
  }
  const n = parseCIDR(s);
  if (!n) throw new Error(`invalid CIDR address "${s}"`);
  return { family: n.ip.family === 4 ? AF_INET : AF_INET6, bytes: toBytes(n.ip), prefixLen: n.prefix };
}

/** Formats 4 or 16 address bytes as Go's net.IP.String() does (shared/ip). */
export function formatIp(b: Uint8Array): string {
  if (b.length !== 4 && b.length !== 16) throw new Error(`invalid IP address length ${b.length}`);
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  // IPv4-mapped addresses print as ::ffff:a.b.c.d, like iproute2 (shared/ip would print them as IPv4)
  if (b.length === 16 && v >> 32n === 0xffffn) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return formatIP({ family: b.length === 4 ? 4 : 6, value: v });
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
