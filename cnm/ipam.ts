// Docker's IPAM semantics (libnetwork ipams/default + the `docker network create` flags) on top of
// host-local's on-disk store: the store under <state>/ipam/<network> is the one source of truth,
// shared with the host-local plugin of the network's conflist (what `cnitool add` runs), so an
// address is never handed out twice whoever asks.
//
// Why allocate here and run the chain with `static` IPAM (instead of host-local with `ips`): in
// libnetwork an endpoint's address exists from CreateEndpoint to endpoint Delete, across any
// number of joins, and is known before the sandbox is. The lease is therefore owned by the
// endpoint (lease owner = endpoint ID), and the join's chain only has to put exactly that address
// on the link, which is what `static` does. host-local with a requested IP would try to lease the
// address a second time under the sandbox's ID and refuse it as taken.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { compareIP, contains, formatCIDR, formatIP, lastAddress, networkOf, parseCIDR, parseIP, type Family, type IP, type IPNet } from '../shared/ip';
import { IPAllocator } from '../ipam/host-local/allocator';
import { DiskStore } from '../ipam/host-local/disk-store';
import { canonicalizeRange, type Range } from '../ipam/host-local/range';
import type { RangeSet } from '../ipam/host-local/range-set';
import type { Flocker } from '../shared/linux/lock';
import { CnmError, invalid } from './errors';
import type { IpamPoolConfig } from './model';

/** The `docker network create` IPAM flags as given (each may repeat). */
export interface IpamRequest {
  subnets: string[];
  ipRanges: string[];
  gateways: string[];
  auxAddresses: Record<string, string>; // name → IP
  ipv6: boolean;
}

/** The owner's interface name in host-local lease files (`<id>\r\n<ifname>`): endpoint leases. */
export const ENDPOINT_LEASE_IFNAME = 'cnm-endpoint';
/** Aux addresses are leased by the network's ID under this interface name, so nothing hands them out. */
export const AUX_LEASE_IFNAME = 'cnm-aux';

const cidrArg = (flag: string, s: string): IPNet => {
  const n = parseCIDR(s);
  if (!n) throw invalid(`invalid ${flag} ${JSON.stringify(s)}: not a CIDR`);
  return n;
};
const ipArg = (flag: string, s: string): IP => {
  const ip = parseIP(s);
  if (!ip) throw invalid(`invalid ${flag} ${JSON.stringify(s)}: not an IP address`);
  return ip;
};

/** Two networks overlap when either contains the other's network address. */
export function subnetsOverlap(a: IPNet, b: IPNet): boolean {
  return a.ip.family === b.ip.family && (contains(a, b.ip) || contains(b, a.ip));
}

/**
 * The IPAM config Docker would store for these flags: each --ip-range, --gateway and --aux-address
 * goes to the --subnet that contains it (one range and one gateway per subnet at most), a subnet
 * without --gateway gets its first usable address (libnetwork ipams/default), IPv6 subnets need
 * --ipv6. Throws CnmError 'invalid' naming the flag and value.
 */
