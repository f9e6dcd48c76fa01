// Ethernet MAC addresses: the one text rule (six hex pairs separated by ':' or '-', the 48-bit form
// of Go's net.ParseMAC) and the one printed form (lower-case colon hex, net.HardwareAddr.String()).

const MAC_RE = /^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/;

/** The 6 bytes of "aa:bb:cc:dd:ee:ff" (or '-' separated, any case), or null when `s` is not one. */
export function parseMAC(s: string): Uint8Array | null {
  if (typeof s !== 'string' || !MAC_RE.test(s)) return null;
  return Uint8Array.from(s.split(/[:-]/), (p) => parseInt(p, 16));
}

/** Bytes as lower-case colon hex ("0a:58:c6:12:00:02"); any length (the kernel's hardware addresses vary). */
export function formatMAC(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** `s` in the printed form ("0A-58-C6-12-00-02" -> "0a:58:c6:12:00:02"), or null when it is not a MAC. */
export function normalizeMAC(s: string): string | null {
  const b = parseMAC(s);
  return b ? formatMAC(b) : null;
}
