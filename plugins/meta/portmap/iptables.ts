// The iptables backend, rule for rule what the reference's portmap.go/chain.go install (nat table):
//   PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//   CNI-HOSTPORT-DNAT:  -p tcp -m comment --comment "dnat name: ... id: ..." -m multiport --dports 80,443 -j CNI-DN-<hash>
//   CNI-DN-<hash>:      hairpin and localhost → CNI-HOSTPORT-SETMARK, then -j DNAT --to-destination ip:port
//   POSTROUTING (first): -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
// with the same chain names, hash and comments, so rules written by either plugin are found and removed
// by the other. Where the reference execs iptables once per rule and check, each verb here reads the
// table once (in-process with iptables-nft, see shared/netfilter/iptables.ts) and writes once
// (`iptables-restore -w --noflush`): the change applies whole or not at all. The lines are written as iptables-save prints them, so a listed rule
// compares equal to a generated one.
import { bits, formatIP, networkOf, formatCIDR, type Family } from '../../../shared/ip';
import { chainExists, parseSave as parseTable, quoteArg, readTable, splitArgs, type IptTable, type RuleScope } from '../../../shared/netfilter/iptables';
import { chainName } from '../../../shared/netfilter/masquerade-iptables';
import { configError } from '../../../shared/cni/config';
import { mappingsFor, type PodAddress, type PortMapConf, type PortMapping } from './config';

export const TOP_DNAT = 'CNI-HOSTPORT-DNAT';
export const SETMARK = 'CNI-HOSTPORT-SETMARK';
export const MASQ = 'CNI-HOSTPORT-MASQ';
const MULTIPORT_MAX = 15; // ports per multiport match
const COMMENT_MAX = 255; // xt_comment's limit (the reference's trimComment)

export const dnatChain = (network: string, containerID: string): string => chainName(network, containerID, 'DN-');

/** Whether the pod's DNAT chain is in the `family` nat table: true/false with iptables-nft (no process), undefined otherwise. Throws NetfilterError. */
export const chainLeft = (network: string, containerID: string, family: Family): boolean | undefined => chainExists(family, 'nat', dnatChain(network, containerID));
// CNI-SN-<hash>: an old version's per-pod SNAT chain (jumped to from CNI-HOSTPORT-SNAT); DEL still removes it.
const oldSnatChain = (network: string, containerID: string): string => chainName(network, containerID, 'SN-');

/** The entry rules' comment: Go's `dnat name: "%s" id: "%s"`, cut to 255 as the reference does. */
export function dnatComment(network: string, containerID: string): string {
  const c = `dnat name: "${network}" id: "${containerID}"`;
  return c.length <= COMMENT_MAX ? c : `${c.slice(0, COMMENT_MAX - 2)}...`;
}

export { quoteArg, splitArgs } from '../../../shared/netfilter/iptables';

/** The nat table of one family as iptables-save lists it. */
export type NatTable = IptTable;

/** Parses `iptables-save -t nat` output (only the nat table's chain and rule lines are kept). */
export const parseSave = (text: string): NatTable => parseTable(text, 'nat');

const markDef = (bit: number): string => {
  const v = `0x${(1 << bit >>> 0).toString(16)}`;
  return `${v}/${v}`;
};

/** Rules of the chains every pod shares, as iptables-save lists them; `prepend` ones go first in their chain. */
export function sharedRules(conf: PortMapConf): Array<{ chain: string; line: string; prepend?: boolean }> {
  const out: Array<{ chain: string; line: string; prepend?: boolean }> = [
    { chain: TOP_DNAT, line: `-A PREROUTING -m addrtype --dst-type LOCAL -j ${TOP_DNAT}` },
    { chain: TOP_DNAT, line: `-A OUTPUT -m addrtype --dst-type LOCAL -j ${TOP_DNAT}` },
  ];
  if (conf.snat && !conf.externalSetMarkChain) {
    const mark = markDef(conf.markMasqBit);
    out.push(
      { chain: SETMARK, line: `-A ${SETMARK} -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark ${mark}` },
      { chain: MASQ, line: `-A ${MASQ} -m mark --mark ${mark} -j MASQUERADE` },
      // Prepended: the bridge's and ptp's masquerade rules in POSTROUTING would otherwise come first.
      { chain: MASQ, line: `-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j ${MASQ}`, prepend: true },
    );
  }
  return out;
}

