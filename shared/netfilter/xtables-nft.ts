// iptables-nft's tables read in-process: iptables-nft (the `iptables` of Debian 11+, RHEL 8+) keeps
// its rules in nf_tables tables (`ip nat`, `ip6 filter`, ...), so a plugin can list them over
// nfnetlink instead of exec'ing `iptables-save`, and write once with `iptables-restore` (issue 12: at
// most one netfilter process per plugin and verb). Each rule is turned back into the line
// `iptables-save` prints for it, for the expressions iptables-nft 1.8 writes for the rules the CNI
// plugins (ours, the reference's, Docker's usual ones) use: addresses, interfaces, protocol, tcp/udp
// ports, mark, and the xt matches comment, addrtype, multiport, conntrack --ctstate; targets
// ACCEPT/DROP/RETURN, jumps and gotos, MASQUERADE, DNAT, MARK --set-xmark. Anything else makes the
// listing Undecodable and the caller execs `iptables-save` as before (shared/netfilter/iptables.ts).
// The formats follow iptables 1.8.9 (nft-shared.c, libxt_*.c save functions).
import { formatIP, mask, parseCIDR, type Family, type IP } from '../ip';
import { attr, attrBE32, attrBE64, attrStr, nested } from '../linux/netlink/message';
import type { NftChain, NftRuleMsg } from '../linux/netlink/nftables';

/** A rule or chain the decoder does not know how to print as iptables-save does. */
export class Undecodable extends Error {
  constructor(what: string) {
    super(`cannot print ${what} as iptables-save does`);
    this.name = 'Undecodable';
  }
}

const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;

/** Nested attributes (NFTA_* types with NLA_F_NESTED stripped). */
function nestedAttrs(b: Buffer | undefined): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  if (!b) return m;
  for (let o = 0; o + 4 <= b.length; ) {
    const len = b.readUInt16LE(o);
    if (len < 4 || o + len > b.length) break;
    m.set(b.readUInt16LE(o + 2) & 0x3fff, b.subarray(o + 4, o + len));
    o += (len + 3) & ~3;
  }
  return m;
}

const be32 = (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readUInt32BE(0) : undefined);
const str = (b: Buffer | undefined): string => {
  if (!b) return '';
  const nul = b.indexOf(0);
  return b.toString('latin1', 0, nul < 0 ? b.length : nul);
};
const dataValue = (b: Buffer | undefined): Buffer => nestedAttrs(b).get(NFTA_DATA_VALUE) ?? Buffer.alloc(0);

/** xtables_save_string: bare when only [_-0-9A-Za-z], else double-quoted with " \ ' escaped. */
export function saveString(s: string): string {
  return s.length && /^[-_0-9A-Za-z]+$/.test(s) ? s : `"${s.replace(/["\\']/g, '\\$&')}"`;
}

// NFT_META_* keys, NFT_PAYLOAD_* bases, NFT_CMP_* ops (linux/netfilter/nf_tables.h).
const META_MARK = 3;
const META_IIFNAME = 6;
const META_OIFNAME = 7;
const META_L4PROTO = 16;
const BASE_NETWORK = 1;
const BASE_TRANSPORT = 2;
const CMP_EQ = 0;
const CMP_NEQ = 1;

const PROTO_NAMES = new Map([
  [1, 'icmp'],
  [6, 'tcp'],
  [17, 'udp'],
  [58, 'ipv6-icmp'],
  [132, 'sctp'],
]);

const ADDRTYPES = ['UNSPEC', 'UNICAST', 'LOCAL', 'BROADCAST', 'ANYCAST', 'MULTICAST', 'BLACKHOLE', 'UNREACHABLE', 'PROHIBIT', 'THROW', 'NAT', 'XRESOLVE'];
// xt_conntrack state bits in print_state's order: INVALID, NEW, RELATED, ESTABLISHED, UNTRACKED.
const CTSTATES: Array<[number, string]> = [
  [1 << 0, 'INVALID'],
  [1 << 3, 'NEW'],
  [1 << 2, 'RELATED'],
  [1 << 1, 'ESTABLISHED'],
  [1 << 8, 'UNTRACKED'],
];

interface Addr {
  addr: Buffer;
  mask: Buffer;
  inv: boolean;
}

