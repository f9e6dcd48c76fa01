// The iptables backend, rule for rule what the reference's plugins/meta/firewall/{iptables,
// ingresspolicy}.go install (chain names, rule text, comments, order), so a node can switch between
// the reference and us in either direction and each DEL removes the other's rules. Unlike the
// reference (one `iptables` exec per check, insert and append: ~15 per ADD), each verb reads the
// filter table once with `iptables-save -t filter` and applies every change in one
// `iptables-restore -w --noflush` transaction per family: all of it or nothing.
//
// Lines here are in iptables-save's canonical form (matches before -j, comments quoted), so a line
// we would add compares equal to the line the listing shows when the rule is there.
import { formatIP, type Family, type IP } from '../../../shared/ip';
import { mustRunTool, NetfilterError } from '../../../shared/netfilter/tool';
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
  const host = `${formatIP(ip)}/${ip.family === 4 ? 32 : 128}`;
  return [`-d ${host} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-s ${host} -j ACCEPT`];
}

/** The filter table as `iptables-save -t filter` shows it: chain names and `-A` lines. */
export interface FilterTable {
  chains: Set<string>;
  rules: string[];
}

export function parseFilterTable(save: string): FilterTable {
  const chains = new Set<string>();
  const rules: string[] = [];
  let inFilter = false;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) inFilter = line === '*filter';
    else if (!inFilter) continue;
    else if (line.startsWith(':')) chains.add(line.slice(1).split(' ')[0]!);
    else if (line.startsWith('-A ')) rules.push(line);
  }
  return { chains, rules };
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
 * The restore lines (without `*filter`/`COMMIT`) that make `t` hold what the reference's ADD
 * installs: setupChains, the pod rules, then setupIsolationChains. [] when it all is there already.
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

/**
 * The lines that take back a transaction of addLines' `added` lines (as transact applied them),
 * against the table `t` as it is now: its rules still there deleted in reverse order, then the
 * chains it created (`-N`) deleted, each only when nothing else is in it or jumps to it (a process
 * without our lock, e.g. the reference plugin, may have used it since; a flush would drop its
 * rules). Chains that were there before, and rules it did not add, stay. For ADD's rollback.
 */
export function undoLines(added: readonly string[], t: FilterTable): string[] {
  const there = new Set(t.rules);
  const rules: string[] = [];
  const removed = new Set<string>();
  const chains: string[] = [];
  for (const l of [...added].reverse()) {
    const [op, chain] = l.split(' ', 2) as [string, string];
    if (op === '-N') {
      chains.push(chain);
      continue;
    }
    const rule = op === '-I' ? `-A ${chain} ${l.slice(`-I ${chain} 1 `.length)}` : l; // addLines inserts at 1 only
    if (!there.has(rule) || removed.has(rule)) continue; // already gone
    removed.add(rule);
    rules.push(`-D${rule.slice(2)}`);
  }
  const left = t.rules.filter((r) => !removed.has(r));
  const unused = (c: string): boolean => t.chains.has(c) && !left.some((r) => r.startsWith(`-A ${c} `) || new RegExp(` -[jg] ${c}( |$)`).test(r));
  return [...rules, ...chains.filter(unused).map((c) => `-X ${c}`)];
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

const saveTool = (f: Family): string => (f === 4 ? 'iptables-save' : 'ip6tables-save');
const restoreTool = (f: Family): string => (f === 4 ? 'iptables-restore' : 'ip6tables-restore');

/** One `iptables-save -t filter` (ip6tables-save for 6). Throws NetfilterError. */
export function readFilterTable(f: Family): FilterTable {
  return parseFilterTable(mustRunTool(saveTool(f), ['-t', 'filter'], 'reading the filter table'));
}

// Each lost race means another process created one of our (at most 4) chains: a few re-reads settle it.
const ATTEMPTS = 5;

/**
 * Reads the table, computes the lines and applies them in one transaction. When the transaction
 * fails because another process changed the table in between (a concurrent ADD created a chain
 * first), re-reads and tries again; a failure on an unchanged table is thrown (NetfilterError).
 * `read`: the table as the caller just read it (saves the first read). Returns the lines applied
 * ([] when there was nothing to do), for undoLines.
 */
export function transact(f: Family, what: string, lines: (t: FilterTable) => string[], read?: FilterTable): string[] {
  let t = read ?? readFilterTable(f);
  for (let attempt = 1; ; attempt++) {
    const l = lines(t);
    if (!l.length) return [];
    try {
      mustRunTool(restoreTool(f), ['-w', '--noflush'], what, ['*filter', ...l, 'COMMIT', ''].join('\n'));
      return l;
    } catch (e) {
      if (!(e instanceof NetfilterError) || attempt >= ATTEMPTS) throw e;
      const again = readFilterTable(f);
      if (sameTable(again, t)) throw e;
      t = again;
    }
  }
}

const sameTable = (a: FilterTable, b: FilterTable): boolean =>
  a.rules.join('\n') === b.rules.join('\n') && [...a.chains].join(' ') === [...b.chains].join(' ');