/** The per-pod chain's entry rules in CNI-HOSTPORT-DNAT: one per protocol and 15 ports, protocols sorted. */
export function entryRules(conf: PortMapConf, containerID: string, family: Family): string[] {
  const chain = dnatChain(conf.name, containerID);
  const comment = quoteArg(dnatComment(conf.name, containerID));
  const conditions = (family === 4 ? conf.conditionsV4 : conf.conditionsV6).map(quoteArg);
  // Every mapping's port, whatever its hostIP's family: the reference groups before filtering.
  const byProto = new Map<string, number[]>();
  for (const m of conf.portMappings) byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  const out: string[] = [];
  for (const proto of [...byProto.keys()].sort()) {
    const ports = byProto.get(proto)!;
    for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
      const spec = ports.slice(i, i + MULTIPORT_MAX).join(',');
      out.push([`-A ${TOP_DNAT} -p ${proto} -m comment --comment ${comment} -m multiport --dports ${spec}`, ...conditions, `-j ${chain}`].join(' '));
    }
  }
  return out;
}

/** The per-pod chain's rules: per mapping, hairpin and (IPv4) localhost marks when snat, then the DNAT. */
export function podChainRules(conf: PortMapConf, containerID: string, pod: PodAddress): string[] {
  const chain = dnatChain(conf.name, containerID);
  const f = pod.family;
  const setMark = conf.externalSetMarkChain ?? SETMARK;
  const target = f === 4 ? `${formatIP(pod.net.ip)}` : `[${formatIP(pod.net.ip)}]`;
  const out: string[] = [];
  for (const m of mappingsFor(f, conf.portMappings)) {
    const dst = m.dst ? ` -d ${m.dst}/${bits(f)}` : '';
    const match = `-p ${m.protocol} -m ${m.protocol} --dport ${m.hostPort}`;
    if (conf.snat) {
      // The pod's whole subnet: prevResult's address with its prefix, as the reference passes it.
      const from = conf.masqAll ? (f === 4 ? '0.0.0.0/0' : '::/0') : formatCIDR(networkOf(pod.net));
      out.push(`-A ${chain} -s ${from}${dst} ${match} -j ${setMark}`);
      if (f === 4 && !conf.masqAll) out.push(`-A ${chain} -s 127.0.0.1/32${dst} ${match} -j ${setMark}`);
    }
    out.push(`-A ${chain}${dst} ${match} -j DNAT --to-destination ${target}:${m.containerPort}`);
  }
  // iptables-save omits a 0.0.0.0/0 (::/0) source match.
  return out.map((l) => l.replace(/ -s (0\.0\.0\.0|::)\/0/, ''));
}

/** A DNAT rule of some per-pod chain, as listed. */
interface ListedDnat {
  chain: string;
  protocol: string;
  port: number;
  dst: string | undefined; // address without prefix, or undefined for any
}

function listedDnats(nat: NatTable): ListedDnat[] {
  const out: ListedDnat[] = [];
  for (const l of nat.rules) {
    const m = /^-A (CNI-DN-[0-9a-f]+) (.*)-j DNAT /.exec(l);
    if (!m) continue;
    const proto = /-p (\S+)/.exec(m[2]!)?.[1];
    const port = /--dport (\d+)/.exec(m[2]!)?.[1];
    if (!proto || !port) continue;
    out.push({ chain: m[1]!, protocol: proto, port: Number(port), dst: /-d (\S+?)(?:\/\d+)? /.exec(m[2]!)?.[1] });
  }
  return out;
}

/** Who owns a per-pod chain: from the comment of its entry rules (`dnat name: "n" id: "i"`). */
function owners(nat: NatTable): Map<string, { network: string; containerID: string }> {
  const out = new Map<string, { network: string; containerID: string }>();
  for (const l of nat.rules) {
    if (!l.startsWith(`-A ${TOP_DNAT} `)) continue;
    const args = splitArgs(l);
    const verdict = args.includes('-j') ? args.indexOf('-j') : args.indexOf('-g');
    const chain = verdict < 0 ? undefined : args[verdict + 1];
    const comment = args.includes('--comment') ? args[args.indexOf('--comment') + 1] : undefined;
    const m = comment ? /^dnat name: "(.*)" id: "(.*)"$/.exec(comment) : null;
    if (chain && m) out.set(chain, { network: m[1]!, containerID: m[2]! });
  }
  return out;
}

