// The iptables backend's attachment records. The reference's rules carry no container ID (they
// must stay byte for byte the reference's, so a node can switch plugins), so ADD also writes which
// addresses it let through for which attachment: <dataDir>/<network>/<containerID>:<ifName>, JSON
// {"containerID", "ifName", "ips"}. DEL reads it when prevResult is missing or its address changed;
// GC (issue 12: every rule-writing plugin collects against cni.dev/valid-attachments) finds stale
// attachments by it. A pod ADDed by the reference has no record: DEL falls back to prevResult, and
// GC cannot attribute its rules, so it leaves them.
//
// Only the addresses are recorded: DEL and GC remove the pod rules alone, never the chains, jumps or
// isolation rules (shared by other pods), so the admin chain and ingressPolicy are not needed to
// find what to remove. The directory, the atomic writes, the lock: shared/plugin/attachment-records.ts.
import { isSafeName, PinnedDir } from '../../../shared/linux/files';
import { AttachmentRecords, recordName, type RecordCodec } from '../../../shared/plugin/attachment-records';
import { formatIP, parseIP, type IP } from '../../../shared/ip';

export { recordName };

export interface AttachmentRecord {
  containerID: string;
  ifName: string;
  ips: IP[];
}

export type RecordStore = AttachmentRecords<AttachmentRecord>;

export function encodeRecord(r: AttachmentRecord): string {
  return `${JSON.stringify({ containerID: r.containerID, ifName: r.ifName, ips: r.ips.map(formatIP) })}\n`;
}

/** Parses a record's bytes; throws Error naming `shown` (the file) when they are not a record. */
export function decodeRecord(data: Buffer, shown: string): AttachmentRecord {
  let o: unknown;
  try {
    o = JSON.parse(data.toString('utf8'));
  } catch {
    throw new Error(`${shown}: not a firewall attachment record (not JSON)`);
  }
  const r = o as Record<string, unknown> | null;
  const ips = Array.isArray(r?.ips) ? r.ips.map((s) => (typeof s === 'string' ? parseIP(s) : null)) : null;
  if (typeof r?.containerID !== 'string' || typeof r.ifName !== 'string' || !ips || ips.some((ip) => !ip))
    throw new Error(`${shown}: not a firewall attachment record (expected {"containerID": string, "ifName": string, "ips": [address, ...]})`);
  return { containerID: r.containerID, ifName: r.ifName, ips: ips as IP[] };
}

/** The firewall's records: a few addresses each (64 KiB bound). */
export const FIREWALL_RECORDS: RecordCodec<AttachmentRecord> = { plugin: 'firewall', maxBytes: 64 * 1024, encode: encodeRecord, decode: decodeRecord };

/**
 * The addresses recorded under dataDir by attachments other than `except` (record names of
 * `network`): every record of every network, since CNI-FORWARD is shared by all of them. An address
 * in this set belongs to a live attachment (one pod's address, reused after another's leaked), so
 * its rules must stay. Unreadable entries are skipped: they can only make us keep more.
 */
export function addressesRecordedElsewhere(dataDir: string, network: string, except: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  let root: PinnedDir;
  try {
    root = PinnedDir.open(dataDir, { followSymlinks: true });
  } catch {
    return out;
  }
  try {
    for (const net of root.list()) {
      if (!isSafeName(net) || net.startsWith('.')) continue;
      let dir: RecordStore;
      try {
        dir = AttachmentRecords.in(root, net, FIREWALL_RECORDS);
      } catch {
        continue;
      }
      try {
        for (const name of dir.names()) {
          if (net === network && except.has(name)) continue;
          try {
            for (const ip of dir.read(name)?.ips ?? []) out.add(formatIP(ip));
          } catch {
            /* not a record: nothing it holds is known to be live */
          }
        }
      } catch {
        /* unlistable: skipped */
      } finally {
        dir.close();
      }
    }
  } finally {
    root.close();
  }
  return out;
}
