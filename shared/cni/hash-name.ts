// Names the reference derives from an attachment (pkg/utils FormatChainName,
// MustFormatHashWithPrefix): a fixed prefix + hex sha512(network name + container ID), cut to what
// the kernel accepts. Ours must be the same bytes, so a node can switch between the two plugins and
// either one's DEL finds what the other's ADD made.
import { sha512Hex } from '../crypto';

/** `prefix` + hex sha512(`network` + `containerID`), cut to `maxLen` characters. */
export function attachmentHashName(prefix: string, network: string, containerID: string, maxLen: number): string {
  return (prefix + sha512Hex(network + containerID)).slice(0, maxLen);
}
