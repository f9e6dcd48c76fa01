// Listing one nftables table with `nft -j`, the one reader every nftables backend uses (masquerade,
// spoof check, portmap, firewall). Whether the table exists is asked over nfnetlink first: a
// table that is not there (a node that never used the backend, a DEL sweeping the other backend)
// costs no process, and "absent" does not depend on matching nft's (translated) error text.
import { NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, nftTableExists } from '../linux/netlink/nftables';
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