// What ADD reads before any other pod's chain: addLines looks for the shared rules in the built-in
// chains (only their jumps to CNI-HOSTPORT-DNAT and -MASQ, and any to the pod's chain, which it
// replaces: the bridge puts a jump per pod in POSTROUTING, kube-proxy and Docker theirs in all
// three), CNI-HOSTPORT-SETMARK and -MASQ, replaces the pod's entry rules in CNI-HOSTPORT-DNAT, whose
// other entry rules say which pods' chains may conflict, and rewrites the pod's chain (`own`: a
// repeated ADD's undo puts its old rules back).
const addScope = (own: string): RuleScope[] => [
  { chain: 'PREROUTING', mentioning: [TOP_DNAT, own] },
  { chain: 'OUTPUT', mentioning: [TOP_DNAT, own] },
  { chain: 'POSTROUTING', mentioning: [MASQ, own] },
  TOP_DNAT,
  SETMARK,
  MASQ,
  own,
];

/** Whether `spec` (multiport's `80,8000:8080`) names `port`. */
const inPortList = (spec: string, port: number): boolean =>
  spec.split(',').some((p) => {
    const [lo, hi = lo] = p.split(':').map(Number);
    return port >= lo! && port <= hi!;
  });

/**
 * ADD's read of the `family` nat table (over netlink, some chains only): addScope's, then every
 * other pod's chain whose entry rule sends one of the mappings' protocol and host port there
 * (candidateChains), for checkConflicts. On a busy node that is a few
 * chains instead of every pod's rules, whose decoding made an ADD slower than the reference's
 * iptables. Throws NetfilterError.
 */
export function readForAdd(conf: PortMapConf, containerID: string, family: Family): NatTable {
  const scope = addScope(dnatChain(conf.name, containerID));
  const first = readTable(family, 'nat', scope);
  if (!first.scope) return first; // iptables-save listed everything
  const more = candidateChains(conf, first).filter((c) => !first.scope!.has(c));
  return more.length ? readTable(family, 'nat', [...scope, ...more]) : first;
}

/**
 * The chains CNI-HOSTPORT-DNAT's rules in `nat` send (`-j` or `-g`) one of `conf`'s protocol and
 * host port pairs to, or may (a rule without `-p` or `--dports`, or with `! --dports`).
 */
function candidateChains(conf: PortMapConf, nat: NatTable): string[] {
  const out = new Set<string>();
  for (const l of nat.rules) {
    if (!l.startsWith(`-A ${TOP_DNAT} `)) continue;
    const args = splitArgs(l);
    const at = (flag: string): string | undefined => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
    const chain = at('-j') ?? at('-g');
    if (!chain?.startsWith('CNI-')) continue;
    const proto = at('-p');
    const ports = at('--dports');
    const negated = args[args.indexOf('--dports') - 1] === '!';
    if (!proto || !ports || negated || conf.portMappings.some((m) => m.protocol === proto && inPortList(ports, m.hostPort))) out.add(chain);
  }
  return [...out];
}

/**
 * Throws CniError code 7 naming the mapping's field, the port and both containers when another
 * pod's chain already DNATs the same protocol and host port on an overlapping host address (the
 * reference silently lets the last ADD win, issue 12).
 */
export function checkConflicts(conf: PortMapConf, containerID: string, family: Family, nat: NatTable): void {
  const ours = dnatChain(conf.name, containerID);
  const taken = listedDnats(nat).filter((d) => d.chain !== ours);
  if (!taken.length) return;
  const who = owners(nat);
  conf.portMappings.forEach((m: PortMapping, i) => {
    const mine = mappingsFor(family, [m])[0];
    if (!mine) return;
    const hit = taken.find((d) => d.protocol === m.protocol && d.port === m.hostPort && (!d.dst || !mine.dst || d.dst === mine.dst));
    if (!hit) return;
    const o = who.get(hit.chain);
    const other = o ? `container ${o.containerID} (network ${o.network})` : `chain ${hit.chain}`;
    throw configError(
      `runtimeConfig.portMappings[${i}].hostPort`,
      m.hostPort,
      `host port ${m.hostPort}/${m.protocol}${mine.dst ? ` on ${mine.dst}` : ''} is already mapped to ${other}; container ${containerID} cannot map it too`,
    );
  });
}

/**
 * The restore lines that (re)install the pod's forwarding for one family, given the table now:
 * shared chains and rules only when missing, the pod's old entry rules removed and its chain
 * rewritten (declaring an existing chain under --noflush flushes it), so a repeated ADD or one after
 * the pod's address changed leaves exactly one set of rules. A shared chain is created with `-N`,
 * never declared: if another ADD created it since `nat` was read, the transaction fails whole
 * (and is built again, see shared/netfilter/iptables.ts transact) instead of flushing that pod's entry rules.
 */
