// The portmap attachment records (shared/plugin/attachment-records.ts): <dataDir>/<network>/
// <containerID>:<ifName>, JSON {"containerID", "ifName", "backend", "pods", "portMappings"}, written by
// an ADD that installed rules. The reference removes nothing on a DEL without portMappings, so a
// runtime (or `cnitool del`) that does not repeat the capability args on DEL leaks the DNAT rules,
// which then forward to an address the next pod may get; with the record, DEL knows there were rules
// and where. Its nftables rules carry only the container ID (upstream's format), so GC of one
// network finds its stale attachments by their records, and their rules by ID and recorded address.
// A pod ADDed by the reference has no record: DEL without portMappings leaves it, as the reference.
import { formatCIDR, formatIP, parseCIDR, parseIP, type IP } from '../../../shared/ip';
import type { MasqBackend } from '../../../shared/netfilter/masquerade';
import type { RecordCodec } from '../../../shared/plugin/attachment-records';
import { PROTOCOLS, type PodAddress, type PortMapping, type Protocol } from './config';

export interface PortMapRecord {
  containerID: string;
  ifName: string;
  backend: MasqBackend; // the one that wrote the rules (the config's may change before DEL)
  pods: PodAddress[]; // the addresses the ports were forwarded to
  portMappings: PortMapping[];
}

export function encodeRecord(r: PortMapRecord): string {
  return `${JSON.stringify({
    containerID: r.containerID,
    ifName: r.ifName,
    backend: r.backend,
    pods: r.pods.map((p) => formatCIDR(p.net)),
    portMappings: r.portMappings.map((m) => ({ ...m, hostIP: m.hostIP ? formatIP(m.hostIP) : undefined })),
  })}\n`;
}

const port = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

function mapping(v: unknown): PortMapping | null {
  const m = v as Record<string, unknown> | null;
  if (!m || !port(m.hostPort) || !port(m.containerPort) || !(PROTOCOLS as readonly unknown[]).includes(m.protocol)) return null;
  let hostIP: IP | undefined;
  if (m.hostIP !== undefined) {
    const ip = typeof m.hostIP === 'string' ? parseIP(m.hostIP) : null;
    if (!ip) return null;
    hostIP = ip;
  }
  return { hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol as Protocol, hostIP };
}

/** Parses a record's bytes; throws Error naming `shown` (the file) when they are not a record. */
export function decodeRecord(data: Buffer, shown: string): PortMapRecord {
  const bad = (why: string): Error => new Error(`${shown}: not a portmap attachment record (${why})`);
  let o: unknown;
  try {
    o = JSON.parse(data.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  const r = o as Record<string, unknown> | null;
  const nets = Array.isArray(r?.pods) ? r.pods.map((s) => (typeof s === 'string' ? parseCIDR(s) : null)) : null;
  const maps = Array.isArray(r?.portMappings) ? r.portMappings.map(mapping) : null;
  if (
    typeof r?.containerID !== 'string' ||
    typeof r.ifName !== 'string' ||
    (r.backend !== 'iptables' && r.backend !== 'nftables') ||
    !nets ||
    nets.some((n) => !n) ||
    !maps ||
    maps.some((m) => !m)
  )
    throw bad('expected {"containerID": string, "ifName": string, "backend": "iptables"|"nftables", "pods": [CIDR, ...], "portMappings": [...]}');
  const pods = (nets as NonNullable<(typeof nets)[number]>[]).map((net) => ({ net, family: net.ip.family }));
  return { containerID: r.containerID, ifName: r.ifName, backend: r.backend, pods, portMappings: maps as PortMapping[] };
}

/** portmap's records: two addresses and the mappings (a pod may publish many ports: 1 MiB bound). */
export const PORTMAP_RECORDS: RecordCodec<PortMapRecord> = { plugin: 'portmap', maxBytes: 1024 * 1024, encode: encodeRecord, decode: decodeRecord };
