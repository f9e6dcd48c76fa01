// The host-local config (the reference's backend/allocator/config.go): schema, then the reference's
// canonicalisation and checks. Every failure is code 7 naming the field and its value.
import * as z from 'zod/mini';
import { configError, fieldName, opt, parseConfig, sparseObject, stateDirFromConfig } from '../../shared/cni/config';
import { loadArgs } from '../../shared/cni/args';
import { CniError, ErrInvalidEnvironmentVariables, ErrInvalidNetworkConfig } from '../../shared/cni/errors';
import { confRoute, routeSchema } from '../../shared/cni/netconf';
import { atLeast } from '../../shared/cni/version';
import { parseCIDR, parseIP, type IP } from '../../shared/ip';
import type { Route } from '../../shared/cni/types';
import { RangeRuleError, rangeString, type RawRange } from './range';
import { canonicalizeRangeSet, findSetOverlap, setFamily, type RangeSet } from './range-set';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

// Bounds on what one config may ask for (issue 10: 5,000 ranges took 10.8 s to validate, 100,000
// requested IPs 5 s). Each is far above real use and keeps validation to milliseconds:
// - a range set puts one address on the pod's interface: 256 sets is far beyond any multi-homing;
// - real sets have a few ranges (one per node-local pool); 4,096 in all sets together;
// - each requested IP needs a set of its own, so more than MAX_RANGE_SETS distinct ones always fail;
//   1,024 entries leaves room for the same IP repeated across CNI_ARGS, args and runtimeConfig.
export const MAX_RANGE_SETS = 256;
export const MAX_RANGES = 4096;
export const MAX_REQUESTED_IPS = 1024;

const str = () => opt(z.string());

function rangeSchema() {
  return z.object({ subnet: str(), rangeStart: str(), rangeEnd: str(), gateway: str() });
}
const rangeSets = () => opt(z.array(z.array(rangeSchema())));

/** The schema for this config: only the keys it has are built (sparseObject). */
function netSchema(raw: unknown) {
  const ipam = (v: unknown) =>
    sparseObject(v, {
      type: str,
      subnet: str,
      rangeStart: str,
      rangeEnd: str,
      gateway: str,
      ranges: rangeSets,
      routes: () => opt(z.array(routeSchema())),
      dataDir: str,
      resolvConf: str,
      // Beyond the reference (README "host-local"): stale-lease reclaim and the lock wait bound.
      reclaimStaleLeases: () => opt(z.boolean()),
      lockTimeoutMs: () => opt(z.number().check(z.int(), z.minimum(0), z.maximum(3_600_000))),
    });
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: str,
      ipam: (v) => opt(ipam(v)),
      runtimeConfig: (v) => opt(sparseObject(v, { ipRanges: rangeSets, ips: () => opt(z.array(z.string())) })),
      args: (v) => opt(sparseObject(v, { cni: (c) => opt(sparseObject(c, { ips: () => opt(z.array(z.string())) })) })),
    },
    { required: ['name'] },
  );
}

type RawRangeJSON = z.infer<ReturnType<typeof rangeSchema>>;

export interface IPAMConfig {
  name: string;
  cniVersion: string;
  dataDir: string;
  ranges: RangeSet[]; // final order: runtimeConfig.ipRanges, legacy range, ipam.ranges
  routes: Route[];
  resolvConf: string;
  requestedIPs: IP[]; // CNI_ARGS IP, args.cni.ips, runtimeConfig.ips (deduplicated)
  reclaimStaleLeases: boolean;
  lockTimeoutMs: number;
}

type Path = ReadonlyArray<string | number>;

function ipField(path: Path, v: string | null | undefined): IP | undefined {
  if (v === undefined || v === null || v === '') return undefined; // Go: empty text = no IP
  const ip = parseIP(v);
  if (!ip) throw configError(path, v, 'not a valid IP address');
  return ip;
}

function rawRange(r: RawRangeJSON, path: Path): RawRange {
  const s = r.subnet ?? '';
  const subnet = parseCIDR(s);
  if (!subnet) throw configError([...path, 'subnet'], r.subnet, `invalid CIDR address: ${s}`);
  return {
    subnet,
    rangeStart: ipField([...path, 'rangeStart'], r.rangeStart),
    rangeEnd: ipField([...path, 'rangeEnd'], r.rangeEnd),
    gateway: ipField([...path, 'gateway'], r.gateway),
  };
}

/** `ip` or `ip/prefix` (the reference's pkg/ip.IP text form); only the address is used. */
function requestedIP(s: string): IP | null {
  const slash = s.indexOf('/');
  if (slash < 0) return parseIP(s);
  return parseCIDR(s)?.ip ?? null;
}

/**
 * Loads and checks the config like the reference's LoadIPAMConfig: range sets are
 * runtimeConfig.ipRanges, then the legacy top-level range, then ipam.ranges.
 */