/** An address match as save_ipv4_addr / save_ipv6_addr print it (mask as a prefix length, or dotted when not contiguous). */
function printAddr(f: Family, flag: string, a: Addr): string {
  let prefix = 0;
  let contiguous = true;
  for (const byte of a.mask) {
    for (let bit = 7; bit >= 0; bit--) {
      if (byte & (1 << bit)) {
        if (!contiguous) return printDotted(f, flag, a);
        prefix++;
      } else contiguous = false;
    }
  }
  const masked = Buffer.from(a.addr.map((b, i) => b & a.mask[i]!));
  return `${a.inv ? ' !' : ''} -${flag} ${formatIP(toIP(f, masked))}/${prefix}`;
}

function printDotted(f: Family, flag: string, a: Addr): string {
  if (f === 6) throw new Undecodable('an IPv6 address with a non-contiguous mask');
  const masked = Buffer.from(a.addr.map((b, i) => b & a.mask[i]!));
  return `${a.inv ? ' !' : ''} -${flag} ${formatIP(toIP(4, masked))}/${[...a.mask].join('.')}`;
}

function toIP(f: Family, b: Buffer): IP {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return { family: f, value: v } as IP;
}

/** A register load waiting for its cmp (iptables-nft: load, optional bitwise, cmp). */
type Load = { kind: 'payload'; base: number; offset: number; len: number; mask?: Buffer } | { kind: 'meta'; key: number; mask?: Buffer };

/** The tcp/udp match iptables-nft writes as native port compares; printed where its first compare was. */
interface PortMatch {
  proto: string;
  sport?: string;
  dport?: string;
}

/**
 * One rule as the line `iptables-save` prints for it (`-A CHAIN ...`), for a table of family `f`.
 * Throws Undecodable for an expression or an xt extension outside the subset described above.
 */
export function ruleLine(f: Family, rule: NftRuleMsg): string {
  let load: Load | undefined;
  const addr: { s?: Addr; d?: Addr } = {};
  const iface: { i?: string; o?: string } = {};
  let proto: { num: number; inv: boolean } | undefined;
  const parts: Array<string | PortMatch> = [];
  let target = '';
  const alen = f === 4 ? 4 : 16;
  const srcOff = f === 4 ? 12 : 8;
  const dstOff = f === 4 ? 16 : 24;

  for (const e of rule.exprs) {
    const a = e.attrs;
    switch (e.name) {
      case 'counter':
        break;
      case 'payload':
        load = { kind: 'payload', base: be32(a.get(2)) ?? -1, offset: be32(a.get(3)) ?? -1, len: be32(a.get(4)) ?? -1 };
        break;
      case 'meta':
        if (a.get(1) === undefined) throw new Undecodable('a meta set');
        load = { kind: 'meta', key: be32(a.get(2)) ?? -1 };
        break;
      case 'bitwise': {
        const xor = dataValue(a.get(5));
        if (!load || (be32(a.get(6)) ?? 0) !== 0 || xor.some((b) => b !== 0)) throw new Undecodable('a bitwise expression');
        load.mask = dataValue(a.get(4));
        break;
      }
      case 'cmp':
      case 'range': {
        if (!load) throw new Undecodable(`a ${e.name} without a load`);
        const op = be32(a.get(2));
        if (op !== CMP_EQ && op !== CMP_NEQ) throw new Undecodable(`${e.name} op ${op}`);
        const inv = op === CMP_NEQ;
        const data = dataValue(a.get(3));
        const to = e.name === 'range' ? dataValue(a.get(4)) : undefined;
        const l: Load = load;
        load = undefined;
        if (l.kind === 'payload' && l.base === BASE_NETWORK && !to) {
          const which = l.offset >= srcOff && l.offset + l.len <= srcOff + alen ? 's' : l.offset >= dstOff && l.offset + l.len <= dstOff + alen ? 'd' : undefined;
          if (!which || addr[which] || data.length !== l.len) throw new Undecodable('a network header match');
          const start = l.offset - (which === 's' ? srcOff : dstOff);
          const full = Buffer.alloc(alen);
          data.copy(full, start);
          const mask = Buffer.alloc(alen);
          if (l.mask) l.mask.copy(mask, start, 0, l.len);
          else mask.fill(0xff, start, start + l.len);
          addr[which] = { addr: full, mask, inv };
        } else if (l.kind === 'payload' && l.base === BASE_TRANSPORT && (l.offset === 0 || l.offset === 2) && l.len === 2 && !l.mask) {
          const name = proto && !proto.inv ? PROTO_NAMES.get(proto.num) : undefined;
          if (name !== 'tcp' && name !== 'udp') throw new Undecodable('a port match without -p tcp or udp');
          const lo = data.readUInt16BE(0);
          const hi = to ? to.readUInt16BE(0) : lo;
          let m = parts.find((p): p is PortMatch => typeof p !== 'string');
          if (!m) parts.push((m = { proto: name }));
          const spec = `${inv ? ' !' : ''} --${l.offset === 0 ? 'sport' : 'dport'} ${lo === hi ? lo : `${lo}:${hi}`}`;
          if (l.offset === 0) m.sport = spec;
          else m.dport = spec;
        } else if (l.kind === 'meta' && l.key === META_L4PROTO && data.length === 1 && !to && !l.mask && !proto) {
          proto = { num: data[0]!, inv };
        } else if (l.kind === 'meta' && (l.key === META_IIFNAME || l.key === META_OIFNAME) && !to && !l.mask) {
          const nul = data.indexOf(0);
          const name = nul < 0 ? `${data.toString('latin1')}+` : data.toString('latin1', 0, nul); // no NUL: a prefix match, `eth+`
          iface[l.key === META_IIFNAME ? 'i' : 'o'] = `${inv ? ' !' : ''} -${l.key === META_IIFNAME ? 'i' : 'o'} ${name}`;
        } else if (l.kind === 'meta' && l.key === META_MARK && data.length === 4 && !to) {
          const mask = l.mask ? l.mask.readUInt32LE(0) : 0xffffffff;
          const v = data.readUInt32LE(0);
          parts.push(` -m mark${inv ? ' !' : ''} --mark 0x${v.toString(16)}${mask !== 0xffffffff ? `/0x${mask.toString(16)}` : ''}`);
        } else throw new Undecodable(`a ${e.name} on ${l.kind} ${l.kind === 'meta' ? l.key : `${l.base}+${l.offset}`}`);
        break;
      }
      case 'match':
        parts.push(` -m ${str(a.get(1))}${matchOptions(str(a.get(1)), be32(a.get(2)) ?? -1, a.get(3) ?? Buffer.alloc(0))}`);
        break;
      case 'target':
        target = ` -j ${str(a.get(1))}${targetOptions(f, str(a.get(1)), be32(a.get(2)) ?? -1, a.get(3) ?? Buffer.alloc(0))}`;
        break;
      case 'immediate':
        target = verdict(a);
        break;
      default:
        throw new Undecodable(`expression ${e.name}`);
    }
  }
  if (load) throw new Undecodable('a load without a compare');
  let line = `-A ${rule.chain}`;
  if (addr.s) line += printAddr(f, 's', addr.s);
  if (addr.d) line += printAddr(f, 'd', addr.d);
  if (iface.i) line += iface.i;
  if (iface.o) line += iface.o;
  if (proto) line += `${proto.inv ? ' !' : ''} -p ${PROTO_NAMES.get(proto.num) ?? proto.num}`;
  for (const p of parts) line += typeof p === 'string' ? p : ` -m ${p.proto}${p.sport ?? ''}${p.dport ?? ''}`;
  return line + target;
}