export function resolveIpamConfig(req: IpamRequest): IpamPoolConfig[] {
  const subnets = req.subnets.map((s) => {
    const n = cidrArg('--subnet', s);
    if (formatIP(networkOf(n).ip) !== formatIP(n.ip)) throw invalid(`invalid --subnet ${s}: host bits set (the network is ${formatCIDR(networkOf(n))})`);
    if (n.ip.family === 6 && !req.ipv6) throw invalid(`--subnet ${s} is IPv6: add --ipv6`);
    if (n.prefix > (n.ip.family === 4 ? 30 : 126)) throw invalid(`--subnet ${s} is too small to allocate from`);
    return n;
  });
  subnets.forEach((a, i) =>
    subnets.slice(i + 1).forEach((b) => {
      if (subnetsOverlap(a, b)) throw invalid(`--subnet ${formatCIDR(a)} overlaps --subnet ${formatCIDR(b)}`);
    }),
  );
  if (req.ipv6 && !subnets.some((n) => n.ip.family === 6)) throw invalid('--ipv6 needs an IPv6 --subnet');
  const pools = subnets.map((subnet): IpamPoolConfig & { net: IPNet } => ({ net: subnet, subnet: formatCIDR(subnet), gateway: '' }));
  // `what` is the flag and its value as the user wrote them (`--gateway 198.18.0.1`, `--aux-address a=198.18.0.5`).
  const owner = (what: string, ip: IP): (typeof pools)[number] => {
    const p = pools.find((p) => contains(p.net, ip));
    if (!p) throw invalid(`${what} is in no --subnet`);
    return p;
  };
  for (const r of req.ipRanges) {
    const n = cidrArg('--ip-range', r);
    const p = owner(`--ip-range ${r}`, n.ip);
    if (!contains(p.net, lastAddress(n))) throw invalid(`--ip-range ${r} is not inside --subnet ${p.subnet}`);
    if (p.ipRange) throw invalid(`--ip-range ${r}: --subnet ${p.subnet} already has --ip-range ${p.ipRange}`);
    p.ipRange = formatCIDR(networkOf(n));
  }
  for (const g of req.gateways) {
    const ip = ipArg('--gateway', g);
    const p = owner(`--gateway ${g}`, ip);
    if (p.gateway) throw invalid(`--gateway ${g}: --subnet ${p.subnet} already has --gateway ${p.gateway}`);
    checkUsable('--gateway', g, p.net, ip);
    p.gateway = formatIP(ip);
  }
  for (const [name, a] of Object.entries(req.auxAddresses)) {
    const ip = ipArg(`--aux-address ${name}`, a);
    const p = owner(`--aux-address ${name}=${a}`, ip);
    checkUsable(`--aux-address ${name}=`, a, p.net, ip);
    // One address, one reservation (libnetwork refuses the second: "Address already in use").
    const dup = Object.entries(p.auxAddresses ?? {}).find(([, b]) => b === formatIP(ip));
    if (dup) throw invalid(`--aux-address ${name}=${a}: ${a} is already --aux-address ${dup[0]}`);
    (p.auxAddresses ??= {})[name] = formatIP(ip);
  }
  for (const p of pools) {
    if (!p.gateway) p.gateway = formatIP(canonicalizeRange({ subnet: p.net }).rangeStart); // the first usable address
    for (const [name, a] of Object.entries(p.auxAddresses ?? {}))
      if (a === p.gateway) throw invalid(`--aux-address ${name}=${a} is the gateway of --subnet ${p.subnet}`);
  }
  return pools.map(({ net: _net, ...p }) => p);
}

function checkUsable(flag: string, value: string, net: IPNet, ip: IP): void {
  const r = canonicalizeRange({ subnet: net });
  if (compareIP(ip, r.rangeStart) < 0 || compareIP(ip, r.rangeEnd) > 0) throw invalid(`${flag}${flag.endsWith('=') ? '' : ' '}${value} is the network or broadcast address of ${formatCIDR(net)}`);
}

/** The first pair of overlapping subnets between two IPAM configs, or null. */
export function overlappingSubnets(a: readonly IpamPoolConfig[], b: readonly IpamPoolConfig[]): [string, string] | null {
  for (const x of a)
    for (const y of b) if (subnetsOverlap(parseCIDR(x.subnet)!, parseCIDR(y.subnet)!)) return [x.subnet, y.subnet];
  return null;
}

const familyOfPool = (p: IpamPoolConfig): Family => parseCIDR(p.subnet)!.ip.family;

/**
 * host-local range sets for the config: one set per family (IPv4 first), a range per subnet
 * ([rangeStart, rangeEnd] = --ip-range's usable part when `dynamic`, else the whole subnet), so an
 * endpoint gets one address per family as in Docker. These are also the `ranges` of the conflist.
 */
export function rangeSets(config: readonly IpamPoolConfig[], dynamic: boolean): RangeSet[] {
  const sets: RangeSet[] = [];
  for (const f of [4, 6] as const) {
    const set = config
      .filter((p) => familyOfPool(p) === f)
      .map((p): Range => {
        const subnet = parseCIDR(p.subnet)!;
        const whole = canonicalizeRange({ subnet, gateway: parseIP(p.gateway)! });
        if (!dynamic || !p.ipRange) return whole;
        const r = parseCIDR(p.ipRange)!;
        const first = networkOf(r).ip;
        const last = lastAddress(r);
        return {
          ...whole,
          rangeStart: compareIP(first, whole.rangeStart) < 0 ? whole.rangeStart : first,
          rangeEnd: compareIP(last, whole.rangeEnd) > 0 ? whole.rangeEnd : last,
        };
      });
    if (set.length) sets.push(set);
  }
  return sets;
}

