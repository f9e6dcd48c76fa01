// shared/ip values <-> netlink address bytes: the one place an IP becomes bytes and bytes become an
// IP. Text is parsed at the edge (config, result) with shared/ip; netlink only sees IP/IPNet values.
import { AF_INET, AF_INET6 } from './constants';
import type { Family, IP } from '../../ip';

/** The kernel's address family for a shared/ip family (AF_INET = 2, AF_INET6 = 10). */
export const afOf = (f: Family): typeof AF_INET | typeof AF_INET6 => (f === 4 ? AF_INET : AF_INET6);

/** The shared/ip family of a kernel address family; throws for anything but AF_INET/AF_INET6. */
export function familyOfAf(af: number): Family {
  if (af === AF_INET) return 4;
  if (af === AF_INET6) return 6;
  throw new Error(`address family ${af} is not IPv4 or IPv6`);
}

/** The address in network byte order: 4 bytes for IPv4, 16 for IPv6. */
export function ipToBytes(ip: IP): Uint8Array {
  const n = ip.family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/**
 * The address in `bytes` (network byte order) of kernel family `af` (AF_INET: 4 bytes, AF_INET6: 16).
 * An IPv4-mapped IPv6 address stays IPv6, as the kernel reported it. Throws on a wrong length or family.
 */
export function ipFromBytes(af: number, bytes: Uint8Array): IP {
  const family = familyOfAf(af);
  if (bytes.length !== (family === 4 ? 4 : 16)) throw new Error(`invalid IPv${family} address length ${bytes.length}`);
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return { family, value };
}
