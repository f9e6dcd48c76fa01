// The portmap plugin's network configuration (the reference's PortMapConf in plugins/meta/portmap):
// schema, defaults, the reference's cross-field rules, and the pod addresses taken from prevResult.
// Every value that ends up in an iptables-restore or nft script is checked here, so no config can
// add a line of its own to the transaction. Errors are code 7 naming the field and value.
import * as z from 'zod/mini';
import { configError, opt, parseConfig, sparseObject, stateDirFromConfig } from '../../../shared/cni/config';
import type { CmdArgs } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { formatIP, parseCIDR, parseIP, type Family, type IP, type IPNet } from '../../../shared/ip';
import { defaultBackend, type MasqBackend } from '../../../shared/netfilter/masquerade';

/** Kubernetes uses mark bits 14 and 15, Calico 20-31 (the reference's DefaultMarkBit). */
export const DEFAULT_MARK_BIT = 13;

/**
 * The reference has no such key: ours (attachment records: records.ts). The records describe kernel
 * state, so they live where it does: on /run, a tmpfs on a node, they go at reboot with the rules,
 * and writing or removing one costs no disk flush (the tuning plugin's state lives there too).
 */
export const DEFAULT_DATA_DIR = '/run/cni/portmap';

export type Protocol = 'tcp' | 'udp' | 'sctp';
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp', 'sctp'];

/** One `runtimeConfig.portMappings` entry (CNI CONVENTIONS "portMappings"), checked and normalised. */
export interface PortMapping {
  hostPort: number; // 1-65535
  containerPort: number; // 1-65535
  protocol: Protocol; // lower case
  /** undefined when absent or empty; an unspecified address (0.0.0.0, ::) maps on every address */
  hostIP: IP | undefined;
}

/** A pod address the ports are forwarded to: the address and the prefix prevResult gave it. */
export interface PodAddress {
  net: IPNet; // e.g. 198.18.0.2/24 (the hairpin rule matches the whole subnet, as the reference's)
  family: Family;
}

export interface PortMapConf {
  name: string;
  cniVersion: string;
  backend: MasqBackend;
  snat: boolean; // default true
  markMasqBit: number; // 0-31, default 13
  externalSetMarkChain: string | undefined;
  masqAll: boolean;
  conditionsV4: string[];
  conditionsV6: string[];
  portMappings: PortMapping[];
  dataDir: string; // <dataDir>/<network>/ holds the attachment records (records.ts)
  prevResult: unknown;
}

const PORT_RANGE = 'must be a port number between 1 and 65535';
// iptables' chain name limit (XT_EXTENSION_MAXNAMELEN - 1) and its characters in practice.
const CHAIN_NAME = /^[A-Za-z0-9_.:-]{1,28}$/;
// A condition is one argument of a rule (iptables) or a piece of rule text (nftables): a newline,
// ';' or '#' there would end the statement and let the config write its own lines into the script.
const CONDITION_BAD = /[\n\r\0;#]/;

function portMapConfSchema(raw: unknown) {
  const port = () => z.int().check(z.minimum(1, PORT_RANGE), z.maximum(65535, PORT_RANGE));
  const mapping = (v: unknown) =>
    sparseObject(
      v,
      { hostPort: port, containerPort: port, protocol: () => z.string(), hostIP: () => opt(z.string()) },
      { required: ['hostPort', 'containerPort', 'protocol'], loose: true },
    );
  const conditions = () => opt(z.array(z.string()));
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: () => opt(z.string()),
      backend: () => opt(z.enum(['iptables', 'nftables'])),
      snat: () => opt(z.boolean()),
      markMasqBit: () => opt(z.int().check(z.minimum(0, 'must be between 0 and 31'), z.maximum(31, 'must be between 0 and 31'))),
      externalSetMarkChain: () => opt(z.string()),
      masqAll: () => opt(z.boolean()),
      conditionsV4: conditions,
      conditionsV6: conditions,
      dataDir: () => opt(z.string()),
      runtimeConfig: (v) =>
        opt(
          sparseObject(
            v,
            // One schema per entry (a tuple), each built for the keys that entry has.
            { portMappings: (m) => opt(Array.isArray(m) ? z.tuple(m.map(mapping) as unknown as [z.ZodMiniType]) : z.array(z.unknown())) },
            { loose: true },
          ),
        ),
      prevResult: () => opt(z.unknown()),
    },
    { required: ['name'], loose: true },
  );
}