/** The `ranges` of a host-local IPAM config for `config` (dynamic allocation: --ip-range applies). */
export function hostLocalRanges(config: readonly IpamPoolConfig[]): Array<Array<Record<string, string>>> {
  return rangeSets(config, true).map((set) =>
    set.map((r) => ({ subnet: formatCIDR(r.subnet), rangeStart: formatIP(r.rangeStart), rangeEnd: formatIP(r.rangeEnd), gateway: formatIP(r.gateway) })),
  );
}

/** An address an endpoint holds: CIDR (address/subnet prefix) and its subnet's gateway. */
export interface Allocated {
  address: string;
  gateway: string;
}

export interface Allocation {
  ipv4?: Allocated;
  ipv6?: Allocated;
}

/**
 * A network's endpoint addresses: what the controller calls at network create (aux addresses),
 * createEndpoint, endpoint delete and network delete. NetworkIpam is the local implementation; a
 * driver whose networks span hosts supplies its own (Driver.ipam). Results may be promises.
 */
export interface EndpointIpam {
  reserveAux(networkID: string): void | Promise<void>;
  allocate(owner: string, requested?: { ipv4?: string; ipv6?: string }): Allocation | Promise<Allocation>;
  release(owner: string): void | Promise<void>;
  destroy(): void | Promise<void>;
}

/** Where subnets come from when `network create` has no --subnet (dockerd --default-address-pool). */
export interface AddressPool {
  base: string; // CIDR
  size: number; // prefix length of each network carved from it
}

/** dockerd's defaults (libnetwork ipamutils): 172.17-31.0.0/16 as /16s, then 192.168.0.0/16 as /20s. */
export const DEFAULT_ADDRESS_POOLS: readonly AddressPool[] = [
  ...Array.from({ length: 15 }, (_, i) => ({ base: `172.${17 + i}.0.0/16`, size: 16 })),
  { base: '192.168.0.0/16', size: 20 },
];