function verdict(a: Map<number, Buffer>): string {
  if (be32(a.get(1)) !== 0) throw new Undecodable('an immediate into a data register');
  const v = nestedAttrs(nestedAttrs(a.get(2)).get(NFTA_DATA_VERDICT));
  const code = v.get(NFTA_VERDICT_CODE)?.readInt32BE(0);
  const chain = str(v.get(NFTA_VERDICT_CHAIN));
  switch (code) {
    case 1:
      return ' -j ACCEPT';
    case 0:
      return ' -j DROP';
    case -5:
      return ' -j RETURN';
    case -3:
      return ` -j ${chain}`;
    case -4:
      return ` -g ${chain}`;
    default:
      throw new Undecodable(`verdict ${code}`);
  }
}

/** The options an xt match's save function prints, from its info blob (x86-64/LE layouts). */
function matchOptions(name: string, rev: number, info: Buffer): string {
  if (name === 'comment' && rev === 0) return ` --comment ${saveString(str(info.subarray(0, 256)))}`;
  if (name === 'addrtype' && rev === 1 && info.length >= 8) {
    // xt_addrtype_info_v1 { u16 source, dest; u32 flags }
    const src = info.readUInt16LE(0);
    const dst = info.readUInt16LE(2);
    const flags = info.readUInt32LE(4);
    if (flags & ~3) throw new Undecodable('addrtype --limit-iface-*');
    const types = (bits: number): string => ADDRTYPES.filter((_, i) => bits & (1 << i)).join(',');
    return `${src ? `${flags & 1 ? ' !' : ''} --src-type ${types(src)}` : ''}${dst ? `${flags & 2 ? ' !' : ''} --dst-type ${types(dst)}` : ''}`;
  }
  if (name === 'multiport' && rev === 1 && info.length >= 48) {
    // xt_multiport_v1 { u8 flags, count; u16 ports[15]; u8 pflags[15]; u8 invert }
    const flag = [' --sports', ' --dports', ' --ports'][info[0]!];
    const count = info[1]!;
    if (!flag || count > 15) throw new Undecodable('a multiport match');
    const ports: string[] = [];
    for (let i = 0; i < count; i++) {
      const p = info.readUInt16LE(2 + 2 * i);
      if (info[32 + i] && i + 1 < count) ports.push(`${p}:${info.readUInt16LE(2 + 2 * ++i)}`);
      else ports.push(String(p));
    }
    return `${info[47] ? ' !' : ''}${flag} ${ports.join(',')}`;
  }
  if (name === 'conntrack' && rev === 3 && info.length >= 162) {
    // xt_conntrack_mtinfo3: 8 addresses (128 bytes), expires (8), l4proto and 4 ports (10), then
    // match_flags @146, invert_flags @148, state_mask @150. Only --ctstate is printed here.
    const matchFlags = info.readUInt16LE(146);
    const invert = info.readUInt16LE(148);
    const states = info.readUInt16LE(150);
    if (matchFlags !== 1 || invert & ~1 || states & ~CTSTATES.reduce((m, [b]) => m | b, 0)) throw new Undecodable('a conntrack match other than --ctstate');
    return `${invert ? ' !' : ''} --ctstate ${CTSTATES.filter(([b]) => states & b).map(([, n]) => n).join(',')}`;
  }
  throw new Undecodable(`match ${name} rev ${rev}`);
}

