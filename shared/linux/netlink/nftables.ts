// nftables over nfnetlink, in-process: whether a table exists at all (an nftables sweep has nothing
// to do when it does not, so no `nft` is exec'd), and a table's chains and rules (iptables-nft's tables
// read without exec'ing iptables-save).
import { NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from './constants';
import { ENOENT } from './errno';
import { NetlinkError } from './errors';
import { attr, attrBE32, attrBE64, attrStr, attrString, nested, nfgenmsg, nlmsg, parseAttrList, parseAttrs } from './message';
import type { NetlinkSocket } from './socket';

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETTABLE = 1;
const NFTA_TABLE_NAME = 1;

/** nftables' table families (NFPROTO_*); `inet` is the dual-stack one. */
export const NFPROTO_INET = 1;

/** The request for one table by family and name (the kernel answers NFT_MSG_NEWTABLE or ENOENT). */
export function buildGetTable(family: number, name: string): Buffer {
  return nlmsg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NLM_F_REQUEST, nfgenmsg(family), attrStr(NFTA_TABLE_NAME, name));
}

/**
 * Whether table `name` of `family` (NFPROTO_*) exists in the netns of `nl` (a NETLINK_NETFILTER
 * socket). False only on the kernel's ENOENT; throws NetlinkError for any other answer (EINVAL or
 * EPROTONOSUPPORT when the kernel has no nf_tables, EPERM without CAP_NET_ADMIN).
 */
export function nftTableExists(nl: NetlinkSocket, family: number, name: string): boolean {
  return answers(nl, buildGetTable(family, name), 'looking up nftables table', name);
}

/** Whether chain `chain` of table `table` of `family` exists (one NFT_MSG_GETCHAIN, no dump); false only on ENOENT. Throws NetlinkError. */
export function nftChainExists(nl: NetlinkSocket, family: number, table: string, chain: string): boolean {
  const req = nlmsg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN, NLM_F_REQUEST, nfgenmsg(family), attrStr(NFTA_CHAIN_TABLE, table), attrStr(NFTA_CHAIN_NAME, chain));
  return answers(nl, req, 'looking up nftables chain', `${table} ${chain}`);
}

/** True when the kernel answers `req`, false on its ENOENT; any other error is thrown. */
function answers(nl: NetlinkSocket, req: Buffer, op: string, object: string): boolean {
  try {
    nl.request(req, op, object);
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENOENT) return false;
    throw e;
  }
}

// Reading a table's chains and rules (NFT_MSG_GETCHAIN / GETRULE dumps), for the iptables-nft
// reader (shared/netfilter/xtables-nft.ts): the tables iptables-nft writes are nf_tables tables.
const NFT_MSG_GETCHAIN = 4;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_GETGEN = 16;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_RULE_USERDATA = 7;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_GEN_ID = 1;
const NFGENMSG_LEN = 4;

export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;
export const NFPROTO_BRIDGE = 7;

/** A chain of a table: its name and, for a base chain, its hook number (NF_INET_*). */
export interface NftChain {
  name: string;
  hook?: number;
}

/** One expression of a rule: its type name ("payload", "cmp", "match", ...) and its attributes by type. */
export interface NftExpr {
  name: string;
  attrs: Map<number, Buffer>;
}

/** A rule as the kernel lists it: its chain, handle, expressions in order and userdata (nft's comment lives there). */
export interface NftRuleMsg {
  chain: string;
  handle: bigint;
  exprs: NftExpr[];
  userdata?: Buffer;
}

const NFTNL_UDATA_RULE_COMMENT = 0;

/** The comment nft stored in a rule's or a set element's userdata (TLVs of u8 type, u8 length; the comment, type 0, NUL-terminated), or undefined. */
export function ruleComment(userdata: Buffer | undefined): string | undefined {
  if (!userdata) return undefined;
  for (let o = 0; o + 2 <= userdata.length; ) {
    const type = userdata[o]!;
    const len = userdata[o + 1]!;
    if (o + 2 + len > userdata.length) break;
    if (type === NFTNL_UDATA_RULE_COMMENT) return attrString(userdata.subarray(o + 2, o + 2 + len));
    o += 2 + len;
  }
  return undefined;
}

