// The nftables backend (ours; the reference has none). One table, `inet cni_plugins_firewall`:
//
//   chain forward (hook forward, priority filter, policy accept), rebuilt whole by every ADD:
//     isolation drops (sets `bridges`, `same_bridge`, `isolated_bridges`: the iptables
//     CNI-ISOLATION-STAGE-1/2 logic as set lookups), `jump admin`, then the pod accepts
//     (replies in, everything out) for the addresses in the sets `pods4` / `pods6`.
//   chain admin: left to the node's administrator (the iptables backend's CNI-ADMIN); never flushed.
//
// A pod is one element per address, its comment `<network>/<containerID>/<ifname>`, so DEL and GC
// find it by attachment: without prevResult, without the netns, whatever address it had. ADD is one
// `nft -f -` with no read (every statement is idempotent); DEL, GC and CHECK read the table over
// nfnetlink in-process, and DEL/GC delete the elements in one nfnetlink batch: no process. Kernel semantics to know: an accept here ends the
// packet's walk through this table only; a drop in another table (an iptables FORWARD policy DROP
// among them) still drops it. The isolation drops, being drops, hold whatever other tables say.
import { sha256Hex } from '../../../shared/crypto';
import { formatIP, type IP } from '../../../shared/ip';
import { AF_INET, AF_INET6 } from '../../../shared/linux/netlink/constants';
import { ipFromBytes, ipToBytes } from '../../../shared/linux/netlink/ipaddr';
import { ruleComment, type NftRuleMsg, type NftSetElement } from '../../../shared/linux/netlink/nftables';
import { deleteNftRules, readNftSetElements, readNftTable } from '../../../shared/netfilter/nft';
import { mustRunTool } from '../../../shared/netfilter/tool';
import type { GCAttachment } from '../../../shared/cni/gc';
import type { IsolationPlan } from './iptables';

export const TABLE = 'cni_plugins_firewall';
const T = `inet ${TABLE}`;
const POD_SETS = { 4: 'pods4', 6: 'pods6' } as const;

/** The forward chain's rules, in order (also what CHECK counts). */
export const FORWARD_RULES = [
  'iifname @bridges oifname @bridges iifname . oifname != @same_bridge drop',
  'iifname @isolated_bridges oifname @isolated_bridges drop',
  'jump admin',
  'ip daddr @pods4 ct state established,related accept',
  'ip saddr @pods4 accept',
  'ip6 daddr @pods6 ct state established,related accept',
  'ip6 saddr @pods6 accept',
];

// nftables keeps at most 128 bytes of a comment (NFT_USERDATA_MAXLEN 256, comment 128 with its NUL).
const MAX_COMMENT = 127;

/**
 * The comment naming an attachment: `<network>/<containerID>/<ifname>` (none of them may contain "/"),
 * or `#` and a sha256 of it when it is longer than nftables keeps or has a character that cannot go
 * between the script's quotes (an interface name may hold `"`): DEL still finds it; GC cannot read it back.
 */