/** The options an xt target's save function prints. */
function targetOptions(f: Family, name: string, rev: number, info: Buffer): string {
  if (name === 'MASQUERADE' && rev === 0) {
    // IPv4: nf_nat_ipv4_multi_range_compat { u32 rangesize; { u32 flags; ... } }; IPv6: nf_nat_range { u32 flags; ... }
    const flags = info.length >= 8 ? info.readUInt32LE(f === 4 ? 4 : 0) : -1;
    if (flags !== 0) throw new Undecodable('MASQUERADE with options');
    return '';
  }
  if (name === 'DNAT' && (rev === 1 || rev === 2) && info.length >= 40) {
    // nf_nat_range(2) { u32 flags; nf_inet_addr min, max; be16 min_proto, max_proto; ... }
    const flags = info.readUInt32LE(0);
    const alen = f === 4 ? 4 : 16;
    const min = info.subarray(4, 4 + alen);
    const max = info.subarray(20, 20 + alen);
    const pmin = info.readUInt16BE(36);
    const pmax = info.readUInt16BE(38);
    if (flags !== 1 && flags !== 3) throw new Undecodable('DNAT with options');
    if (!min.equals(max) || ((flags & 2) !== 0 && pmin !== pmax)) throw new Undecodable('DNAT to a range');
    const ip = formatIP(toIP(f, Buffer.from(min)));
    if (!(flags & 2)) return ` --to-destination ${ip}`;
    return ` --to-destination ${f === 6 ? `[${ip}]` : ip}:${pmin}`;
  }
  if (name === 'MARK' && rev === 2 && info.length >= 8) {
    return ` --set-xmark 0x${info.readUInt32LE(0).toString(16)}/0x${info.readUInt32LE(4).toString(16)}`;
  }
  throw new Undecodable(`target ${name} rev ${rev}`);
}

/**
 * A table as `iptables-save -t <table>` lists it: its chain names and its `-A` lines. `builtins`: the
 * table's built-in chains in iptables' order (listed even when iptables-nft has not created them
 * yet); then the other chains by name (strcmp), rules in each chain's order, each with its handle
 * (for deleting it). Throws Undecodable when
 * a rule is outside the subset this module prints.
 */
export function saveLines(f: Family, builtins: readonly string[], chains: NftChain[], rules: NftRuleMsg[]): { chains: string[]; rules: Array<{ line: string; handle: bigint }> } {
  const user = chains.map((c) => c.name).filter((n) => !builtins.includes(n));
  const byChain = new Map<string, Array<{ line: string; handle: bigint }>>([...builtins, ...user.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))].map((c) => [c, []]));
  for (const r of rules) {
    const list = byChain.get(r.chain);
    if (!list) throw new Undecodable(`a rule in unknown chain ${r.chain}`);
    list.push({ line: ruleLine(f, r), handle: r.handle });
  }
  return { chains: [...byChain.keys()], rules: [...byChain.values()].flat() };
}

