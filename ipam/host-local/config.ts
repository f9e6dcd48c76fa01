// The host-local config (the reference's backend/allocator/config.go): schema, then the reference's
// canonicalisation and checks. Every failure is code 7 naming the field and its value.
import * as z from 'zod/mini';
import { isAbsolute } from 'node:path';
import { configError, opt, parseConfig, sparseObject } from '../../shared/cni/config';
import { loadArgs } from '../../shared/cni/args';
import { confRoute, routeSchema } from '../../shared/cni/netconf';
import { CniError, ErrInvalidEnvironmentVariables } from '../../shared/cni/errors';
import { atLeast } from '../../shared/cni/version';
import { parseCIDR, parseIP, type IP } from '../../shared/ip';
import type { Route } from '../../shared/cni/types';
import { RangeRuleError, type RawRange } from './range';
import { canonicalizeRangeSet, setFamily, setsOverlap, type RangeSet } from './range-set';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;


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

type Path = Array<string | number>;

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

/** dataDir becomes a path: absolute, and no component may climb out of it. */
function dataDir(v: string | null | undefined): string {
  if (v === undefined || v === null || v === '') return DEFAULT_DATA_DIR;
  if (!isAbsolute(v)) throw configError('ipam.dataDir', v, 'must be an absolute path');
  if (v.includes('\0') || v.split('/').some((c) => c === '..'))
    throw configError('ipam.dataDir', v, 'must not contain ".." components or NUL');
  return v;
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
  const want = (ip: IP | null, path: Path | string, v: string): void => {
    if (!ip) throw typeof path === 'string' ? envError(v) : configError(path, v, `cannot understand ip: ${v}`);
    if (!requested.some((x) => x.family === ip.family && x.value === ip.value)) requested.push(ip);
  };
  const envIP = loadArgs(cniArgs, ['IP']).IP;
  if (envIP) want(requestedIP(envIP), 'CNI_ARGS', envIP);
  (n.args?.cni?.ips ?? []).forEach((s, i) => want(requestedIP(s), ['args', 'cni', 'ips', i], s));
  (n.runtimeConfig?.ips ?? []).forEach((s, i) => want(requestedIP(s), ['runtimeConfig', 'ips', i], s));

  const origins: Array<{ path: Path; raw: RawRangeJSON[]; legacy: boolean }> = [];
  (n.runtimeConfig?.ipRanges ?? []).forEach((set, i) => origins.push({ path: ['runtimeConfig', 'ipRanges', i], raw: set, legacy: false }));
  if (ipam.subnet) origins.push({ path: ['ipam'], raw: [ipam], legacy: true });
  (ipam.ranges ?? []).forEach((set, i) => origins.push({ path: ['ipam', 'ranges', i], raw: set, legacy: false }));
  if (origins.length === 0) throw configError('ipam.ranges', ipam.ranges ?? undefined, 'no IP ranges specified');

  const ranges = origins.map((o, i): RangeSet => {
    const at = (j: number): Path => (o.legacy ? o.path : [...o.path, j]);
    try {
      return canonicalizeRangeSet(o.raw.map((r, j) => rawRange(r, at(j))));
    } catch (e) {
      if (!(e instanceof RangeRuleError)) throw e;
      const p = e.field ? [...at(e.rangeIndex), e.field] : o.path;
      const value = e.field ? o.raw[e.rangeIndex]?.[e.field] : o.raw;
      throw configError(p, value, `invalid range set ${i}: ${e.message}`);
    }
  });

  const v4 = ranges.filter((s) => setFamily(s) === 4).length;
  if ((v4 > 1 || ranges.length - v4 > 1) && !atLeast(cniVersion, '0.3.0'))
    throw configError('cniVersion', cniVersion, `CNI version ${cniVersion} does not support more than 1 address per family`);
  for (let i = 0; i < ranges.length; i++)
    for (let j = i + 1; j < ranges.length; j++)
      if (setsOverlap(ranges[i]!, ranges[j]!)) throw configError(origins[j]!.path, origins[j]!.raw, `range set ${i} overlaps with ${j}`);

  return {
    name: n.name,
    cniVersion,
    dataDir: dataDir(ipam.dataDir),
    ranges,
    routes: (ipam.routes ?? []).map((r, i) => confRoute(r, ['ipam', 'routes', i])),
    resolvConf: ipam.resolvConf ?? '',
    requestedIPs: requested,
    reclaimStaleLeases: ipam.reclaimStaleLeases ?? true,
    lockTimeoutMs: ipam.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
  };
}

function envError(v: string): CniError {
  return new CniError(ErrInvalidEnvironmentVariables, `CNI_ARGS: invalid IP ${JSON.stringify(v)}: not an IP address`);
}
