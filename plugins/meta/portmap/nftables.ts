// The nftables backend: the upstream reference's layout (portmap_nftables.go) — tables `ip
// cni_hostport` and `ip6 cni_hostport`, base chains prerouting/output (rewritten on each ADD with
// the config's conditions) jumping to `hostip_hostports` and `hostports`, and `masquerading` in
// postrouting; every per-pod rule carries the container ID as its comment, which is how DEL finds
// them, whatever the pod's address. Each verb reads each family's table once (`nft -j list table`)
// and writes all families in one `nft -f -` transaction.
// Two spellings differ from upstream: `meta l4proto` (upstream's `ip6 protocol` is no nft syntax, so
// its IPv6 ADD fails) and `dnat to addr:port` (nft 1.0.6, Debian 12's, aborts on `dnat ip addr . port
// to`); the hairpin masquerade covers the pod's subnet with `ct status dnat`, as the iptables
// backend's hairpin mark does, where upstream masquerades only the pod talking to itself.
import { formatCIDR, formatIP, networkOf, type Family } from '../../../shared/ip';
import { configError } from '../../../shared/cni/config';
import { listNftTable, type NftFamily } from '../../../shared/netfilter/nft';
import { mustRunTool } from '../../../shared/netfilter/tool';
import { mappingsFor, type PodAddress, type PortMapConf } from './config';

export const TABLE = 'cni_hostport';
export const HOSTPORTS = 'hostports';
export const HOSTIP_HOSTPORTS = 'hostip_hostports';
export const MASQUERADING = 'masquerading';
const POD_CHAINS = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];

const nftFamily = (f: Family): NftFamily => (f === 4 ? 'ip' : 'ip6');

type Json = Record<string, unknown>;

/** A rule of the table as `nft -j` lists it (the parts used here). */
export interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
  protocol?: string; // from `<proto> dport`
  port?: number;
  daddr?: string;
  dnat?: string; // target address
}

/** The rules of one family's table; [] when the table does not exist. */
export function parseRules(json: string): NftRule[] {
  const doc = JSON.parse(json) as { nftables?: Array<{ rule?: Json }> };
  return (doc.nftables ?? []).flatMap((o) => {
    const r = o.rule;
    if (!r) return [];
    const out: NftRule = { chain: String(r.chain), handle: Number(r.handle), ...(typeof r.comment === 'string' ? { comment: r.comment } : {}) };
    for (const e of (r.expr as Json[] | undefined) ?? []) {
      const m = e.match as { left?: { payload?: { protocol?: string; field?: string } }; right?: unknown } | undefined;
      const p = m?.left?.payload;
      if (p?.field === 'dport' && typeof m?.right === 'number') {
        out.protocol = p.protocol;
        out.port = m.right;
      } else if (p?.field === 'daddr' && typeof m?.right === 'string') out.daddr = m.right;
      const d = e.dnat as { addr?: string } | undefined;
      if (d?.addr) out.dnat = d.addr;
    }
    return [out];
  });
}

/** One `nft -j list table <family> cni_hostport` (none when the table is absent: []). Throws NetfilterError. */
export function readTable(f: Family): NftRule[] {
  const json = listNftTable(nftFamily(f), TABLE);
  return json === null ? [] : parseRules(json);
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
 * DEL without an attachment record (ADDed by upstream's plugin, or the record lost): delete every
 * rule whose comment is the container ID (upstream's rule), found without netns or address. That
 * includes the container's rules of every other portmap network; with a record DEL uses
 * delAttachmentLines instead.
 */
export function delLines(containerID: string, family: Family, rules: NftRule[]): string[] {
  const t = `${nftFamily(family)} ${TABLE}`;
  return rules.filter((r) => r.comment === containerID && POD_CHAINS.includes(r.chain)).map((r) => `delete rule ${t} ${r.chain} handle ${r.handle}`);
}

/**
 * DEL by record and GC: the lines deleting the rules of `containerID` that lead to one of its
 * recorded addresses `pods` (the DNATs to it and its masquerade rules). The same container attached
 * to another network has another address, so its rules there stay (the comment alone cannot tell).
 */
export function delAttachmentLines(containerID: string, pods: PodAddress[], family: Family, rules: NftRule[]): string[] {
  const t = `${nftFamily(family)} ${TABLE}`;
  const ips = new Set(pods.filter((p) => p.family === family).map((p) => formatIP(p.net.ip)));
  const mine = (r: NftRule): boolean =>
    r.comment === containerID && (((r.chain === HOSTPORTS || r.chain === HOSTIP_HOSTPORTS) && ips.has(r.dnat ?? '')) || (r.chain === MASQUERADING && ips.has(r.daddr ?? '')));
  return rules.filter(mine).map((r) => `delete rule ${t} ${r.chain} handle ${r.handle}`);
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