// ---- writing: a rule line turned into the expressions iptables-nft 1.8.9 writes for it ----------
// The inverse of ruleLine for the lines the CNI plugins write per pod: the masquerade rules (the
// reference's ipmasq_iptables_linux.go), the firewall's pod rules and portmap's (chain.go): `-A CHAIN
// [[!] -s A/LEN] [[!] -d A/LEN] [-p tcp|udp] [-m comment --comment T] [-m conntrack --ctstate S,..]
// [-m tcp|udp [[!] --sport P[:P]] [[!] --dport P[:P]]] [-m multiport --sports|--dports|--ports L]
// [-m mark [!] --mark V[/M]] -j ACCEPT|DROP|RETURN|MASQUERADE|CNI-...|DNAT --to-destination A[:P]|
// MARK --set-xmark V/M`. The expressions are the ones iptables-restore sends for the same line
// (native payload, meta, bitwise, cmp and range expressions where iptables-nft uses them, the xt
// matches and targets with their kernel structures elsewhere, a counter), checked attribute for
// attribute against test/unit/xtables-nft-captured.json and, through iptables-save, in the
// differential tests, so iptables-save, iptables -D and the reference plugins see the same rule
// whichever wrote it. Any other line (addrtype, interfaces, the user's portmap conditions, ...) is
// not encodable: the caller execs iptables-restore for it.

const NFT_REG_VERDICT = 0;
const NFT_REG_1 = 1;
const NF_ACCEPT = 1;
const NF_DROP = 0;
const NFT_RETURN = -5;
const NFT_JUMP = -3;
const XT_COMMENT_LEN = 256; // struct xt_comment_info
// struct nf_nat_ipv4_multi_range_compat (rangesize 1, one zeroed range) / struct nf_nat_range.
const masqueradeInfo = (f: Family): Buffer => {
  const b = Buffer.alloc(f === 4 ? 24 : 40);
  if (f === 4) b.writeUInt32LE(1, 0);
  return b;
};

const expr = (name: string, ...data: Buffer[]): Buffer => nested(1 /* NFTA_LIST_ELEM */, attrStr(1 /* NFTA_EXPR_NAME */, name), nested(2 /* NFTA_EXPR_DATA */, ...data));
const cmpData = (v: Buffer): Buffer => nested(3 /* NFTA_CMP_DATA */, attr(NFTA_DATA_VALUE, v));
const verdictExpr = (code: number, chain?: string): Buffer =>
  expr('immediate', attrBE32(1 /* NFTA_IMMEDIATE_DREG */, NFT_REG_VERDICT), nested(2 /* NFTA_IMMEDIATE_DATA */, nested(NFTA_DATA_VERDICT, attrBE32(NFTA_VERDICT_CODE, code), ...(chain ? [attrStr(NFTA_VERDICT_CHAIN, chain)] : []))));

/** The xt match for `-m comment --comment TEXT` or `-m conntrack --ctstate STATE,...`, or undefined for anything else. */
function matchExpr(name: 'comment' | 'conntrack', opt: string | undefined, val: string | undefined): Buffer | undefined {
  if (val === undefined) return undefined;
  let rev = 0;
  let info: Buffer;
  if (name === 'comment' && opt === '--comment') {
    // Printable ASCII only (the plugins' comments are): anything else goes the tool's way, bytes and all.
    if (!/^[\x20-\x7e]*$/.test(val)) return undefined;
    const text = Buffer.from(val, 'latin1');
    if (text.length >= XT_COMMENT_LEN) return undefined;
    info = Buffer.alloc(XT_COMMENT_LEN);
    text.copy(info);
  } else if (name === 'conntrack' && opt === '--ctstate') {
    let states = 0;
    for (const st of val.split(',')) {
      const bit = CTSTATES.find(([, n]) => n === st)?.[0];
      if (bit === undefined) return undefined;
      states |= bit;
    }
    // xt_conntrack_mtinfo3 (168 bytes aligned): match_flags XT_CONNTRACK_STATE @146, state_mask @150 (see matchOptions).
    rev = 3;
    info = Buffer.alloc(168);
    info.writeUInt16LE(1, 146);
    info.writeUInt16LE(states, 150);
  } else return undefined;
  return xt('match', name, rev, info);
}