const nftType = (msg: number): number => (NFNL_SUBSYS_NFTABLES << 8) | msg;

/** The ruleset's generation id: it changes with every committed transaction. Throws NetlinkError. */
export function nftGeneration(nl: NetlinkSocket): number {
  const [m] = nl.request(nlmsg(nftType(NFT_MSG_GETGEN), NLM_F_REQUEST, nfgenmsg(0)), 'reading the nftables generation');
  const id = m ? parseAttrs(m.payload, NFGENMSG_LEN).get(NFTA_GEN_ID) : undefined;
  if (!id || id.length < 4) throw new Error('nftables generation: no NFTA_GEN_ID in the answer');
  return id.readUInt32BE(0);
}

/** A chain from an NFT_MSG_NEWCHAIN message's payload (nfgenmsg + attributes), with the table it is in. */
export function decodeChain(payload: Buffer): NftChain & { table: string } {
  const a = parseAttrs(payload, NFGENMSG_LEN);
  const hook = a.get(NFTA_CHAIN_HOOK);
  const num = hook ? parseAttrs(hook).get(NFTA_HOOK_HOOKNUM) : undefined;
  return { table: attrString(a.get(NFTA_CHAIN_TABLE) ?? Buffer.alloc(0)), name: attrString(a.get(NFTA_CHAIN_NAME) ?? Buffer.alloc(0)), ...(num ? { hook: num.readUInt32BE(0) } : {}) };
}

/** A rule from an NFT_MSG_NEWRULE message's payload, with the table it is in. */
export function decodeRule(payload: Buffer): NftRuleMsg & { table: string } {
  const a = parseAttrs(payload, NFGENMSG_LEN);
  const exprs: NftExpr[] = [];
  for (const e of parseAttrList(a.get(NFTA_RULE_EXPRESSIONS) ?? Buffer.alloc(0))) {
    if (e.type !== NFTA_LIST_ELEM) continue;
    const ea = parseAttrs(e.value);
    exprs.push({ name: attrString(ea.get(NFTA_EXPR_NAME) ?? Buffer.alloc(0)), attrs: parseAttrs(ea.get(NFTA_EXPR_DATA) ?? Buffer.alloc(0)) });
  }
  const h = a.get(NFTA_RULE_HANDLE);
  const ud = a.get(NFTA_RULE_USERDATA);
  return {
    table: attrString(a.get(NFTA_RULE_TABLE) ?? Buffer.alloc(0)),
    chain: attrString(a.get(NFTA_RULE_CHAIN) ?? Buffer.alloc(0)),
    handle: h && h.length >= 8 ? h.readBigUInt64BE(0) : 0n,
    exprs,
    ...(ud ? { userdata: ud } : {}),
  };
}

/** The chains of table `name` of `family` (NFPROTO_*); [] when the table does not exist. Throws NetlinkError. */
export function nftListChains(nl: NetlinkSocket, family: number, name: string): NftChain[] {
  const req = nlmsg(nftType(NFT_MSG_GETCHAIN), NLM_F_REQUEST | NLM_F_DUMP, nfgenmsg(family), attrStr(NFTA_CHAIN_TABLE, name));
  // The table filter: older kernels dump every table's chains.
  return nl.request(req, 'listing nftables chains', name).map((m) => decodeChain(m.payload)).filter((c) => c.table === name);
}

/**
 * The rules of table `name` of `family`, chain by chain in the kernel's order, or of its chain
 * `chain` alone (the kernel filters the dump: nf_tables_dump_rules); [] when the table or the chain
 * does not exist. `mentioning`: only the rules whose message holds one of these strings (UTF-8) or
 * byte strings (a chain name a verdict jumps to, an address a compare matches) are decoded and
 * returned (none for an empty list); decoding is most of a dump's cost. Throws NetlinkError.
 */
