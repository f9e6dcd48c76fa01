// shared/crypto.ts: the digests names are made of (the reference's chain and comment hashes) and random hex.
// On Node this runs the node:crypto branch; the executable's Bun.CryptoHasher branch is checked by the
// differential integration tests, whose chain names must equal the reference's.
import { randomBytes, randomHex, sha256Hex, sha512Hex } from '../../shared/crypto';

describe('shared/crypto', () => {
  test('sha256Hex and sha512Hex give the FIPS 180-2 test vectors for "abc"', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha512Hex('abc')).toBe(
      'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    );
  });

  test('text is hashed as its UTF-8 bytes (sha256sum of printf é)', () => {
    expect(sha256Hex('\u00e9')).toBe('4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c');
  });

  test('randomBytes and randomHex give the asked length, hex digits only, and differ between calls', () => {
    expect(randomBytes(6)).toHaveLength(6);
    const a = randomHex(8);
    const b = randomHex(8);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(b).toMatch(/^[0-9a-f]{16}$/);
    expect(a).not.toBe(b);
  });
});