/** add_addr of nft-shared.c: the payload bytes the mask covers, a bitwise only for a partial byte, then the compare. */
function addrExprs(f: Family, offset: number, cidr: string, inv: boolean): Buffer[] | undefined {
  const n = parseCIDR(cidr);
  if (!n || n.ip.family !== f || n.prefix === 0 || !/\/[1-9]\d{0,2}$/.test(cidr)) return undefined;
  const alen = f === 4 ? 4 : 16;
  const addr = Buffer.alloc(alen);
  const m = Buffer.alloc(alen);
  const maskBits = mask(f, n.prefix);
  for (let i = 0; i < alen; i++) {
    const shift = BigInt((alen - 1 - i) * 8);
    m[i] = Number((maskBits >> shift) & 0xffn);
    addr[i] = Number((n.ip.value >> shift) & 0xffn) & m[i]!;
  }
  const whole = n.prefix % 8 === 0;
  const len = whole ? n.prefix / 8 : alen;
  const out = [load(BASE_NETWORK, offset, len)];
  if (!whole)
    out.push(expr('bitwise', attrBE32(1 /* SREG */, NFT_REG_1), attrBE32(2 /* DREG */, NFT_REG_1), attrBE32(3 /* LEN */, len), nested(4 /* MASK */, attr(NFTA_DATA_VALUE, m)), nested(5 /* XOR */, attr(NFTA_DATA_VALUE, Buffer.alloc(len)))));
  out.push(cmp(inv ? CMP_NEQ : CMP_EQ, addr.subarray(0, len)));
  return out;
}

const PROTOS = new Map([['tcp', 6], ['udp', 17]]);
const META_MARK_KEY = 3;

/** A port or an inclusive port range (`80`, `1000:2000`) as [from, to], or undefined. */
// Numbers in canonical decimal only: iptables reads them with strtoul(.., 0), so a leading 0 is octal.
const DEC = '(0|[1-9]\\d{0,4})';
const PORT_RE = new RegExp(`^${DEC}(?::${DEC})?$`);

/** A port or an inclusive port range (`80`, `1000:2000`, ends strictly increasing) as [from, to], or undefined. */
function portRange(v: string): [number, number] | undefined {
  const m = PORT_RE.exec(v);
  const from = Number(m?.[1]);
  const to = m?.[2] === undefined ? from : Number(m[2]);
  return m && to <= 65535 && (m[2] === undefined || from < to) ? [from, to] : undefined;
}

const be16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const le32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const load = (base: number, offset: number, len: number): Buffer => expr('payload', attrBE32(1 /* DREG */, NFT_REG_1), attrBE32(2 /* BASE */, base), attrBE32(3 /* OFFSET */, offset), attrBE32(4 /* LEN */, len));
const cmp = (op: number, v: Buffer): Buffer => expr('cmp', attrBE32(1 /* SREG */, NFT_REG_1), attrBE32(2 /* OP */, op), cmpData(v));
const xt = (kind: 'match' | 'target', name: string, rev: number, info: Buffer): Buffer => expr(kind, attrStr(1 /* NAME */, name), attrBE32(2 /* REV */, rev), attr(3 /* INFO */, info));

/** `--sport`/`--dport` of `-m tcp|udp` as iptables-nft writes them: a 2-byte transport load, then a compare (one port) or a range. */
function portExprs(offset: number, v: string, inv: boolean): Buffer[] | undefined {
  const r = portRange(v);
  // 1.8.9 writes a range from 0 or to 65535 as a one-sided compare (0:65535 as nothing): not ours to encode.
  if (!r || (r[0] !== r[1] && (r[0] === 0 || r[1] === 65535))) return undefined;
  if (r[0] === r[1]) return [load(BASE_TRANSPORT, offset, 2), cmp(inv ? CMP_NEQ : CMP_EQ, be16(r[0]))];
  const range = expr('range', attrBE32(1 /* SREG */, NFT_REG_1), attrBE32(2 /* OP */, inv ? 1 : 0), nested(3 /* FROM */, attr(NFTA_DATA_VALUE, be16(r[0]))), nested(4 /* TO */, attr(NFTA_DATA_VALUE, be16(r[1]))));
  return [load(BASE_TRANSPORT, offset, 2), range];
}