export function nftListRules(nl: NetlinkSocket, family: number, name: string, chain?: string, mentioning?: ReadonlyArray<string | Uint8Array>): NftRuleMsg[] {
  const req = nlmsg(nftType(NFT_MSG_GETRULE), NLM_F_REQUEST | NLM_F_DUMP, nfgenmsg(family), attrStr(NFTA_RULE_TABLE, name), ...(chain === undefined ? [] : [attrStr(NFTA_RULE_CHAIN, chain)]));
  return nl
    .request(req, 'listing nftables rules', chain === undefined ? name : `${name} ${chain}`)
    .filter((m) => !mentioning || mentioning.some((b) => m.payload.indexOf(b) >= 0))
    .map((m) => decodeRule(m.payload))
    .filter((r) => r.table === name && (chain === undefined || r.chain === chain));
}

// Set elements (NFT_MSG_GETSETELEM): a set's keys and their userdata (nft's element comments).
const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_DELSETELEM = 14;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_USERDATA = 6;
const NFTA_DATA_VALUE = 1;

/** One element of a set: its key's bytes and its userdata (a comment, read with ruleComment). */
export interface NftSetElement {
  key: Buffer;
  userdata?: Buffer;
}

/** The elements in an NFT_MSG_NEWSETELEM message's payload. */
export function decodeSetElements(payload: Buffer): NftSetElement[] {
  const list = parseAttrs(payload, NFGENMSG_LEN).get(NFTA_SET_ELEM_LIST_ELEMENTS);
  const out: NftSetElement[] = [];
  for (const e of parseAttrList(list ?? Buffer.alloc(0))) {
    if (e.type !== NFTA_LIST_ELEM) continue;
    const a = parseAttrs(e.value);
    const key = parseAttrs(a.get(NFTA_SET_ELEM_KEY) ?? Buffer.alloc(0)).get(NFTA_DATA_VALUE);
    if (!key) continue;
    const ud = a.get(NFTA_SET_ELEM_USERDATA);
    out.push({ key: Buffer.from(key), ...(ud ? { userdata: Buffer.from(ud) } : {}) });
  }
  return out;
}

/** The elements of set `set` of table `name`; [] when the set does not exist. Throws NetlinkError otherwise. */
export function nftListSetElements(nl: NetlinkSocket, family: number, name: string, set: string): NftSetElement[] {
  const req = nlmsg(nftType(NFT_MSG_GETSETELEM), NLM_F_REQUEST | NLM_F_DUMP, nfgenmsg(family), attrStr(NFTA_SET_ELEM_LIST_TABLE, name), attrStr(NFTA_SET_ELEM_LIST_SET, set));
  try {
    return nl.request(req, 'listing nftables set elements', `${name} ${set}`).flatMap((m) => decodeSetElements(m.payload));
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENOENT) return [];
    throw e;
  }
}

// Deleting rules and chains (NFT_MSG_DELRULE / DELCHAIN) in one batch: what a teardown needs, and
// it needs no rule encoding, only the handles and names a listing gave.
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFNL_BATCH_GENID = 1;
const NFT_MSG_DELCHAIN = 5;
const NFT_MSG_DELRULE = 8;

/** One deletion: a rule by handle, every rule of a chain (a flush), a chain, or a set element by key; of table `table` of `family` (NFPROTO_*). */
export type NftDeletion = { family: number; table: string } & ({ rule: bigint; chain: string } | { flush: string } | { chain: string; rule?: undefined } | { set: string; key: Buffer });

const batchHeader = (): Buffer => Buffer.from([0, 0, 0, NFNL_SUBSYS_NFTABLES]); // AF_UNSPEC, v0, res_id (be16) = the subsystem

/**
 * Applies `deletions` in one nfnetlink batch, all or nothing (the tables of several families may
 * be in one batch). With `gen`, only if the ruleset is still at that generation (else the kernel
 * refuses the batch with ERESTART). Throws NetlinkError (ENOENT for a rule or chain already gone,
 * EBUSY for a chain still jumped to).
 */
