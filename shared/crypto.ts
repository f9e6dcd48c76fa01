// Hashes and random bytes without importing node:crypto: in the bun executable that import costs
// every process start ~1.5-2 ms (hyperfine, 2026-11-30, executables built with our flags: the
// builtins our plugins import, 8.6 ms; the same plus node:crypto, 10.2 ms), more than many plugin
// verbs' own work, and a podman pod's chain starts eight plugin processes.
// Inside the executable the hashes are bun's native CryptoHasher; on Node (the unit tests) they are
// node:crypto's, loaded on first use. Random bytes come from the Web Crypto global, which both have.

type Algorithm = 'sha256' | 'sha512';

interface BunHasher {
  update(data: string): BunHasher;
  digest(encoding: 'hex'): string;
}
interface BunGlobal {
  CryptoHasher: new (algorithm: Algorithm) => BunHasher;
}

const bun = (globalThis as { Bun?: BunGlobal }).Bun;

function hashHex(algorithm: Algorithm, text: string): string {
  if (bun) return new bun.CryptoHasher(algorithm).update(text).digest('hex');
  const nodeCrypto = process.getBuiltinModule('node:crypto');
  return nodeCrypto.createHash(algorithm).update(text).digest('hex');
}

/** Lowercase hex SHA-256 of `text` (UTF-8), 64 characters. */
export const sha256Hex = (text: string): string => hashHex('sha256', text);

/** Lowercase hex SHA-512 of `text` (UTF-8), 128 characters. */
export const sha512Hex = (text: string): string => hashHex('sha512', text);

/** `n` bytes from the kernel's CSPRNG (getrandom(2) behind crypto.getRandomValues). */
export function randomBytes(n: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** `n` random bytes as 2·`n` lowercase hex digits (temporary names, generated IDs). */
export function randomHex(n: number): string {
  let s = '';
  for (const b of randomBytes(n)) s += b.toString(16).padStart(2, '0');
  return s;
}