/** xt_multiport_v1 for `--sports|--dports|--ports LIST` (ports and a:b ranges, at most 15 entries). */
function multiportInfo(opt: string, list: string): Buffer | undefined {
  const flags = ['--sports', '--dports', '--ports'].indexOf(opt);
  if (flags < 0) return undefined;
  const info = Buffer.alloc(48);
  let n = 0;
  for (const item of list.split(',')) {
    const r = portRange(item);
    if (!r) return undefined;
    const isRange = item.includes(':');
    if (n + (isRange ? 2 : 1) > 15) return undefined;
    info.writeUInt16LE(r[0], 2 + 2 * n);
    if (isRange) {
      info[32 + n] = 1; // pflags: this entry starts a range
      info.writeUInt16LE(r[1], 2 + 2 * ++n);
    }
    n++;
  }
  info[0] = flags;
  info[1] = n;
  return info;
}

/** `0xV` or `0xV/0xM` as [value, mask] (mask 0xffffffff when absent). */
function markPair(v: string): [number, number] | undefined {
  const m = /^(0x[0-9a-f]{1,8}|0|[1-9]\d{0,9})(?:\/(0x[0-9a-f]{1,8}|0|[1-9]\d{0,9}))?$/i.exec(v);
  const value = Number(m?.[1]);
  const mask = m?.[2] === undefined ? 0xffffffff : Number(m[2]);
  return m && value <= 0xffffffff && mask <= 0xffffffff ? [value, mask] : undefined;
}

/** struct nf_nat_range2 for `--to-destination ADDR[:PORT]` (IPv6 as [ADDR]:PORT), as DNAT revision 2 takes it. */
function dnatInfo(f: Family, to: string): Buffer | undefined {
  const m = f === 4 ? /^([0-9.]+)(?::(\d{1,5}))?$/.exec(to) : /^(?:\[([0-9a-f:.]+)\](?::(\d{1,5}))?|([0-9a-f:.]+))$/i.exec(to);
  if (!m) return undefined;
  const addr = parseCIDR(`${m[1] ?? m[3]}/${f === 4 ? 32 : 128}`);
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (!addr || addr.ip.family !== f || (port !== undefined && (port < 1 || port > 65535))) return undefined;
  const info = Buffer.alloc(48);
  info.writeUInt32LE(port === undefined ? 1 : 3, 0); // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
  const alen = f === 4 ? 4 : 16;
  for (let i = 0; i < alen; i++) info[4 + i] = info[20 + i] = Number((addr.ip.value >> BigInt((alen - 1 - i) * 8)) & 0xffn);
  if (port !== undefined) {
    info.writeUInt16BE(port, 36);
    info.writeUInt16BE(port, 38);
  }
  return info;
}

/** What encodeRule makes of a line: the expressions, and the protocol for NFTA_RULE_COMPAT when the line has `-p`. */
export interface EncodedRule {
  exprs: Buffer;
  proto?: number;
}

/**
 * The NFTA_RULE_EXPRESSIONS payload iptables-nft writes for `args` (a rule line's words after
 * `-A CHAIN`, unquoted, in iptables-save's order) in table `table` of family `f`, or undefined when the
 * line is outside the subset above (the caller then execs iptables-restore). The expressions are in
 * iptables-nft's order, which is not the line's: the protocol first, then the addresses, the
 * matches as given, a counter, the target.
 */