/** Parses dockerd's `base=CIDR,size=N`. Throws CnmError 'invalid' naming the value. */
export function parseAddressPool(s: string): AddressPool {
  const kv = Object.fromEntries(s.split(',').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
  const base = parseCIDR(kv.base ?? '');
  const size = Number(kv.size);
  if (!base || !/^\d+$/.test(kv.size ?? '') || size < base.prefix || size > (base.ip.family === 4 ? 30 : 126))
    throw invalid(`invalid --default-address-pool ${JSON.stringify(s)}: expected base=CIDR,size=N with N from the base's prefix to ${base?.ip.family === 6 ? 126 : 30}`);
  return { base: formatCIDR(networkOf(base)), size };
}

/**
 * The first subnet of `size` carved from the pools, in order, that overlaps nothing in `taken`
 * (other networks' subnets, the host's routes), as libnetwork's default IPAM picks one; null when
 * all are taken. At most 65536 candidates per pool are tried.
 */
export function pickSubnet(pools: readonly AddressPool[], taken: readonly IPNet[]): string | null {
  for (const p of pools) {
    const base = parseCIDR(p.base)!;
    const step = 1n << BigInt((base.ip.family === 4 ? 32 : 128) - p.size);
    const count = 1n << BigInt(p.size - base.prefix);
    for (let i = 0n; i < count && i < 65536n; i++) {
      const cand: IPNet = { ip: { family: base.ip.family, value: networkOf(base).ip.value + i * step }, prefix: p.size };
      if (!taken.some((t) => subnetsOverlap(t, cand))) return formatCIDR(cand);
    }
  }
  return null;
}

export interface NetworkIpamOptions {
  lockTimeoutMs?: number; // default 30 s
  flocker?: Flocker; // unit tests (no bun:ffi on Node)
}

/**
 * The IPAM of one network: host-local's DiskStore at `<dataDir>/<network>`, with Docker's
 * semantics. Every call opens, locks and closes the store (the plugin's own discipline).
 */
export class NetworkIpam implements EndpointIpam {
  constructor(
    readonly dataDir: string,
    readonly network: string,
    private readonly config: readonly IpamPoolConfig[],
    private readonly o: NetworkIpamOptions = {},
  ) {}

  private withStore<T>(fn: (s: DiskStore) => T): T {
    return new DiskStore(this.network, this.dataDir, { lockTimeoutMs: this.o.lockTimeoutMs ?? 30_000, flocker: this.o.flocker }).lockedThenClosed(fn);
  }

  /** Leases the aux addresses to the network (`networkID`, cnm-aux). Throws CnmError 'conflict' when one is taken. */
  reserveAux(networkID: string): void {
    this.withStore((s) => {
      for (const p of this.config)
        for (const [name, a] of Object.entries(p.auxAddresses ?? {})) {
          const ip = parseIP(a)!;
          const held = s.leaseAt(ip);
          if (held && held.id === networkID) continue;
          if (!s.reserve(networkID, AUX_LEASE_IFNAME, ip, 'aux')) throw new CnmError('conflict', `--aux-address ${name}=${a} is already in use`);
        }
    });
  }

  /**
   * One address per family the network has, leased to `owner` (an endpoint ID); `requested` are
   * --ip/--ip6 (anywhere in a subnet but its gateway, as Docker allows outside --ip-range). All or
   * nothing: on failure nothing stays leased. Throws CnmError ('invalid' for a requested address
   * outside the network, 'conflict' when taken or exhausted).
   */
  allocate(owner: string, requested: { ipv4?: string; ipv6?: string } = {}): Allocation {
    const want = new Map<Family, IP>();
    for (const [flag, s, f] of [['--ip', requested.ipv4, 4], ['--ip6', requested.ipv6, 6]] as const) {
      if (!s) continue;
      const ip = ipArg(flag, s);
      if (ip.family !== f) throw invalid(`invalid ${flag} ${s}: not an IPv${f} address`);
      const pool = this.config.find((p) => familyOfPool(p) === f && contains(parseCIDR(p.subnet)!, ip));
      if (!pool) throw invalid(`${flag} ${s} is in no subnet of network ${JSON.stringify(this.network)}`);
      // Said here in Docker's terms: host-local's own refusals name its range sets.
      checkUsable(flag, s, parseCIDR(pool.subnet)!, ip);
      if (formatIP(ip) === pool.gateway) throw new CnmError('conflict', `${flag} ${s} is the gateway of network ${JSON.stringify(this.network)}`);
      want.set(f, ip);
    }
    const dynamic = rangeSets(this.config, true);
    const whole = rangeSets(this.config, false);
    return this.withStore((s) => {
      const out: Allocation = {};
      for (const [f, ip] of want) {
        const held = s.leaseAt(ip);
        if (!held || (held.id === owner && held.ifname === ENDPOINT_LEASE_IFNAME)) continue;
        const aux = held.ifname === AUX_LEASE_IFNAME ? this.config.flatMap((p) => Object.entries(p.auxAddresses ?? {})).find(([, a]) => a === formatIP(ip)) : undefined;
        throw new CnmError('conflict', `${f === 4 ? '--ip' : '--ip6'} ${formatIP(ip)} is already in use on network ${JSON.stringify(this.network)}${aux ? ` (--aux-address ${aux[0]})` : ''}`);
      }
      try {
        dynamic.forEach((set, i) => {
          const f = set[0]!.subnet.ip.family;
          const ip = want.get(f);
          // The range ID is the set's index, as host-local numbers the conflist's sets.
          const got = new IPAllocator(ip ? whole[i]! : set, s, i, { reclaimStale: false }).get(owner, ENDPOINT_LEASE_IFNAME, ip);
          out[f === 4 ? 'ipv4' : 'ipv6'] = { address: got.address, gateway: got.gateway ?? '' };
        });
      } catch (e) {
        s.releaseByID(owner, ENDPOINT_LEASE_IFNAME);
        throw new CnmError('conflict', `network ${JSON.stringify(this.network)}: ${(e as Error).message}`, { cause: e });
      }
      return out;
    });
  }

  /** Releases what `owner` holds; nothing held is success. */
  release(owner: string): void {
    this.withStore((s) => s.releaseByID(owner, ENDPOINT_LEASE_IFNAME));
  }

  /** Removes the network's store directory (network delete). */
  destroy(): void {
    rmSync(join(this.dataDir, this.network), { recursive: true, force: true });
  }
}
