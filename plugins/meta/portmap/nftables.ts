// The nftables backend: the upstream reference's layout (portmap_nftables.go) — tables `ip
// cni_hostport` and `ip6 cni_hostport`, base chains prerouting/output (rewritten on each ADD with
// the config's conditions) jumping to `hostip_hostports` and `hostports`, and `masquerading` in
// postrouting; every per-pod rule carries the container ID as its comment, which is how DEL finds
// them, whatever the pod's address. Each verb reads each family's table once, over nfnetlink
// in-process; ADD writes all families in one `nft -f -` transaction, DEL and GC delete by handle in
// one nfnetlink batch (no process).
// Two spellings differ from upstream: `meta l4proto` (upstream's `ip6 protocol` is no nft syntax, so
// its IPv6 ADD fails) and `dnat to addr:port` (nft 1.0.6, Debian 12's, aborts on `dnat ip addr . port
// to`); the hairpin masquerade covers the pod's subnet with `ct status dnat`, as the iptables
// backend's hairpin mark does, where upstream masquerades only the pod talking to itself.
import { formatCIDR, formatIP, networkOf, type Family } from '../../../shared/ip';
import { configError } from '../../../shared/cni/config';
import { AF_INET, AF_INET6 } from '../../../shared/linux/netlink/constants';
import { ipFromBytes } from '../../../shared/linux/netlink/ipaddr';
import { ruleComment, type NftRuleMsg } from '../../../shared/linux/netlink/nftables';
import { deleteNftRules, readNftTable, type NftFamily } from '../../../shared/netfilter/nft';
import { mustRunTool } from '../../../shared/netfilter/tool';
import { mappingsFor, type PodAddress, type PortMapConf } from './config';

export const TABLE = 'cni_hostport';
export const HOSTPORTS = 'hostports';
export const HOSTIP_HOSTPORTS = 'hostip_hostports';
export const MASQUERADING = 'masquerading';
const POD_CHAINS = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];

const nftFamily = (f: Family): NftFamily => (f === 4 ? 'ip' : 'ip6');

/** A rule of the table (the parts used here), read over nfnetlink. */
export interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
  protocol?: string; // from `<proto> th dport`
  port?: number;
  daddr?: string;
  dnat?: string; // target address
}

const PROTOCOLS = new Map([
  [6, 'tcp'],
  [17, 'udp'],
  [132, 'sctp'],
]);
// NFT_PAYLOAD_* bases, NFT_META_L4PROTO, NFT_NAT_DNAT.
const BASE_NETWORK = 1;
const BASE_TRANSPORT = 2;
const META_L4PROTO = 16;
const NAT_DNAT = 1;

const u32 = (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readUInt32BE(0) : undefined);
/** The NFTA_DATA_VALUE nested in `b` (NFTA_CMP_DATA, NFTA_IMMEDIATE_DATA). */
const value = (b: Buffer | undefined): Buffer | undefined => (b && b.length > 4 && (b.readUInt16LE(2) & 0x3fff) === 1 ? b.subarray(4, b.readUInt16LE(0)) : undefined);

/**
 * What the verbs use of a rule, from its expressions as the kernel lists them (the rules addLines
 * writes): the protocol and port of `ip protocol|meta l4proto <p> th dport <n>`, the address of an
 * `ip[6] daddr <a>` (a full address, not a prefix), the address a `dnat to` loads, and the nft
 * comment. Other expressions are passed over.
 */
export function ruleOf(f: Family, m: NftRuleMsg): NftRule {
  const out: NftRule = { chain: m.chain, handle: Number(m.handle) };
  const comment = ruleComment(m.userdata);
  if (comment !== undefined) out.comment = comment;
  const alen = f === 4 ? 4 : 16;
  const af = f === 4 ? AF_INET : AF_INET6;
  const regs = new Map<number, Buffer>();
  let load: { base: number; offset: number; len: number } | { meta: number } | undefined;
  let proto: number | undefined;
  for (const e of m.exprs) {
    const a = e.attrs;
    if (e.name === 'payload') load = { base: u32(a.get(2)) ?? -1, offset: u32(a.get(3)) ?? -1, len: u32(a.get(4)) ?? -1 };
    else if (e.name === 'meta') load = { meta: u32(a.get(2)) ?? -1 };
    else if (e.name === 'cmp') {
      const data = value(a.get(3));
      const l = load;
      load = undefined;
      if (!l || !data || u32(a.get(2)) !== 0) continue; // NFT_CMP_EQ only
      if ('meta' in l) {
        if (l.meta === META_L4PROTO && data.length === 1) proto = data[0];
      } else if (l.base === BASE_NETWORK && f === 4 && l.offset === 9 && l.len === 1) proto = data[0];
      else if (l.base === BASE_TRANSPORT && l.offset === 2 && l.len === 2 && proto !== undefined && PROTOCOLS.has(proto)) {
        out.protocol = PROTOCOLS.get(proto);
        out.port = data.readUInt16BE(0);
      } else if (l.base === BASE_NETWORK && l.offset === (f === 4 ? 16 : 24) && l.len === alen && data.length === alen) out.daddr = formatIP(ipFromBytes(af, data));
    } else if (e.name === 'immediate') {
      const reg = u32(a.get(1));
      const v = value(a.get(2));
      if (reg && v) regs.set(reg, v);
    } else if (e.name === 'nat') {
      // NFTA_NAT_TYPE, NFTA_NAT_REG_ADDR_MIN: the register an earlier immediate loaded the address into
      const v = u32(a.get(1)) === NAT_DNAT ? regs.get(u32(a.get(3)) ?? -1) : undefined;
      if (v && v.length >= alen) out.dnat = formatIP(ipFromBytes(af, v.subarray(0, alen)));
    } else if (e.name !== 'bitwise') load = undefined;
  }
  return out;
}