export function encodeRule(f: Family, table: string, args: readonly string[]): EncodedRule | undefined {
  const addrs: Buffer[] = [];
  let proto: number | undefined;
  const matches: Buffer[] = [];
  let target: Buffer | undefined;
  let seen = ''; // the last of s, d, p, m: options only in the order iptables-save prints them, each once
  for (let i = 0; i < args.length; ) {
    const inv = args[i] === '!';
    if (inv) i++;
    const opt = args[i];
    const val = args[i + 1];
    if (val === undefined || target) return undefined;
    if (opt === '-s' || opt === '-d') {
      if (seen !== '' && !(seen === 's' && opt === '-d')) return undefined;
      const e = addrExprs(f, opt === '-s' ? (f === 4 ? 12 : 8) : f === 4 ? 16 : 24, val, inv);
      if (!e) return undefined;
      addrs.push(...e);
      seen = opt[1]!;
      i += 2;
    } else if (opt === '-p' && !inv && seen !== 'p' && seen !== 'm' && PROTOS.has(val)) {
      proto = PROTOS.get(val)!;
      seen = 'p';
      i += 2;
    } else if (opt === '-m' && !inv) {
      seen = 'm';
      i += 2;
      if (val === 'comment' || val === 'conntrack') {
        const m = matchExpr(val, args[i], args[i + 1]);
        if (!m) return undefined;
        matches.push(m);
        i += 2;
      } else if ((val === 'tcp' || val === 'udp') && proto === PROTOS.get(val)) {
        // --sport then --dport, each at most once, each may be negated (iptables-save's order).
        const ports: Array<{ single: boolean; neg: boolean }> = [];
        for (const [name, offset] of [['--sport', 0], ['--dport', 2]] as const) {
          const neg = args[i] === '!' && args[i + 1] === name;
          if (args[i + (neg ? 1 : 0)] !== name) continue;
          const v = args[i + (neg ? 2 : 1)] ?? '';
          const e = portExprs(offset, v, neg);
          if (!e) return undefined;
          matches.push(...e);
          ports.push({ single: !v.includes(':'), neg });
          i += neg ? 3 : 2;
        }
        // Two single ports of the same sense are one 4-byte compare in 1.8.9: such lines go to the tool.
        if (!ports.length || (ports.length === 2 && ports.every((p) => p.single) && ports[0]!.neg === ports[1]!.neg)) return undefined;
      } else if (val === 'multiport' && proto !== undefined && args[i + 1] !== undefined) {
        const info = multiportInfo(args[i]!, args[i + 1]!);
        if (!info) return undefined;
        matches.push(xt('match', 'multiport', 1, info));
        i += 2;
      } else if (val === 'mark') {
        // meta mark, masked by a bitwise unless the mask is all ones, then the compare (host byte order).
        const neg = args[i] === '!';
        const pair = args[i + (neg ? 1 : 0)] === '--mark' ? markPair(args[i + (neg ? 2 : 1)] ?? '') : undefined;
        if (!pair) return undefined;
        matches.push(expr('meta', attrBE32(2 /* KEY */, META_MARK_KEY), attrBE32(1 /* DREG */, NFT_REG_1)));
        if (pair[1] !== 0xffffffff)
          matches.push(expr('bitwise', attrBE32(1 /* SREG */, NFT_REG_1), attrBE32(2 /* DREG */, NFT_REG_1), attrBE32(3 /* LEN */, 4), nested(4 /* MASK */, attr(NFTA_DATA_VALUE, le32(pair[1]))), nested(5 /* XOR */, attr(NFTA_DATA_VALUE, Buffer.alloc(4)))));
        matches.push(cmp(neg ? CMP_NEQ : CMP_EQ, le32(pair[0]))); // unmasked, as add_nft_mark compares
        i += neg ? 3 : 2;
      } else return undefined;
    } else if (opt === '-j' && !inv) {
      const rest = args.slice(i + 2);
      if (val === 'DNAT' && rest.length === 2 && rest[0] === '--to-destination') {
        const info = dnatInfo(f, rest[1]!);
        // libxt_NAT refuses a port without -p tcp|udp|sctp|dccp; the kernel would not.
        if (!info || (info.readUInt32LE(0) & 2 && proto === undefined)) return undefined;
        target = xt('target', 'DNAT', 2, info);
      } else if (val === 'MARK' && rest.length === 2 && rest[0] === '--set-xmark') {
        const pair = markPair(rest[1]!);
        if (!pair) return undefined;
        target = xt('target', 'MARK', 2, Buffer.concat([le32(pair[0]), le32(pair[1])]));
      } else if (rest.length) return undefined;
      else if (val === 'ACCEPT') target = verdictExpr(NF_ACCEPT);
      else if (val === 'DROP' && table !== 'nat') target = verdictExpr(NF_DROP); // iptables inhibits DROP in nat
      else if (val === 'RETURN') target = verdictExpr(NFT_RETURN);
      else if (val === 'MASQUERADE') target = xt('target', 'MASQUERADE', 0, masqueradeInfo(f));
      // A jump only to one of the CNI plugins' chains (no extension target's name starts with CNI-).
      else if (/^CNI-[-A-Za-z0-9_]{1,24}$/.test(val)) target = verdictExpr(NFT_JUMP, val);
      else return undefined;
      i = args.length;
    } else return undefined;
  }
  if (!target) return undefined;
  const head = proto === undefined ? [] : [expr('meta', attrBE32(2 /* KEY */, META_L4PROTO), attrBE32(1 /* DREG */, NFT_REG_1)), cmp(CMP_EQ, Buffer.of(proto))];
  const counter = expr('counter', attrBE64(1 /* PACKETS */, 0n), attrBE64(2 /* BYTES */, 0n));
  return { exprs: Buffer.concat([...head, ...addrs, ...matches, counter, target]), ...(proto === undefined ? {} : { proto }) };
}