/**
 * Parses the stdin config (all verbs). Throws CniError code 7 naming the field and value for a wrong
 * type, a port outside 1-65535, an unknown protocol, a bad hostIP, markMasqBit outside 0-31 or set
 * together with externalSetMarkChain (the reference's rule), or a condition that is not one clean
 * argument, or a `dataDir` that is not an absolute path without "..". `backend` absent = iptables unless only nft is installed (as the bridge's ipMasqBackend).
 */
export function loadPortMapConf(a: Pick<CmdArgs, 'conf' | 'cniVersion'>): PortMapConf {
  const c = parseConfig(portMapConfSchema(a.conf), a.conf);
  if (c.markMasqBit != null && c.externalSetMarkChain != null)
    throw configError('externalSetMarkChain', c.externalSetMarkChain, 'cannot be set together with markMasqBit (the reference\'s rule: "Cannot specify externalSetMarkChain and markMasqBit")');
  const ext = c.externalSetMarkChain ?? undefined;
  if (ext !== undefined && !CHAIN_NAME.test(ext)) throw configError('externalSetMarkChain', ext, 'must be an iptables chain name (1-28 of A-Z a-z 0-9 _ . : -)');
  for (const key of ['conditionsV4', 'conditionsV6'] as const)
    (c[key] ?? []).forEach((cond, i) => {
      if (!cond.trim() || CONDITION_BAD.test(cond)) throw configError(`${key}[${i}]`, cond, 'must be non-empty, without newline, ";" or "#"');
    });
  return {
    name: c.name,
    cniVersion: a.cniVersion,
    backend: c.backend ?? defaultBackend(),
    snat: c.snat ?? true,
    markMasqBit: c.markMasqBit ?? DEFAULT_MARK_BIT,
    externalSetMarkChain: ext,
    masqAll: !!c.masqAll,
    conditionsV4: c.conditionsV4 ?? [],
    conditionsV6: c.conditionsV6 ?? [],
    portMappings: (c.runtimeConfig?.portMappings ?? []).map((m, i) => portMapping(m as RawMapping, `runtimeConfig.portMappings[${i}]`)),
    dataDir: stateDirFromConfig('dataDir', c.dataDir, DEFAULT_DATA_DIR),
    prevResult: c.prevResult ?? undefined,
  };
}

interface RawMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string | null;
}

function portMapping(m: RawMapping, field: string): PortMapping {
  const protocol = m.protocol.toLowerCase();
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) throw configError(`${field}.protocol`, m.protocol, `must be one of ${PROTOCOLS.join(', ')}`);
  let hostIP: IP | undefined;
  if (m.hostIP) {
    const ip = parseIP(m.hostIP);
    if (!ip) throw configError(`${field}.hostIP`, m.hostIP, 'must be an IPv4 or IPv6 address');
    hostIP = ip;
  }
  return { hostPort: m.hostPort, containerPort: m.containerPort, protocol: protocol as Protocol, hostIP };
}

/** An unspecified hostIP (0.0.0.0, ::) is no destination match (the reference's IsUnspecified rule). */
export const isUnspecified = (ip: IP): boolean => ip.value === 0n;

/**
 * The mappings that apply to a pod address of `family`: a hostIP of the other family is skipped (the
 * reference's rule; iptables cannot forward across families). `hostIP` is undefined when it matches
 * every host address.
 */
export function mappingsFor(family: Family, maps: PortMapping[]): Array<PortMapping & { dst: string | undefined }> {
  return maps
    .filter((m) => !m.hostIP || m.hostIP.family === family)
    .map((m) => ({ ...m, dst: m.hostIP && !isUnspecified(m.hostIP) ? formatIP(m.hostIP) : undefined }));
}

/**
 * The pod's addresses from prevResult, at most one per family: the first IPv4 and the first IPv6
 * address that is not on a known non-sandbox interface or another interface than `ifName` (the
 * reference's parseConfig loop).
 */
export function podAddresses(prev: Result, ifName: string): PodAddress[] {
  const out = new Map<Family, PodAddress>();
  for (const ip of prev.ips ?? []) {
    const net = parseCIDR(ip.address);
    if (!net || out.has(net.ip.family)) continue;
    const i = ip.interface;
    const itf = i !== undefined && i >= 0 ? prev.interfaces?.[i] : undefined;
    if (itf && (itf.name !== ifName || !itf.sandbox)) continue;
    out.set(net.ip.family, { net, family: net.ip.family });
  }
  return [...out.values()].sort((a, b) => a.family - b.family);
}