/**
 * One family's table read over nfnetlink (no process); [] when the table is absent. `containerID`:
 * only the rules whose message holds it (its comment, on every per-pod rule) are decoded, for the
 * verbs that look at one pod's rules alone (DEL). Throws NetfilterError.
 */
export function readTable(f: Family, containerID?: string): NftRule[] {
  return (readNftTable(nftFamily(f), TABLE, containerID === undefined ? undefined : [containerID])?.rules ?? []).map((m) => ruleOf(f, m));
}

/** Runs `lines` as one nft transaction (nothing when empty). */
export function writeScript(lines: string[], what: string): void {
  if (lines.length) mustRunTool('nft', ['-f', '-'], what, lines.join('\n') + '\n');
}

const q = (s: string): string => `"${s}"`;

/** The same conflict rule as the iptables backend's: another container's rule on the same protocol, port and host address. */
export function checkConflicts(conf: PortMapConf, containerID: string, family: Family, rules: NftRule[]): void {
  const taken = rules.filter((r) => (r.chain === HOSTPORTS || r.chain === HOSTIP_HOSTPORTS) && r.comment !== containerID && r.port !== undefined);
  conf.portMappings.forEach((m, i) => {
    const mine = mappingsFor(family, [m])[0];
    if (!mine) return;
    const hit = taken.find((r) => r.protocol === m.protocol && r.port === m.hostPort && (!r.daddr || !mine.dst || r.daddr === mine.dst));
    if (!hit) return;
    throw configError(
      `runtimeConfig.portMappings[${i}].hostPort`,
      m.hostPort,
      `host port ${m.hostPort}/${m.protocol}${mine.dst ? ` on ${mine.dst}` : ''} is already mapped to container ${hit.comment ?? '(no comment)'} (nftables table ${nftFamily(family)} ${TABLE}); container ${containerID} cannot map it too`,
    );
  });
}

/** The pod's rules for one family: [chain, rule text] pairs, in order. */
export function podRules(conf: PortMapConf, pod: PodAddress): Array<[string, string]> {
  const ipX = nftFamily(pod.family);
  const ip = formatIP(pod.net.ip);
  const to = pod.family === 4 ? ip : `[${ip}]`;
  const l4 = pod.family === 4 ? 'ip protocol' : 'meta l4proto';
  const out: Array<[string, string]> = [];
  for (const m of mappingsFor(pod.family, conf.portMappings)) {
    const match = `${l4} ${m.protocol} th dport ${m.hostPort} dnat to ${to}:${m.containerPort}`;
    if (m.dst) out.push([HOSTIP_HOSTPORTS, `${ipX} daddr ${m.dst} ${match}`]);
    else out.push([HOSTPORTS, match]);
  }
  if (conf.snat) {
    const from = conf.masqAll ? '' : `${ipX} saddr ${formatCIDR(networkOf(pod.net))} `;
    out.push([MASQUERADING, `${from}${ipX} daddr ${ip} ct status dnat masquerade`]);
    if (pod.family === 4) out.push([MASQUERADING, `${ipX} saddr 127.0.0.1 ${ipX} daddr ${ip} masquerade`]);
  }
  return out;
}

/**
 * The script lines installing the pod's rules for one family: the table and chains (idempotent
 * `add`), base chains rewritten with the conditions, this container's earlier rules to the same pod
 * address deleted (a repeated ADD leaves one set; a rule of the same container ID on another network
 * points elsewhere and is kept), then the rules.
 */
