// The iptables side every rule-writing plugin shares (bridge/ptp masquerade, portmap, firewall): a
// table read as iptables-save lists it, one `iptables-restore -w --noflush` transaction per change,
// the rebuild-and-retry when a concurrent writer changed the table in between, and the undo of a
// transaction. With iptables-nft the table is read in-process over nfnetlink (xtables-nft.ts), so a
// verb execs only its write; with iptables-legacy, or a rule the in-process reader cannot print, one
// `iptables-save -t <table>` reads it as before.
import { realpathSync } from 'node:fs';
import { basename } from 'node:path';
import type { Family } from '../ip';
import { EACCES, EAFNOSUPPORT, EBUSY, EEXIST, EINVAL, ENOENT, EOPNOTSUPP, EPERM, EPROTONOSUPPORT } from '../linux/netlink/errno';
import { NetlinkError } from '../linux/netlink/errors';
import { NFPROTO_IPV4, NFPROTO_IPV6, nftAdd, nftChainExists, nftDelete, nftGeneration, nftListChains, nftListRules, type NftAddition, type NftChain, type NftDeletion, type NftRuleMsg } from '../linux/netlink/nftables';
import { netfilterSocket } from './nfnl';
import { findTool, mustRunTool, NetfilterError } from './tool';
import { encodeRule, saveLines } from './xtables-nft';

export type IptTableName = 'nat' | 'filter';

/** Each table's built-in chains, in the order iptables-save lists them. */
const BUILTINS: Record<IptTableName, readonly string[]> = { nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], filter: ['INPUT', 'FORWARD', 'OUTPUT'] };

/**
 * A table as `iptables-save -t <table>` lists it: its chain names and its `-A` lines in order.
 * `nft`: when it was read over netlink, the ruleset generation and each line's rule handles (in
 * order), so that a transaction of deletions can be applied in-process (restore).
 */
export interface IptTable {
  chains: Set<string>;
  rules: string[];
  /**
   * When read for some chains only (readTable's `rulesOf`): those chains, the only ones `rules` lists
   * (some of them only in part) and, with the built-in chains, the only ones `chains` can hold.
   */
  scope?: ReadonlySet<string>;
  nft?: { gen: number; handles: Map<string, bigint[]> };
}

/**
 * What a caller reads of a table (readTable's `rulesOf`): a chain's name for whether it exists and
 * all its rules, or a chain with `mentioning`, for only its rules whose kernel message holds one of
 * those strings or byte strings (the chain a rule jumps to, an address it matches), which are all
 * the caller needs of a chain with a rule per pod; `mentioning: []` for whether it exists alone.
 */
export type RuleScope = string | { chain: string; mentioning: ReadonlyArray<string | Uint8Array> };

const scopeChain = (s: RuleScope): string => (typeof s === 'string' ? s : s.chain);

const famName = (f: Family): string => (f === 4 ? 'IPv4' : 'IPv6');
export const saveTool = (f: Family): string => (f === 4 ? 'iptables-save' : 'ip6tables-save');
export const restoreTool = (f: Family): string => (f === 4 ? 'iptables-restore' : 'ip6tables-restore');

/** Parses iptables-save output, keeping the chain (`:NAME ...`) and rule (`-A ...`) lines of `table`. */
export function parseSave(text: string, table: IptTableName): IptTable {
  const chains = new Set<string>();
  const rules: string[] = [];
  let inTable = !text.includes('\n*') && !text.startsWith('*'); // a bare fragment (tests) is the table itself
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) inTable = line === `*${table}`;
    else if (!inTable) continue;
    else if (line.startsWith(':')) chains.add(line.slice(1).split(' ')[0]!);
    else if (line.startsWith('-A ')) rules.push(line);
  }
  return { chains, rules };
}

