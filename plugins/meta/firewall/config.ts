// The firewall plugin's network configuration (the reference's FirewallNetConf in
// plugins/meta/firewall/firewall.go): backend, iptablesAdminChainName, firewalldZone, ingressPolicy;
// and ours, dataDir (where the iptables backend records attachments: records.ts).
// Errors are code 7 naming the field and value. Names that end up in a netfilter script are checked
// here, so no config value can add a line or an option to it.
import * as z from 'zod/mini';
import { CniError, ErrInvalidNetworkConfig } from '../../../shared/cni/errors';
import { configError, opt, parseConfig, sparseObject, stateDirFromConfig } from '../../../shared/cni/config';
import { ifNameProblem } from '../../../shared/cni/ifname';
import type { CmdArgs } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { formatIP, parseCIDR, type IP } from '../../../shared/ip';
import { defaultBackend } from '../../../shared/netfilter/masquerade';

export type FirewallBackend = 'iptables' | 'nftables';
export type IngressPolicy = 'open' | 'same-bridge' | 'isolated';

export const DEFAULT_ADMIN_CHAIN = 'CNI-ADMIN';
/** The reference has no such key: ours. On /run, as portmap's records (see its DEFAULT_DATA_DIR). */
export const DEFAULT_DATA_DIR = '/run/cni/firewall';

function firewallConfSchema(raw: unknown) {
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: () => opt(z.string()),
      backend: () => opt(z.string()),
      iptablesAdminChainName: () => opt(z.string()),
      firewalldZone: () => opt(z.string()),
      ingressPolicy: () => opt(z.string()),
      dataDir: () => opt(z.string()),
      prevResult: () => opt(z.unknown()),
    },
    { required: ['name'], loose: true },
  );
}

export interface FirewallConf {
  name: string;
  backend: FirewallBackend;
  adminChain: string; // iptables only
  ingressPolicy: IngressPolicy;
  dataDir: string; // iptables only: <dataDir>/<network>/ holds the attachment records
  prevResult: unknown;
}

/**
 * `backend`: absent/empty = iptables (nftables when only nft is installed). The reference also
 * picks firewalld when it runs on the node; we have no firewalld backend (it cannot be tested here),
 * so `firewalld` is refused with code 7 rather than silently programming something else.
 */
function checkBackend(v: string | null | undefined): FirewallBackend {
  if (v === undefined || v === null || v === '') return defaultBackend();
  if (v === 'iptables' || v === 'nftables') return v;
  if (v === 'firewalld')
    throw new CniError(
      ErrInvalidNetworkConfig,
      'invalid config: field "backend" = "firewalld": the firewalld backend is not supported by this plugin',
      'use "iptables" or "nftables", or the reference firewall plugin for firewalld',
    );
  throw configError('backend', v, 'expected "iptables" or "nftables"');
}

// iptables chain names: at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1); the reference passes
// the name to iptables unchecked. Ours is also a token in a restore script, so: no spaces, quotes
// or a leading "-"/"!".
const CHAIN_RE = /^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,27}$/;
const RESERVED_CHAINS = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING', 'ACCEPT', 'DROP', 'RETURN', 'REJECT', 'CNI-FORWARD', 'CNI-ISOLATION-STAGE-1', 'CNI-ISOLATION-STAGE-2']);

function checkAdminChain(v: string | null | undefined): string {
  if (v === undefined || v === null || v === '') return DEFAULT_ADMIN_CHAIN;
  if (!CHAIN_RE.test(v)) throw configError('iptablesAdminChainName', v, 'must be 1-28 characters of A-Z a-z 0-9 _ . + - (not starting with - or .)');
  if (RESERVED_CHAINS.has(v)) throw configError('iptablesAdminChainName', v, 'is a built-in chain or target, or one of the plugin\'s own chains');
  return v;
}

function checkIngressPolicy(v: string | null | undefined): IngressPolicy {
  if (v === undefined || v === null || v === '' || v === 'open') return 'open';
  if (v === 'same-bridge' || v === 'isolated') return v;
  throw configError('ingressPolicy', v, 'expected "open", "same-bridge" or "isolated"');
}

/** Parses the stdin config. Throws CniError code 7 naming the field for a bad value. */
export function loadFirewallConf(a: Pick<CmdArgs, 'conf'>): FirewallConf {
  const c = parseConfig(firewallConfSchema(a.conf), a.conf);
  return {
    name: c.name,
    backend: checkBackend(c.backend),
    adminChain: checkAdminChain(c.iptablesAdminChainName),
    ingressPolicy: checkIngressPolicy(c.ingressPolicy),
    dataDir: stateDirFromConfig('dataDir', c.dataDir, DEFAULT_DATA_DIR),
    prevResult: c.prevResult ?? undefined,
  };
}

/** The pod addresses of a prevResult as host addresses (the reference's ipString: /32, /128). */
export function podAddresses(result: Result): IP[] {
  const out: IP[] = [];
  for (const [i, c] of (result.ips ?? []).entries()) {
    const n = parseCIDR(c.address);
    if (!n) throw configError(`prevResult.ips[${i}].address`, c.address, 'expected an address in CIDR notation');
    if (!out.some((o) => formatIP(o) === formatIP(n.ip))) out.push(n.ip);
  }
  return out;
}

/**
 * The bridge a pod hangs off for `same-bridge`/`isolated`: the prevResult's first interface, as the
 * reference takes it (chain firewall after bridge). Its name goes into netfilter scripts, so it must
 * be a valid interface name of printable ASCII without quotes or backslashes.
 */
export function bridgeName(result: Result, policy: IngressPolicy): string {
  const name = result.interfaces?.[0]?.name;
  if (name === undefined)
    throw configError('prevResult.interfaces', result.interfaces ?? null, `ingressPolicy "${policy}" needs the bridge as the first interface; chain "firewall" after "bridge"`);
  const why = ifNameProblem(name) ?? (/^[\x21-\x7e]+$/.test(name) && !/["'\\]/.test(name) && !/^[-!]/.test(name) ? undefined : 'has characters a netfilter rule cannot carry');
  if (why) throw configError('prevResult.interfaces[0].name', name, why);
  return name;
}
