// Reading nftables tables. Rules by chain, handle, comment and iifname match, what masquerade and
// the spoof check need, are read over nfnetlink and deleted by handle in one batch, in-process.
// The portmap and firewall tables are listed with `nft -j` (their sets and NAT targets are not decoded
// here), only when the table exists: that is asked over nfnetlink first, so a table that is not
// there (a node that never used the backend, a DEL sweeping the other one) costs no process, and
// "absent" does not depend on matching nft's (translated) error text.
import { NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, nftDelete, nftListChains, nftListRules, nftTableExists, ruleComment, type NftRuleMsg } from '../linux/netlink/nftables';
import { netfilterSocket } from './nfnl';
import { NetfilterError, runTool } from './tool';

export type NftFamily = 'inet' | 'ip' | 'ip6' | 'bridge';

const NFPROTO: Record<NftFamily, number> = { inet: NFPROTO_INET, ip: NFPROTO_IPV4, ip6: NFPROTO_IPV6, bridge: NFPROTO_BRIDGE };

/**
 * Whether the table may exist, asked over nfnetlink. Any answer but "no such table" (no nf_tables
 * access, say) counts as yes, so `nft` runs and reports the real problem.
 */
export function nftTableMayExist(family: NftFamily, name: string): boolean {
  try {
    return nftTableExists(netfilterSocket(), NFPROTO[family], name);
  } catch {
    return true;
  }
}

/**
 * `nft -j list table <family> <name>`'s JSON text, or null when the table does not exist (then no
 * process is run, unless it vanished between the question and the listing). Throws NetfilterError
 * when nft is missing or fails otherwise.
 */
export function listNftTable(family: NftFamily, name: string): string | null {
  if (!nftTableMayExist(family, name)) return null;
  const args = ['-j', 'list', 'table', family, name];
  const r = runTool('nft', args);
  if (r.status === 0) return r.stdout;
  if (/No such file or directory/.test(r.stderr)) return null; // deleted since the question (the tools run with LC_ALL=C)
  throw new NetfilterError('nft', `listing nftables table ${family} ${name}: nft ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim().split('\n')[0]}`);
}

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
 * in-process; null when the table does not exist. Throws NetfilterError when the kernel cannot be
 * asked (no nf_tables access).
 */
export function readNftTable(family: NftFamily, name: string): { chains: Set<string>; rules: NftRuleMsg[] } | null {
  try {
    const nl = netfilterSocket();
    if (!nftTableExists(nl, NFPROTO[family], name)) return null;
    const chains = new Set(nftListChains(nl, NFPROTO[family], name).map((c) => c.name));
    return { chains, rules: nftListRules(nl, NFPROTO[family], name) };
  } catch (e) {
    throw new NetfilterError('nf_tables', `listing nftables table ${family} ${name}: ${(e as Error).message}`, 'other', { cause: e });
  }
}

/** readNftTable with each rule's handle, comment and iifname match (ruleInfo). */
export function readNftRules(family: NftFamily, name: string): { chains: Set<string>; rules: NftRuleInfo[] } | null {
  const t = readNftTable(family, name);
  return t && { chains: t.chains, rules: t.rules.map(ruleInfo) };
}

/** One deletion in table `family name`: a rule by handle, or a chain. */
export type NftTableDeletion = { family: NftFamily; table: string } & ({ chain: string; rule: bigint } | { chain: string; rule?: undefined });

/** Deletes rules (by handle) and chains, of one or more tables, in one nfnetlink batch: all or nothing. Throws NetfilterError. */
export function deleteNftRules(deletions: NftTableDeletion[], what: string): void {
  if (!deletions.length) return;
  try {
    nftDelete(netfilterSocket(), deletions.map((d) => ({ ...d, family: NFPROTO[d.family] })));
  } catch (e) {
    throw new NetfilterError('nf_tables', `${what}: ${(e as Error).message}`, 'other', { cause: e });
  }
}
