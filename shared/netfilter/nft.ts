// Reading nftables tables over nfnetlink in-process, for every nftables backend (masquerade, spoof
// check, portmap, firewall): a table's chains and rules as the kernel lists them (with what
// masquerade and the spoof check need: handle, nft comment, iifname match), a set's elements, and
// deletions of rules, chains and elements in one batch. Only ADD's writes exec `nft -f -`.
import { NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, nftDelete, nftListChains, nftListRules, nftListSetElements, nftTableExists, ruleComment, type NftRuleMsg, type NftSetElement } from '../linux/netlink/nftables';
import { EAFNOSUPPORT, EOPNOTSUPP, EPROTONOSUPPORT, errnoOf } from '../linux/netlink/errno';
import { netfilterSocket } from './nfnl';
import { NetfilterError } from './tool';

export type NftFamily = 'inet' | 'ip' | 'ip6' | 'bridge';

const NFPROTO: Record<NftFamily, number> = { inet: NFPROTO_INET, ip: NFPROTO_IPV4, ip6: NFPROTO_IPV6, bridge: NFPROTO_BRIDGE };

/** A rule as readNftRules gives it: chain, handle, nft comment and the interface an `iifname "x"` match names. */
export interface NftRuleInfo {
  chain: string;
  handle: bigint;
  comment?: string;
  iifname?: string;
}

const META_IIFNAME = 6;
const CMP_EQ = 0;

/** The name an `iifname == "x"` match compares with (meta load iifname, then cmp eq), if the rule has one. */
function iifnameOf(r: NftRuleMsg): string | undefined {
  for (let i = 0; i + 1 < r.exprs.length; i++) {
    const [load, cmp] = [r.exprs[i]!, r.exprs[i + 1]!];
    if (load.name !== 'meta' || load.attrs.get(2)?.readUInt32BE(0) !== META_IIFNAME || cmp.name !== 'cmp' || cmp.attrs.get(2)?.readUInt32BE(0) !== CMP_EQ) continue;
    const data = cmp.attrs.get(3);
    const value = data && data.length > 4 ? data.subarray(4, data.readUInt16LE(0)) : undefined; // NFTA_DATA_VALUE
    if (!value) continue;
    const nul = value.indexOf(0);
    return value.toString('latin1', 0, nul < 0 ? value.length : nul);
  }
  return undefined;
}

/** What readNftRules keeps of a listed rule. */
export function ruleInfo(r: NftRuleMsg): NftRuleInfo {
  const comment = ruleComment(r.userdata);
  const iifname = iifnameOf(r);
  return { chain: r.chain, handle: r.handle, ...(comment !== undefined ? { comment } : {}), ...(iifname !== undefined ? { iifname } : {}) };
}

/**
 * The chains and rules of table `family name` as the kernel lists them, read over nfnetlink
 * in-process; null when the table does not exist. `mentioning`: only the rules whose kernel message
 * holds one of these strings (a comment naming the pod) are decoded and returned, see nftListRules.
 * Throws NetfilterError when the kernel cannot be asked (no nf_tables access).
 */
export function readNftTable(family: NftFamily, name: string, mentioning?: readonly string[]): { chains: Set<string>; rules: NftRuleMsg[] } | null {
  try {
    const nl = netfilterSocket();
    if (!nftTableExists(nl, NFPROTO[family], name)) return null;
    const chains = new Set(nftListChains(nl, NFPROTO[family], name).map((c) => c.name));
    return { chains, rules: nftListRules(nl, NFPROTO[family], name, undefined, mentioning) };
  } catch (e) {
    throw readFailed(`listing nftables table ${family} ${name}`, e);
  }
}

// A kernel without nf_tables answers the nfnetlink subsystem with these: then no table of ours
// exists, as when `nft` was not installed (kind 'not-found': sweeps of this backend have nothing to do).
const NO_NF_TABLES = new Set([EPROTONOSUPPORT, EOPNOTSUPP, EAFNOSUPPORT]);

function readFailed(what: string, e: unknown): NetfilterError {
  const kind = NO_NF_TABLES.has(errnoOf(e)) ? 'not-found' : 'other';
  return new NetfilterError('nf_tables', `${what}: ${(e as Error).message}`, kind, { cause: e });
}

/** readNftTable with each rule's handle, comment and iifname match (ruleInfo). */
export function readNftRules(family: NftFamily, name: string, mentioning?: readonly string[]): { chains: Set<string>; rules: NftRuleInfo[] } | null {
  const t = readNftTable(family, name, mentioning);
  return t && { chains: t.chains, rules: t.rules.map(ruleInfo) };
}

/** One deletion in table `family name`: a rule by handle, a chain, or a set element by key. */
export type NftTableDeletion = { family: NftFamily; table: string } & ({ chain: string; rule: bigint } | { chain: string; rule?: undefined } | { set: string; key: Buffer });

/** The elements of set `set` of table `family name`, read over nfnetlink; [] when the set does not exist. Throws NetfilterError. */
export function readNftSetElements(family: NftFamily, name: string, set: string): NftSetElement[] {
  try {
    return nftListSetElements(netfilterSocket(), NFPROTO[family], name, set);
  } catch (e) {
    throw readFailed(`listing set ${set} of nftables table ${family} ${name}`, e);
  }
}

/** Deletes rules (by handle) and chains, of one or more tables, in one nfnetlink batch: all or nothing. Throws NetfilterError. */
export function deleteNftRules(deletions: NftTableDeletion[], what: string): void {
  if (!deletions.length) return;
  try {
    nftDelete(netfilterSocket(), deletions.map((d) => ({ ...d, family: NFPROTO[d.family] })));
  } catch (e) {
    throw new NetfilterError('nf_tables', `${what}: ${(e as Error).message}`, 'other', { cause: e });
  }
}