export function addLines(conf: PortMapConf, containerID: string, pod: PodAddress, rules: NftRule[]): string[] {
  const t = `${nftFamily(pod.family)} ${TABLE}`;
  const cond = (pod.family === 4 ? conf.conditionsV4 : conf.conditionsV6).map((c) => `${c} `).join('');
  const ip = formatIP(pod.net.ip);
  const lines = [
    `add table ${t} { comment ${q('CNI portmap plugin')} ; }`,
    `add chain ${t} ${HOSTPORTS}`,
    `add chain ${t} ${HOSTIP_HOSTPORTS}`,
    `add chain ${t} prerouting { type nat hook prerouting priority dstnat ; }`,
    `flush chain ${t} prerouting`,
    `add rule ${t} prerouting ${cond}jump ${HOSTIP_HOSTPORTS}`,
    `add rule ${t} prerouting ${cond}jump ${HOSTPORTS}`,
    // dstnat is not accepted on the output hook (upstream's note): its number.
    `add chain ${t} output { type nat hook output priority -100 ; }`,
    `flush chain ${t} output`,
    `add rule ${t} output ${cond}jump ${HOSTIP_HOSTPORTS}`,
    `add rule ${t} output ${cond}fib daddr type local jump ${HOSTPORTS}`,
  ];
  if (conf.snat) lines.push(`add chain ${t} ${MASQUERADING} { type nat hook postrouting priority srcnat ; }`);
  const mine = (r: NftRule): boolean => r.comment === containerID && POD_CHAINS.includes(r.chain);
  for (const r of rules) if (mine(r) && (r.dnat === ip || (r.chain === MASQUERADING && r.dnat === undefined))) lines.push(`delete rule ${t} ${r.chain} handle ${r.handle}`);
  for (const [chain, rule] of podRules(conf, pod)) lines.push(`add rule ${t} ${chain} ${rule} comment ${q(containerID)}`);
  return lines;
}

/**
 * DEL without an attachment record (ADDed by upstream's plugin, or the record lost): every rule
 * whose comment is the container ID (upstream's rule), found without netns or address. That
 * includes the container's rules of every other portmap network; with a record DEL uses
 * attachmentRules instead.
 */
export function containerRules(containerID: string, rules: NftRule[]): NftRule[] {
  return rules.filter((r) => r.comment === containerID && POD_CHAINS.includes(r.chain));
}

/**
 * DEL by record and GC: the rules of `containerID` that lead to one of its recorded addresses
 * `pods` of `family` (the DNATs to it and its masquerade rules). The same container attached to
 * another network has another address, so its rules there stay (the comment alone cannot tell).
 */
export function attachmentRules(containerID: string, pods: PodAddress[], family: Family, rules: NftRule[]): NftRule[] {
  const ips = new Set(pods.filter((p) => p.family === family).map((p) => formatIP(p.net.ip)));
  const mine = (r: NftRule): boolean =>
    r.comment === containerID && (((r.chain === HOSTPORTS || r.chain === HOSTIP_HOSTPORTS) && ips.has(r.dnat ?? '')) || (r.chain === MASQUERADING && ips.has(r.daddr ?? '')));
  return rules.filter(mine);
}

/** Deletes `rules` of each family's table by handle, in one nfnetlink batch for all (no process). Throws NetfilterError. */
export function deleteRules(byFamily: Array<[Family, NftRule[]]>, what: string): void {
  deleteNftRules(
    byFamily.flatMap(([f, rules]) => rules.map((r) => ({ family: nftFamily(f), table: TABLE, chain: r.chain, rule: BigInt(r.handle) }))),
    what,
  );
}

/**
 * CHECK for one family: each of the pod's rules is there with the container's comment (by kind and
 * count per chain: nft lists rules in its own spelling). Upstream counts one masquerade rule per
 * mapping (two for IPv6), which its own ADD does not write; this counts what ADD writes.
 */
export function checkFamily(conf: PortMapConf, containerID: string, pod: PodAddress, rules: NftRule[]): void {
  const t = `${nftFamily(pod.family)} ${TABLE}`;
  const ip = formatIP(pod.net.ip);
  const mine = rules.filter((r) => r.comment === containerID);
  for (const m of mappingsFor(pod.family, conf.portMappings)) {
    const chain = m.dst ? HOSTIP_HOSTPORTS : HOSTPORTS;
    if (!mine.some((r) => r.chain === chain && r.protocol === m.protocol && r.port === m.hostPort && r.dnat === ip && (r.daddr ?? undefined) === m.dst))
      throw new Error(`missing hostport rule for ${m.protocol} port ${m.hostPort} to ${ip} in chain ${t} ${chain}`);
  }
  const masq = podRules(conf, pod).filter(([c]) => c === MASQUERADING).length;
  if (mine.filter((r) => r.chain === MASQUERADING).length < masq) throw new Error(`missing masquerade rules in chain ${t} ${MASQUERADING}`);
}