export function loadIPAMConfig(conf: Record<string, unknown>, cniArgs: string): IPAMConfig {
  const n = parseConfig(netSchema(conf), conf);
  const ipam = n.ipam;
  if (!ipam) throw configError('ipam', undefined, "IPAM config missing 'ipam' key");
  const cniVersion = n.cniVersion || '0.1.0';

  const requested: IP[] = [];
  const seen = new Set<string>();
  let asked = 0;
  const want = (ip: IP | null, path: Path | string, v: string): void => {
    if (!ip) throw typeof path === 'string' ? envError(v) : configError(path, v, `cannot understand ip: ${v}`);
    const key = `${ip.family}/${ip.value}`;
    if (seen.has(key)) return;
    seen.add(key);
    requested.push(ip);
  };
  const envIP = loadArgs(cniArgs, ['IP']).IP;
  if (envIP) {
    asked = 1;
    want(requestedIP(envIP), 'CNI_ARGS', envIP);
  }
  for (const [path, list] of [[['args', 'cni', 'ips'], n.args?.cni?.ips ?? []], [['runtimeConfig', 'ips'], n.runtimeConfig?.ips ?? []]] as const) {
    asked += list.length; // counted before any is parsed: a huge list costs nothing
    if (asked > MAX_REQUESTED_IPS) throw tooMany(path, list.length, asked, 'entry', `at most ${MAX_REQUESTED_IPS} requested IPs in all`);
    list.forEach((s, i) => want(requestedIP(s), [...path, i], s));
  }

  const origins: Array<{ path: Path; raw: RawRangeJSON[]; legacy: boolean }> = [];
  const addSets = (path: Path, sets: RawRangeJSON[][], legacy = false): void => {
    sets.forEach((set, i) => origins.push({ path: legacy ? path : [...path, i], raw: set, legacy }));
    if (origins.length > MAX_RANGE_SETS) throw tooMany(path, sets.length, origins.length, 'range set', `at most ${MAX_RANGE_SETS} range sets in all`);
  };
  addSets(['runtimeConfig', 'ipRanges'], n.runtimeConfig?.ipRanges ?? []);
  if (ipam.subnet) addSets(['ipam'], [[ipam]], true);
  addSets(['ipam', 'ranges'], ipam.ranges ?? []);
  if (origins.length === 0) throw configError('ipam.ranges', ipam.ranges ?? undefined, 'no IP ranges specified');
  let rangeCount = 0;
  for (const o of origins) {
    rangeCount += o.raw.length;
    if (rangeCount > MAX_RANGES) throw tooMany(o.path, o.raw.length, rangeCount, 'range', `at most ${MAX_RANGES} ranges in all range sets`);
  }

  const pathOf = (o: (typeof origins)[number], j: number): Path => (o.legacy ? o.path : [...o.path, j]);
  const ranges = origins.map((o, i): RangeSet => {
    try {
      return canonicalizeRangeSet(o.raw.map((r, j) => rawRange(r, pathOf(o, j))));
    } catch (e) {
      if (!(e instanceof RangeRuleError)) throw e;
      const p = e.field ? [...pathOf(o, e.rangeIndex), e.field] : o.path;
      const value = e.field ? o.raw[e.rangeIndex]?.[e.field] : o.raw;
      throw configError(p, value, `invalid range set ${i}: ${e.message}`);
    }
  });

  const v4 = ranges.filter((s) => setFamily(s) === 4).length;
  if ((v4 > 1 || ranges.length - v4 > 1) && !atLeast(cniVersion, '0.3.0'))
    throw configError('cniVersion', cniVersion, `CNI version ${cniVersion} does not support more than 1 address per family`);
  const o = findSetOverlap(ranges);
  if (o) {
    const [[i, a], [j, b]] = [o.a, o.b];
    const later = origins[j]!;
    throw configError(pathOf(later, b), later.raw[b], `range set ${i} overlaps with ${j}: ${rangeString(ranges[i]![a]!)} and ${rangeString(ranges[j]![b]!)}`);
  }

  return {
    name: n.name,
    cniVersion,
    dataDir: stateDirFromConfig('ipam.dataDir', ipam.dataDir, DEFAULT_DATA_DIR),
    ranges,
    routes: (ipam.routes ?? []).map((r, i) => confRoute(r, ['ipam', 'routes', i])),
    resolvConf: ipam.resolvConf ?? '',
    requestedIPs: requested,
    reclaimStaleLeases: ipam.reclaimStaleLeases ?? true,
    lockTimeoutMs: ipam.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
  };
}

/** A list past its bound: names the field and the bound, not the (huge) value. */
function tooMany(path: Path, count: number, total: number, noun: 'entry' | 'range' | 'range set', bound: string): CniError {
  const what = count === 1 ? noun : noun === 'entry' ? 'entries' : `${noun}s`;
  const all = total > count ? `, ${total} in all` : '';
  return new CniError(ErrInvalidNetworkConfig, `invalid config: field "${fieldName(path)}" has ${count} ${what}${all}: ${bound}`);
}

function envError(v: string): CniError {
  return new CniError(ErrInvalidEnvironmentVariables, `CNI_ARGS: invalid IP ${JSON.stringify(v)}: not an IP address`);
}