export function nftDelete(nl: NetlinkSocket, deletions: NftDeletion[], gen?: number): void {
  if (!deletions.length) return;
  const flags = NLM_F_REQUEST | NLM_F_ACK;
  const msgs: Buffer[] = [];
  for (const d of deletions) {
    const head = [nfgenmsg(d.family), attrStr(NFTA_RULE_TABLE, d.table)]; // NFTA_RULE_TABLE = NFTA_CHAIN_TABLE = 1
    if ('set' in d)
      msgs.push(
        nlmsg(nftType(NFT_MSG_DELSETELEM), flags, nfgenmsg(d.family), attrStr(NFTA_SET_ELEM_LIST_TABLE, d.table), attrStr(NFTA_SET_ELEM_LIST_SET, d.set),
          nested(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, nested(NFTA_LIST_ELEM | NLA_F_NESTED, nested(NFTA_SET_ELEM_KEY | NLA_F_NESTED, attr(NFTA_DATA_VALUE, d.key))))),
      );
    else if ('flush' in d) msgs.push(nlmsg(nftType(NFT_MSG_DELRULE), flags, ...head, attrStr(NFTA_RULE_CHAIN, d.flush)));
    else if (d.rule !== undefined) msgs.push(nlmsg(nftType(NFT_MSG_DELRULE), flags, ...head, attrStr(NFTA_RULE_CHAIN, d.chain), attrBE64(NFTA_RULE_HANDLE, d.rule)));
    else msgs.push(nlmsg(nftType(NFT_MSG_DELCHAIN), flags, ...head, attrStr(NFTA_CHAIN_NAME, d.chain)));
  }
  sendBatch(nl, msgs, gen, 'deleting nf_tables rules', deletions);
}

const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_NEWRULE = 6;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLM_F_APPEND = 0x800;

/**
 * One addition: a new (regular) chain, which must not exist yet, or a rule appended to a chain,
 * given as its NFTA_RULE_EXPRESSIONS payload (xtables-nft.ts encodeRule) and, for xt extensions that
 * check the rule's protocol (multiport), that protocol (NFTA_RULE_COMPAT); in table `table` of `family`.
 */
export type NftAddition = { family: number; table: string; chain: string } & ({ create: true } | { exprs: Buffer; proto?: number });

const NFTA_RULE_COMPAT = 5;
const NFTA_RULE_COMPAT_PROTO = 1;
const NFTA_RULE_COMPAT_FLAGS = 2;


/**
 * Applies `additions` in order in one nfnetlink batch, all or nothing. Throws NetlinkError: EEXIST
 * for a chain that exists, ENOENT for a table or chain that does not, ENOBUFS when the acks were
 * lost (the batch may have been applied).
 */
export function nftAdd(nl: NetlinkSocket, additions: NftAddition[]): void {
  if (!additions.length) return;
  const msgs = additions.map((a) => {
    const head = [nfgenmsg(a.family), attrStr(NFTA_RULE_TABLE, a.table)];
    return 'create' in a
      ? nlmsg(nftType(NFT_MSG_NEWCHAIN), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ...head, attrStr(NFTA_CHAIN_NAME, a.chain))
      : nlmsg(nftType(NFT_MSG_NEWRULE), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, ...head, attrStr(NFTA_RULE_CHAIN, a.chain), nested(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED, a.exprs),
          ...(a.proto === undefined ? [] : [nested(NFTA_RULE_COMPAT | NLA_F_NESTED, attrBE32(NFTA_RULE_COMPAT_PROTO, a.proto), attrBE32(NFTA_RULE_COMPAT_FLAGS, 0))]));
  });
  sendBatch(nl, msgs, undefined, 'adding nf_tables rules', additions);
}

/** Sends `changes` between BATCH_BEGIN (with the generation check when `gen` is given) and BATCH_END. */
// nft's names of the families, for messages ("ip6 nat", not "nat" twice).
const FAMILY_NAMES: Readonly<Record<number, string>> = { [NFPROTO_INET]: 'inet', [NFPROTO_IPV4]: 'ip', [NFPROTO_IPV6]: 'ip6', [NFPROTO_BRIDGE]: 'bridge' };

function sendBatch(nl: NetlinkSocket, changes: Buffer[], gen: number | undefined, op: string, on: ReadonlyArray<{ family: number; table: string }>): void {
  const genAttr = gen === undefined ? [] : [attrBE32(NFNL_BATCH_GENID, gen)];
  const msgs = [nlmsg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, batchHeader(), ...genAttr), ...changes, nlmsg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, batchHeader())];
  nl.batch(msgs, op, [...new Set(on.map((d) => `${FAMILY_NAMES[d.family] ?? d.family} ${d.table}`))].join(', '));
}
