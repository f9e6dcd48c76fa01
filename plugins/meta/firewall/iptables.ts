// The iptables backend, rule for rule what the reference's plugins/meta/firewall/{iptables,
// ingresspolicy}.go install (chain names, rule text, comments, order), so a node can switch between
// the reference and us in either direction and each DEL removes the other's rules. Unlike the
// reference (one `iptables` exec per check, insert and append: ~15 per ADD), each verb reads the
// filter table once (in-process with iptables-nft, see shared/netfilter/iptables.ts) and applies
// every change in one `iptables-restore -w --noflush` transaction per family: all of it or nothing.
//
// Lines here are in iptables-save's canonical form (matches before -j, comments quoted), so a line
// we would add compares equal to the line the listing shows when the rule is there.
import { bits, formatIP, type IP } from '../../../shared/ip';
import { ipToBytes } from '../../../shared/linux/netlink/ipaddr';
import type { IptTable as FilterTable, RuleScope } from '../../../shared/netfilter/iptables';
import type { IngressPolicy } from './config';

export const PRIV_CHAIN = 'CNI-FORWARD';
export const STAGE1_CHAIN = 'CNI-ISOLATION-STAGE-1';
export const STAGE2_CHAIN = 'CNI-ISOLATION-STAGE-2';

const comment = (text: string): string => `-m comment --comment "${text}"`;
const FILTER_RULE = `${comment('CNI firewall plugin rules')} -j ${PRIV_CHAIN}`;
const adminRule = (admin: string): string => `${comment('CNI firewall plugin admin overrides')} -j ${admin}`;
const policyComment = (p: IngressPolicy): string => comment(`CNI firewall plugin rules (ingressPolicy: ${p})`);
const SHARED_COMMENT = comment('CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)');
// Releases before `isolated` (1.1.x, Debian's) comment the shared isolation rules with this; such a
// rule already in the table is taken as ours, so a node moving between them gets no second copy.
const OLD_SHARED_COMMENT = comment('CNI firewall plugin rules (ingressPolicy: same-bridge)');

/** The reference's getPrivChainRules: replies in, everything out, for one pod address (/32, /128). */
export function podRules(ip: IP): string[] {
  const host = `${formatIP(ip)}/${bits(ip.family)}`;
  return [`-d ${host} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-s ${host} -j ACCEPT`];
}

export interface IsolationPlan {
  bridge: string;
  policy: Exclude<IngressPolicy, 'open'>;
}

/** What ADD installs for one family: the pod's addresses of that family and the bridge isolation, if any. */
export interface AddPlan {
  adminChain: string;
  ips: IP[];
  isolation?: IsolationPlan;
}

/** Builds restore lines against a table, remembering what earlier lines of the same script create. */
class Script {
  readonly lines: string[] = [];
  private readonly chains: Set<string>;
  private readonly rules: Set<string>;

  constructor(t: FilterTable) {
    this.chains = new Set(t.chains);
    this.rules = new Set(t.rules);
  }

  /** utils.EnsureChain. `-N`, not `:chain`: with --noflush a declared chain is flushed, and `-N` fails the whole transaction if a concurrent ADD created it first (we then re-read and retry). */
  ensureChain(chain: string): void {
    if (this.chains.has(chain)) return;
    this.chains.add(chain);
    this.lines.push(`-N ${chain}`);
  }

  /** utils.InsertUnique: the rule at the top (`prepend`) or the end of `chain`, unless it is there. */
  ensureRule(chain: string, rule: string, prepend: boolean): void {
    const line = `-A ${chain} ${rule}`;
    if (this.rules.has(line) || this.rules.has(line.replace(SHARED_COMMENT, OLD_SHARED_COMMENT))) return;
    this.rules.add(line);
    this.lines.push(prepend ? `-I ${chain} 1 ${rule}` : line);
  }
}

/**
 * What addLines looks at (readTable's `rulesOf`): FORWARD's jumps to CNI-FORWARD and the isolation
 * chain, the isolation chains, and of CNI-FORWARD, which holds two rules per pod, the jump to the
 * admin chain and the rules matching `ips`; of the admin chain nothing but its name (its rules are
 * the admin's). A node's filter table also holds Docker's and kube-proxy's chains and rules, which
 * ADD need not decode.
 */