export function attachmentComment(network: string, containerID: string, ifname: string): string {
  const text = `${network}/${containerID}/${ifname}`;
  if (Buffer.byteLength(text) <= MAX_COMMENT && /^[\x21-\x7e]+$/.test(text) && !/["\\]/.test(text)) return text;
  return '#' + sha256Hex(text).slice(0, 64);
}

/** The ADD script: table, chains, sets and forward rules ensured; each address's element (re)written with this attachment's comment. */
export function addScript(ips: IP[], comment: string, isolation?: IsolationPlan): string {
  const out = [
    `add table ${T}`,
    `add chain ${T} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${T} admin`,
    `add set ${T} pods4 { type ipv4_addr; }`,
    `add set ${T} pods6 { type ipv6_addr; }`,
    `add set ${T} bridges { type ifname; }`,
    `add set ${T} same_bridge { type ifname . ifname; }`,
    `add set ${T} isolated_bridges { type ifname; }`,
    `flush chain ${T} forward`,
    ...FORWARD_RULES.map((r) => `add rule ${T} forward ${r}`),
  ];
  for (const ip of ips) {
    const set = POD_SETS[ip.family];
    const a = formatIP(ip);
    // add + delete + add: an element left by a pod that had this address before is taken over, not kept with its comment.
    out.push(`add element ${T} ${set} { ${a} }`, `delete element ${T} ${set} { ${a} }`, `add element ${T} ${set} { ${a} comment "${comment}" }`);
  }
  if (isolation) {
    const b = `"${isolation.bridge}"`;
    out.push(`add element ${T} bridges { ${b} }`, `add element ${T} same_bridge { ${b} . ${b} }`);
    if (isolation.policy === 'isolated') out.push(`add element ${T} isolated_bridges { ${b} }`);
  }
  return out.join('\n') + '\n';
}

/** One pod element of the table: its address and comment. */
export interface PodElement {
  ip: IP;
  comment: string;
}

/** What CHECK, DEL and GC need from `nft -j list table inet cni_plugins_firewall`. */
export interface FirewallTable {
  pods: PodElement[];
  chains: Set<string>;
  forwardRules: number;
  bridges: Set<string>;
  isolatedBridges: Set<string>;
}

const SETS = ['pods4', 'pods6', 'bridges', 'isolated_bridges'] as const;

/** An interface name as a set key holds it (IFNAMSIZ bytes, NUL-padded). */
const ifname = (key: Buffer): string => {
  const nul = key.indexOf(0);
  return key.toString('latin1', 0, nul < 0 ? key.length : nul);
};

/**
 * What CHECK, DEL and GC need, from the table's chains, rules and set elements as the kernel lists
 * them: pod elements (address and comment), chains, the forward chain's rule count, the bridges.
 */
export function tableOf(chains: Iterable<string>, rules: NftRuleMsg[], sets: Record<(typeof SETS)[number], NftSetElement[]>): FirewallTable {
  const pods = (['pods4', 'pods6'] as const).flatMap((set) =>
    sets[set].flatMap((e) => (e.key.length === (set === 'pods4' ? 4 : 16) ? [{ ip: ipFromBytes(set === 'pods4' ? AF_INET : AF_INET6, e.key), comment: ruleComment(e.userdata) ?? '' }] : [])),
  );
  return {
    pods,
    chains: new Set(chains),
    forwardRules: rules.filter((r) => r.chain === 'forward').length,
    bridges: new Set(sets.bridges.map((e) => ifname(e.key))),
    isolatedBridges: new Set(sets.isolated_bridges.map((e) => ifname(e.key))),
  };
}

/** The table read over nfnetlink (no process), or undefined when it does not exist. Throws NetfilterError. */
export function readTable(): FirewallTable | undefined {
  const t = readNftTable('inet', TABLE);
  if (!t) return undefined;
  const sets = Object.fromEntries(SETS.map((set) => [set, readNftSetElements('inet', TABLE, set)])) as Record<(typeof SETS)[number], NftSetElement[]>;
  return tableOf(t.chains, t.rules, sets);
}

/** Deletes the pod `elements` from their sets over nfnetlink, in one batch (no process; nothing when empty). Throws NetfilterError. */
export function deleteElements(elements: PodElement[], what: string): void {
  deleteNftRules(elements.map((e) => ({ family: 'inet', table: TABLE, set: POD_SETS[e.ip.family], key: Buffer.from(ipToBytes(e.ip)) })), what);
}

export function applyScript(script: string, what: string): void {
  if (script) mustRunTool('nft', ['-f', '-'], what, script);
}

/** The attachment a pod element's comment names, or undefined for a hashed or foreign comment. */
export function parseComment(comment: string): { network: string; containerID: string; ifname: string } | undefined {
  const parts = comment.split('/');
  if (parts.length !== 3 || parts.some((p) => !p)) return undefined;
  return { network: parts[0]!, containerID: parts[1]!, ifname: parts[2]! };
}

/** GC: the pod elements of `network` whose attachment is not in `valid`. */
export function staleElements(t: FirewallTable, network: string, valid: GCAttachment[]): PodElement[] {
  const keep = new Set(valid.map((v) => `${v.containerID}/${v.ifname}`));
  return t.pods.filter((p) => {
    const a = parseComment(p.comment);
    return a !== undefined && a.network === network && !keep.has(`${a.containerID}/${a.ifname}`);
  });
}

/** CHECK: the table holds what ADD wrote for this pod; throws an Error naming what is missing. */
export function checkTable(t: FirewallTable | undefined, ips: IP[], comment: string, isolation?: IsolationPlan): void {
  if (!t) throw new Error(`table ${T} not found`);
  for (const c of ['forward', 'admin']) if (!t.chains.has(c)) throw new Error(`chain ${c} not found in table ${T}`);
  if (t.forwardRules !== FORWARD_RULES.length) throw new Error(`chain forward of table ${T} has ${t.forwardRules} rules, expected ${FORWARD_RULES.length}`);
  for (const ip of ips) {
    const a = formatIP(ip);
    const e = t.pods.find((p) => formatIP(p.ip) === a);
    if (!e) throw new Error(`expected element ${a} in set ${POD_SETS[ip.family]} of table ${T} not found`);
    if (e.comment !== comment) throw new Error(`element ${a} in set ${POD_SETS[ip.family]} of table ${T} belongs to ${JSON.stringify(e.comment)}, not ${JSON.stringify(comment)}`);
  }
  if (isolation) {
    if (!t.bridges.has(isolation.bridge)) throw new Error(`bridge ${isolation.bridge} not found in set bridges of table ${T}`);
    if (isolation.policy === 'isolated' && !t.isolatedBridges.has(isolation.bridge)) throw new Error(`bridge ${isolation.bridge} not found in set isolated_bridges of table ${T}`);
  }
}
