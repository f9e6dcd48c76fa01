// nftables masquerade, the same table, chains, rules and comments as the reference's
// pkg/ip/ipmasq_nftables_linux.go: `table inet cni_plugins_masquerade`, base chain `postrouting`
// rewritten on each ADD, one rule per pod address in `masq_checks` whose comment starts with
// <hash16(net)>-<hash16(ifname:id)>. The table is read over nfnetlink in-process (shared/netfilter/nft.ts);
// ADD is one `nft -f -` transaction, DEL and GC delete the rules by handle in one nfnetlink batch (no process).
import { sha512Hex } from '../crypto';
import { formatCIDR, formatIP, networkOf, parseCIDR } from '../ip';
import { deleteNftRules, readNftRules, type NftRuleInfo } from './nft';
import { mustRunTool } from './tool';

export const MASQ_TABLE = 'cni_plugins_masquerade';
export const MASQ_CHAIN = 'masq_checks';
const COMMENT_MAX = 128; // knftables.CommentLengthMax

const hash16 = (s: string): string => sha512Hex(s).slice(0, 16);

export const hashForNetwork = (network: string): string => hash16(network);
export const hashForInstance = (network: string, ifname: string, containerID: string): string =>
  `${hashForNetwork(network)}-${hash16(`${ifname}:${containerID}`)}`;

export function commentForInstance(network: string, ifname: string, containerID: string): string {
  const strip = (s: string): string => s.replace(/"/g, '');
  const c = `${hashForInstance(network, ifname, containerID)}, net: ${strip(network)}, if: ${strip(ifname)}, id: ${strip(containerID)}`;
  return c.slice(0, COMMENT_MAX);
}

/**
 * Rules of the masquerade chain (handle, comment), read in-process; empty when the table does not
 * exist yet. `commentPrefix`: only the rules whose comment may start with it are decoded (one pod's,
 * on a node with a rule per pod).
 */
function listMasqRules(commentPrefix?: string): NftRuleInfo[] {
  const rules = readNftRules('inet', MASQ_TABLE, commentPrefix === undefined ? undefined : [commentPrefix])?.rules ?? [];
  return rules.filter((x) => x.chain === MASQ_CHAIN && (commentPrefix === undefined || !!x.comment?.startsWith(commentPrefix)));
}

const q = (s: string): string => `"${s}"`;

export function setupIPMasqNFTables(addresses: string[], network: string, ifname: string, containerID: string): void {
  const stale = listMasqRules(hashForInstance(network, ifname, containerID));
  const t = `inet ${MASQ_TABLE}`;
  const comment = q(commentForInstance(network, ifname, containerID));
  const lines = [
    `add table ${t} { comment ${q('Masquerading for plugins from github.com/containernetworking/plugins')} ; }`,
    `add chain ${t} ${MASQ_CHAIN} { comment ${q('Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet')} ; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat ; }`,
    `flush chain ${t} postrouting`,
    `add rule ${t} postrouting ip daddr == 224.0.0.0/4 return`,
    `add rule ${t} postrouting ip6 daddr == ff00::/8 return`,
    `add rule ${t} postrouting goto ${MASQ_CHAIN}`,
    ...stale.map((r) => `delete rule ${t} ${MASQ_CHAIN} handle ${r.handle}`),
  ];
  for (const a of addresses) {
    const n = parseCIDR(a);
    if (!n) continue;
    const fam = n.ip.family === 4 ? 'ip' : 'ip6';
    lines.push(`add rule ${t} ${MASQ_CHAIN} ${fam} saddr == ${formatIP(n.ip)} ${fam} daddr != ${formatCIDR(networkOf(n))} masquerade comment ${comment}`);
  }
  mustRunTool('nft', ['-f', '-'], `setting up ipMasq for ${network}/${ifname}/${containerID}`, lines.join('\n') + '\n');
}

/** Deletes the rules by handle, over nfnetlink (no process). */
function deleteRules(rules: NftRuleInfo[], what: string): void {
  deleteNftRules(rules.map((r) => ({ family: 'inet', table: MASQ_TABLE, chain: MASQ_CHAIN, rule: r.handle })), what);
}

// DEL and GC sweep this backend whatever the config says (the pod may have been set up with it); on a
// node that never used it the table does not exist, and nothing more is asked.

/** Removes the pod's rules by their comment hash; no addresses needed. */
export function teardownIPMasqNFTables(network: string, ifname: string, containerID: string): void {
  deleteRules(listMasqRules(hashForInstance(network, ifname, containerID)), `tearing down ipMasq for ${network}/${ifname}/${containerID}`);
}

/** The reference's gcIPMasqNFTables: drop this network's rules whose comment is not a valid attachment's. */
export function gcIPMasqNFTables(network: string, valid: Array<{ containerID: string; ifname: string }>): void {
  const keep = new Set(valid.map((v) => commentForInstance(network, v.ifname, v.containerID)));
  const prefix = `${hashForNetwork(network)}-`;
  deleteRules(
    listMasqRules().filter((r) => r.comment?.startsWith(prefix) && !keep.has(r.comment)),
    `garbage-collecting ipMasq rules of ${network}`,
  );
}