export function addLines(conf: PortMapConf, containerID: string, pod: PodAddress, nat: NatTable): string[] {
  const chain = dnatChain(conf.name, containerID);
  const decl = [TOP_DNAT, ...(conf.snat && !conf.externalSetMarkChain ? [SETMARK, MASQ] : [])].filter((c) => !nat.chains.has(c)).map((c) => `-N ${c}`);
  decl.push(`:${chain} - [0:0]`);
  const existing = new Set(nat.rules);
  const body: string[] = [];
  for (const r of sharedRules(conf)) {
    if (existing.has(r.line)) continue;
    body.push(r.prepend ? r.line.replace(/^-A (\S+)/, '-I $1 1') : r.line);
  }
  body.push(...removeJumps(nat, new Set([chain])));
  body.push(...podChainRules(conf, containerID, pod), ...entryRules(conf, containerID, pod.family));
  return [...decl, ...body];
}

/** `-D` lines for every rule that jumps to one of `chains`. */
function removeJumps(nat: NatTable, chains: Set<string>): string[] {
  return nat.rules.filter((l) => chains.has(/ -j (\S+)$/.exec(l)?.[1] ?? '')).map((l) => `-D${l.slice(2)}`);
}

/** The lines removing `chains` (and every jump to them) that exist in `nat`. */
function removalLines(nat: NatTable, chains: Set<string>): string[] {
  const present = new Set([...chains].filter((c) => nat.chains.has(c)));
  return [...removeJumps(nat, present), ...[...present].flatMap((c) => [`-F ${c}`, `-X ${c}`])];
}

/**
 * What DEL reads (readTable's rulesOf): whether the pod's chains exist, and the rules that jump to
 * them in the chains that hold such jumps, CNI-HOSTPORT-DNAT (to CNI-DN-<hash>) and an old version's
 * CNI-HOSTPORT-SNAT (to CNI-SN-<hash>). A jump from anywhere else makes the deletion fail, and the
 * rebuild on the whole table (transact) removes it too.
 */
export function delScope(network: string, containerID: string): RuleScope[] {
  const chains = [dnatChain(network, containerID), oldSnatChain(network, containerID)];
  return [...[TOP_DNAT, 'CNI-HOSTPORT-SNAT'].map((chain) => ({ chain, mentioning: chains })), ...chains.map((chain) => ({ chain, mentioning: [] }))];
}

/** The lines removing the pod's chain (and an old version's CNI-SN- chain), found by name alone: what delScope reads is enough. */
export function delLines(network: string, containerID: string, nat: NatTable): string[] {
  return removalLines(nat, new Set([dnatChain(network, containerID), oldSnatChain(network, containerID)]));
}

/**
 * GC: the lines removing per-pod chains of `network` whose container is not in `validIDs`. The
 * chain name is a hash, so the owner comes from the entry rules' comment and must hash to the chain.
 */
export function gcLines(network: string, validIDs: Set<string>, nat: NatTable): string[] {
  const stale = new Set<string>();
  for (const [chain, o] of owners(nat)) if (o.network === network && !validIDs.has(o.containerID) && dnatChain(network, o.containerID) === chain) stale.add(chain);
  return removalLines(nat, stale);
}

/**
 * CHECK for one family: the pod's chain exists with each expected rule, its entry rules (comment,
 * protocol, ports; not the conditions, which iptables may list in another spelling) jump to it, and
 * the shared chains' rules are in place. The
 * reference returns success when the pod's chain is missing; that is a failure here. Throws Error
 * naming the missing rule.
 */
export function checkFamily(conf: PortMapConf, containerID: string, pod: PodAddress, nat: NatTable): void {
  const chain = dnatChain(conf.name, containerID);
  const fam = pod.family === 4 ? 'IPv4' : 'IPv6';
  if (!nat.chains.has(chain)) throw new Error(`chain ${chain} not found in ${fam} iptables table nat`);
  const have = new Set(nat.rules);
  for (const l of [...sharedRules(conf).map((r) => r.line), ...podChainRules(conf, containerID, pod)])
    if (!have.has(l)) throw new Error(`rule "${l}" not found in ${fam} iptables table nat`);
  // Entry rules by their arguments: conditions may be listed in another order or spelling than given.
  const listed = nat.rules.filter((l) => l.startsWith(`-A ${TOP_DNAT} `) && l.endsWith(` -j ${chain}`)).map((l) => new Set(splitArgs(l)));
  for (const want of entryRules(conf, containerID, pod.family)) {
    const args = splitArgs(want).filter((a) => !(conf.conditionsV4.includes(a) || conf.conditionsV6.includes(a)));
    if (!listed.some((have) => args.every((a) => have.has(a)))) throw new Error(`rule "${want}" not found in ${fam} iptables table nat`);
  }
}