export const addScope = (adminChain: string, ips: IP[]): RuleScope[] => [
  { chain: 'FORWARD', mentioning: [PRIV_CHAIN, STAGE1_CHAIN] },
  { chain: PRIV_CHAIN, mentioning: [adminChain, ...ips.map(ipToBytes)] },
  { chain: adminChain, mentioning: [] },
  STAGE1_CHAIN,
  STAGE2_CHAIN,
];

/** What delLines looks at: CNI-FORWARD's rules matching `ips`. */
export const delScope = (ips: IP[]): RuleScope[] => [{ chain: PRIV_CHAIN, mentioning: ips.map(ipToBytes) }];

/**
 * The restore lines (without `*filter`/`COMMIT`) that make `t` hold what the reference's ADD
 * installs: setupChains, the pod rules, then setupIsolationChains. [] when it all is there already.
 * `t` needs what addScope names only.
 */
export function addLines(t: FilterTable, plan: AddPlan): string[] {
  if (!plan.ips.length) return [];
  const s = new Script(t);
  s.ensureChain(PRIV_CHAIN);
  s.ensureChain(plan.adminChain);
  s.ensureRule('FORWARD', FILTER_RULE, true);
  s.ensureRule(PRIV_CHAIN, adminRule(plan.adminChain), true);
  for (const ip of plan.ips) for (const r of podRules(ip)) s.ensureRule(PRIV_CHAIN, r, false);
  const iso = plan.isolation;
  if (iso) {
    const br = iso.bridge;
    s.ensureChain(STAGE1_CHAIN);
    s.ensureChain(STAGE2_CHAIN);
    // Before the jump to CNI-FORWARD: isolation drops must come before the pod accepts.
    s.ensureRule('FORWARD', `${SHARED_COMMENT} -j ${STAGE1_CHAIN}`, true);
    s.ensureRule(STAGE1_CHAIN, `-i ${br} ! -o ${br} ${policyComment(iso.policy)} -j ${STAGE2_CHAIN}`, true);
    if (iso.policy === 'isolated') s.ensureRule(STAGE1_CHAIN, `-i ${br} -o ${br} ${policyComment(iso.policy)} -j DROP`, true);
    s.ensureRule(STAGE1_CHAIN, `${SHARED_COMMENT} -j RETURN`, false);
    s.ensureRule(STAGE2_CHAIN, `-o ${br} ${SHARED_COMMENT} -j DROP`, true);
    s.ensureRule(STAGE2_CHAIN, `${SHARED_COMMENT} -j RETURN`, false);
  }
  return s.lines;
}

/**
 * The lines that delete the pod rules of `ips` from CNI-FORWARD (every copy the table has), as the
 * reference's delRules; chains, jumps and isolation rules stay (other pods, other bridges use them:
 * the reference keeps them too). [] when none is there.
 */
export function delLines(t: FilterTable, ips: IP[]): string[] {
  const want = new Set(ips.flatMap((ip) => podRules(ip).map((r) => `-A ${PRIV_CHAIN} ${r}`)));
  return t.rules.filter((l) => want.has(l)).map((l) => `-D${l.slice(2)}`);
}

const POD_RULE_RE = new RegExp(`^-A ${PRIV_CHAIN} -s (\\S+)/(?:32|128) -j ACCEPT$`);

/** The addresses CNI-FORWARD holds pod rules for (their `-s <ip> -j ACCEPT` rule), whoever wrote them. */
export function podAddressesInTable(t: FilterTable): string[] {
  return t.rules.flatMap((l) => POD_RULE_RE.exec(l)?.[1] ?? []);
}

/** The reference's checkRules, with its messages (rules printed as Go prints the argument list). */
export function checkTable(t: FilterTable, adminChain: string, ips: IP[]): void {
  if (!ips.length) return;
  const has = new Set(t.rules);
  const args = (rule: string): string => `[${rule.replace(/"/g, '')}]`;
  for (const c of [PRIV_CHAIN, adminChain]) if (!t.chains.has(c)) throw new Error(`chain ${c} not found in table filter`);
  if (!has.has(`-A FORWARD ${FILTER_RULE}`)) throw new Error(`expected FORWARD rule ${args(FILTER_RULE)} not found`);
  if (!has.has(`-A ${PRIV_CHAIN} ${adminRule(adminChain)}`)) throw new Error(`expected ${PRIV_CHAIN} rule ${args(adminRule(adminChain))} not found`);
  for (const ip of ips) for (const r of podRules(ip)) if (!has.has(`-A ${PRIV_CHAIN} ${r}`)) throw new Error(`expected rule ${args(r)} not found`);
}