/** An argument as iptables-save prints it: double-quoted (\\ and \" escaped) when it has space or quotes. */
export function quoteArg(s: string): string {
  return /^[^\s"'\\]+$/.test(s) ? s : `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Splits a listed rule into arguments, undoing quoteArg. */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

const nftBackend = new Map<Family, boolean>();

/** Whether readTable reads `f`'s tables in-process (iptables-nft) rather than with iptables-save. */
export const readsInProcess = (f: Family): boolean => iptablesIsNft(f);

/**
 * Whether `iptables-restore` here is iptables-nft (xtables-nft-multi), whose tables live in
 * nf_tables and can be listed over netlink. Debian's alternatives and RHEL both point the name at
 * the multi-call binary, so its real name says which backend it is. Unknown counts as no.
 */
function iptablesIsNft(f: Family): boolean {
  let nft = nftBackend.get(f);
  if (nft === undefined) {
    const tool = findTool(restoreTool(f));
    try {
      nft = tool !== null && basename(realpathSync(tool)) === 'xtables-nft-multi';
    } catch {
      nft = false;
    }
    nftBackend.set(f, nft);
  }
  return nft;
}

/**
 * The table read over nfnetlink, as iptables-save would list it, or undefined when it cannot be
 * (no nf_tables access, a rule outside the decoder's subset, the ruleset changing under three
 * reads in a row): the caller then execs iptables-save. A table that does not exist is empty, as
 * iptables-save shows it (restore creates it with its base chains). With `rulesOf`, only the chains
 * it names are looked up (one request each: a node's table may hold thousands, kube-proxy's, and
 * listing them all costs more than a verb's rules) and only the rules it names are read (one dump
 * per chain, filtered by the kernel).
 */
function readOverNetlink(f: Family, table: IptTableName, rulesOf?: readonly RuleScope[]): IptTable | undefined {
  try {
    const nl = netfilterSocket();
    const family = f === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
    const some = (s: RuleScope) => (typeof s === 'string' ? nftListRules(nl, family, table, s) : nftListRules(nl, family, table, s.chain, s.mentioning));
    const scoped = rulesOf && [...new Map(rulesOf.map((s) => [scopeChain(s), s] as const)).values()];
    for (let attempt = 0; attempt < 3; attempt++) {
      // The generation before and after tells whether the requests saw one ruleset.
      const gen = nftGeneration(nl);
      let chains: NftChain[];
      let rules: NftRuleMsg[];
      if (scoped) {
        const there = scoped.filter((s) => nftChainExists(nl, family, table, scopeChain(s)));
        chains = there.map((s) => ({ name: scopeChain(s) }));
        rules = there.flatMap(some);
      } else {
        chains = nftListChains(nl, family, table);
        rules = chains.length ? nftListRules(nl, family, table) : [];
      }
      if (nftGeneration(nl) !== gen) continue;
      const t = saveLines(f, BUILTINS[table], chains, rules);
      const handles = new Map<string, bigint[]>();
      for (const r of t.rules) handles.set(r.line, [...(handles.get(r.line) ?? []), r.handle]);
      return { chains: new Set(t.chains), rules: t.rules.map((r) => r.line), ...(rulesOf ? { scope: new Set(rulesOf.map(scopeChain)) } : {}), nft: { gen, handles } };
    }
    return undefined;
  } catch {
    // Undecodable, or no nf_tables access here: iptables-save reads it, or reports why it cannot.
    return undefined;
  }
}

/**
 * Whether chain `chain` of `table` exists, asked over netlink with iptables-nft (one request, no
 * process); undefined with iptables-legacy, where only iptables-save could tell. Throws
 * NetfilterError when the kernel cannot be asked.
 */
export function chainExists(f: Family, table: IptTableName, chain: string): boolean | undefined {
  if (!iptablesIsNft(f)) return undefined;
  try {
    return nftChainExists(netfilterSocket(), f === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, table, chain);
  } catch (e) {
    throw new NetfilterError('nf_tables', `looking up chain ${chain} of the ${famName(f)} ${table} table: ${(e as Error).message}`, 'other', { cause: e });
  }
}

/**
 * Reads one table of family `f`: over netlink with iptables-nft (no process), else one
 * `iptables-save -t <table>` (ip6tables-save for 6). `rulesOf`: what the caller looks at (see
 * RuleScope), every chain whose existence or rules it asks about. Over netlink only that is read
 * (decoding every pod's rules is most of a read on a busy node, listing kube-proxy's chains more)
 * and `scope` names those chains; iptables-save lists everything, which is a superset. Throws
 * NetfilterError when the tool is missing or fails.
 */
export function readTable(f: Family, table: IptTableName, rulesOf?: readonly RuleScope[]): IptTable {
  if (iptablesIsNft(f)) {
    const t = readOverNetlink(f, table, rulesOf);
    if (t) return t;
  }
  return readTableWithTool(f, table);
}

/** readTable through `iptables-save -t <table>` always (the in-process reader is checked against it). */
export function readTableWithTool(f: Family, table: IptTableName): IptTable {
  return parseSave(mustRunTool(saveTool(f), ['-t', table], `listing the ${famName(f)} ${table} table`), table);
}

/** The restore script for `lines` of `table` ('' when there is nothing to do). */
export function restoreScript(table: IptTableName, lines: string[]): string {
  return lines.length ? [`*${table}`, ...lines, 'COMMIT', ''].join('\n') : '';
}

/**
 * Applies `lines` to `table` in one transaction (all or nothing); nothing when empty. With
 * iptables-nft it is one nfnetlink batch in-process when it can be: deletions only (`-D`, `-F`,
 * `-X`) on a table `read` over netlink (rules named by their handles), or additions only (`-N`,
 * `-A` of a rule encodeRule knows, `:chain - [0:0]` of a chain `read` does not have), applied as
 * built, as iptables-restore applies them. Else one `iptables-restore -w --noflush`, also when the
 * kernel refuses the batch for a reason the tool handles or words better (a fresh netns has no
 * table: iptables-restore creates it and its built-in chains). Throws NetfilterError either way
 * (a refused transaction, or a batch whose outcome is unknown: rebuild on a fresh read).
 */
export function restore(f: Family, table: IptTableName, lines: string[], what: string, read?: IptTable): void {
  if (!lines.length) return;
  if (read?.nft && lines.every(isDeletion)) return deleteOverNetlink(f, table, lines, what, read.nft);
  const additions = iptablesIsNft(f) ? encodeAdditions(f, table, lines, read) : undefined;
  if (additions && addOverNetlink(f, table, additions, what)) return;
  mustRunTool(restoreTool(f), ['-w', '--noflush'], what, restoreScript(table, lines));
}

/** The lines as in-process additions (restore's), or undefined when one of them is not an addition encodeRule knows. */
export function encodeAdditions(f: Family, table: IptTableName, lines: string[], read?: IptTable): NftAddition[] | undefined {
  const where = { family: f === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, table };
  const out: NftAddition[] = [];
  for (const l of lines) {
    const [op, chain = '', ...rest] = splitArgs(l);
    // `:chain` under --noflush creates the chain or flushes it: only the creation is an addition.
    if (op === '-N' && !rest.length) out.push({ ...where, chain, create: true });
    else if (op?.startsWith(':') && read?.nft && !read.chains.has(op.slice(1)) && chain === '-') out.push({ ...where, chain: op.slice(1), create: true });
    else if (op === '-A' && chain) {
      const rule = encodeRule(f, table, rest);
      if (!rule) return undefined;
      out.push({ ...where, chain, ...rule });
    } else return undefined;
  }
  return out;
}

// The kernel's answers that mean the transaction itself was refused, as iptables-restore would
// refuse it: a chain that exists (-N), a chain in use.
const REFUSED = new Set([EEXIST, EBUSY]);
// The kernel rejected the batch (so nothing of it was applied) for a reason iptables-restore then
// handles or reports in its own words: no such table or chain (created by the tool), no nf_tables
// access, an extension or an attribute this kernel does not take.
const TO_THE_TOOL = new Set([ENOENT, EINVAL, EPERM, EACCES, EOPNOTSUPP, EPROTONOSUPPORT, EAFNOSUPPORT]);

/**
 * restore's in-process path for additions: true when applied; false when the kernel rejected the
 * batch for a reason the tool should handle (TO_THE_TOOL). Throws NetfilterError: 'other' when the
 * kernel refused the transaction, 'try-again' when the batch's outcome is unknown (its acks were
 * lost, no answer): running the tool then could apply it twice, while a rebuild on a fresh read
 * (transact, the masquerade's read-then-write path) adds only what is missing.
 */
function addOverNetlink(f: Family, table: IptTableName, additions: NftAddition[], what: string): boolean {
  try {
    nftAdd(netfilterSocket(), additions);
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && TO_THE_TOOL.has(e.errno)) return false;
    const refused = e instanceof NetlinkError && REFUSED.has(e.errno);
    throw new NetfilterError('nf_tables', `${what}: adding to the ${famName(f)} ${table} table: ${(e as Error).message}`, refused ? 'other' : 'try-again', { cause: e });
  }
}

/** restore's in-process path: the deletions as one batch of rule handles and chain names. */
function deleteOverNetlink(f: Family, table: IptTableName, lines: string[], what: string, nft: NonNullable<IptTable['nft']>): void {
  sendDeletions([f], table, what, netlinkDeletions(f, table, lines, what, nft));
}

const isDeletion = (l: string): boolean => /^-[DFX] /.test(l);

/** `lines` (deletions only) as nf_tables deletions of `table` of family `f`, each rule named by its handle in `nft`. Throws NetfilterError. */
function netlinkDeletions(f: Family, table: IptTableName, lines: string[], what: string, nft: NonNullable<IptTable['nft']>): NftDeletion[] {
  const left = new Map([...nft.handles].map(([l, h]) => [l, [...h]]));
  const flushed = new Set<string>();
  const where = { family: f === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, table };
  return lines.map((l) => {
    const [op, chain] = l.split(' ', 2) as [string, string];
    if (op === '-F') {
      flushed.add(chain);
      return { ...where, flush: chain };
    }
    if (op === '-X') {
      // nf_tables deletes a chain with its rules; iptables refuses a chain that still has any.
      const inIt = [...left].some(([line, h]) => h.length && line.startsWith(`-A ${chain} `));
      if (inIt && !flushed.has(chain)) throw new NetfilterError('nf_tables', `${what}: chain ${chain} of the ${famName(f)} ${table} table is not empty`);
      return { ...where, chain };
    }
    const handle = left.get(`-A${l.slice(2)}`)?.shift(); // -D deletes the first rule that matches
    if (handle === undefined) throw new NetfilterError('nf_tables', `${what}: rule "-A${l.slice(2)}" is not in the ${famName(f)} ${table} table`);
    return { ...where, chain, rule: handle };
  });
}

/** Sends the deletions (of `families`' tables) as one nfnetlink batch. Throws NetfilterError. */
function sendDeletions(families: Family[], table: IptTableName, what: string, deletions: NftDeletion[]): void {
  try {
    // No generation check: each rule is named by its handle (never reused), so a concurrent change can
    // only make the batch fail (ENOENT: deleted meanwhile; EBUSY: a chain jumped to again), never
    // make it delete something else. A check would fail every DEL racing any other commit here.
    nftDelete(netfilterSocket(), deletions);
  } catch (e) {
    const tables = families.length > 1 ? `${families.map(famName).join(' and ')} ${table} tables` : `${famName(families[0]!)} ${table} table`;
    throw new NetfilterError('nf_tables', `${what}: deleting from the ${tables}: ${(e as Error).message}`, 'other', { cause: e });
  }
}

const sameTable = (a: IptTable, b: IptTable): boolean => a.rules.join('\n') === b.rules.join('\n') && [...a.chains].sort().join(' ') === [...b.chains].sort().join(' ');

/**
 * `t` read again for a rebuild, with whether it changed. Unchanged (same rules and chains; read over
 * netlink, the same generation too, which is the whole ruleset's) means a transaction that failed on
 * it failed on its own account, and rebuilding would fail the same way. Always the whole table: a
 * transaction built on some chains' rules (`scope`) may have failed on a rule elsewhere (another
 * chain's jump to a chain it deletes); the whole table then differs from `t`, and the rebuild on it
 * finds that rule.
 */
function reread(f: Family, table: IptTableName, t: IptTable): { t: IptTable; changed: boolean } {
  const again = readTable(f, table);
  return { t: again, changed: !sameTable(again, t) || again.nft?.gen !== t.nft?.gen };
}

// Each lost race means another process created or removed one of the chains a transaction names: a
// few rebuilds on a fresh read settle it.
const ATTEMPTS = 5;

/**
 * One transaction: reads `table` (or takes `read`, the table as the caller just read it; `rulesOf`:
 * the chains whose rules `build` looks at, see readTable), builds the
 * lines with `build` and applies them with one restore. When the restore fails because another
 * process changed the table in between (a concurrent ADD created a chain first, a DEL removed a rule
 * twice), reads again and rebuilds, up to 5 times; a failure on an unchanged table, or a missing
 * tool, is thrown (NetfilterError). A table read in part (`rulesOf`) counts as changed against the
 * whole one read again, so such a failure is thrown after one rebuild on the whole table. Returns
 * the lines applied ([] when there was nothing to do) and the table they were built on, for undoLines.
 */
export function transact(
  f: Family,
  table: IptTableName,
  what: string,
  build: (t: IptTable) => string[],
  read?: IptTable,
  rulesOf?: readonly RuleScope[],
): { lines: string[]; before: IptTable } {
  let t = read ?? readTable(f, table, rulesOf);
  for (let attempt = 1; ; attempt++) {
    const lines = build(t);
    if (!lines.length) return { lines, before: t };
    try {
      restore(f, table, lines, what, t);
      return { lines, before: t };
    } catch (e) {
      if (!(e instanceof NetfilterError) || e.notFound || attempt >= ATTEMPTS) throw e;
      const again = reread(f, table, t);
      if (!again.changed) throw e;
      t = again.t;
    }
  }
}

/**
 * transact for each of `families` in order (`reads`: tables the caller just read; `rulesOf`: the
 * chains whose rules `build` looks at, for the tables read here, see readTable), as one
 * transaction when it can be: with iptables-nft, when every family's lines are deletions from a table
 * read over netlink, one nfnetlink batch deletes them all, all or nothing, in one nf_tables commit (a
 * deleting commit costs the kernel a grace period that the next commit in the netns may wait for:
 * shared/netfilter/nfnl.ts). Otherwise, and when a family's table cannot be read (the families
 * before it are then done first, as one transact each would), one transact per family. A batch
 * refused because the tables changed in between is rebuilt on a fresh read, as transact's. Throws
 * NetfilterError.
 */
export function transactEach(
  families: readonly Family[],
  table: IptTableName,
  what: string,
  build: (t: IptTable, f: Family) => string[],
  reads?: ReadonlyMap<Family, IptTable>,
  rulesOf?: readonly RuleScope[],
): void {
  type Plan = { f: Family; t: IptTable; lines: string[] };
  const plan = ([f, t]: readonly [Family, IptTable]): Plan => ({ f, t, lines: build(t, f) });
  // One transact per family; the lines built on the table it starts from are not built again.
  const each = (plans: Plan[]) => {
    for (const p of plans) if (p.lines.length) transact(p.f, table, what, (now) => (now === p.t ? p.lines : build(now, p.f)), p.t);
  };
  let tables: (readonly [Family, IptTable])[] = [];
  for (const f of families) {
    try {
      tables.push([f, reads?.get(f) ?? readTable(f, table, rulesOf)]);
    } catch (e) {
      each(tables.map(plan));
      throw e;
    }
  }
  for (let attempt = 1; ; attempt++) {
    const plans = tables.map(plan).filter((p) => p.lines.length);
    if (plans.length < 2 || !plans.every((p) => p.t.nft && p.lines.every(isDeletion))) return each(plans);
    try {
      const deletions = plans.flatMap((p) => netlinkDeletions(p.f, table, p.lines, what, p.t.nft!));
      return sendDeletions(plans.map((p) => p.f), table, what, deletions);
    } catch (e) {
      if (!(e instanceof NetfilterError) || attempt >= ATTEMPTS) throw e;
      const again = tables.map(([f, t]) => [f, reread(f, table, t)] as const);
      if (!again.some(([, r]) => r.changed)) throw e;
      tables = again.map(([f, r]) => [f, r.t] as const);
    }
  }
}

/** The rule a `-A`/`-I <chain> 1` line adds, as iptables-save lists it. */
const listed = (l: string): string => l.replace(/^-I (\S+) 1 /, '-A $1 ');

/**
 * The lines that take back a transaction's `added` lines, against the table `now` (as it is now)
 * and `before` (as the transaction found it; default `now`). One rule for every plugin: never flush
 * (a process without our lock, e.g. the reference plugin, may have put rules into a chain since);
 * rules the transaction added (`-A`, `-I c 1`) that are still there are deleted, in reverse order;
 * rules it deleted (`-D`) or flushed away (a `:chain` declaration of an existing chain flushes it
 * under --noflush) and that are not back are appended again; then each chain it created (`-N`, or
 * `:chain` of one `before` did not have) is deleted, in reverse order, only when nothing is left in
 * it and nothing jumps to it.
 */
export function undoLines(added: readonly string[], now: IptTable, before: IptTable = now): string[] {
  const there = new Set(now.rules);
  const removed = new Set<string>();
  const out: string[] = [];
  const created: string[] = [];
  const flushed: string[] = [];
  for (const l of [...added].reverse()) {
    const [op, chain] = l.split(' ', 2) as [string, string];
    if (op === '-N' || op.startsWith(':')) {
      const name = op === '-N' ? chain : op.slice(1);
      if (op === '-N' || !before.chains.has(name)) created.push(name);
      else flushed.push(name);
      continue;
    }
    if (op !== '-A' && op !== '-I') continue;
    const rule = listed(l);
    if (!there.has(rule) || removed.has(rule)) continue; // already gone
    removed.add(rule);
    out.push(`-D${rule.slice(2)}`);
  }
  const left = now.rules.filter((r) => !removed.has(r));
  const restored = [
    ...flushed.flatMap((c) => before.rules.filter((r) => r.startsWith(`-A ${c} `))),
    ...added.filter((l) => l.startsWith('-D ')).map((l) => `-A${l.slice(2)}`),
  ].filter((r, i, all) => !left.includes(r) && all.indexOf(r) === i);
  out.push(...restored);
  const final = [...left, ...restored];
  const jumpTo = (c: string): RegExp => new RegExp(` -[jg] ${c.replace(/[.+]/g, '\\$&')}( |$)`);
  const unused = (c: string): boolean => now.chains.has(c) && !final.some((r) => r.startsWith(`-A ${c} `) || jumpTo(c).test(r));
  out.push(...created.filter(unused).map((c) => `-X ${c}`));
  return out;
}
