// CNI result types for every spec version, and conversion between them (the Go pkg/types/{020,040,100}).
// Plugins build the current (1.1.0) shape and convert once, on output, to the config's version.
import { CniError, ErrDecodingFailure, ErrInternal } from './errors';
import { atLeast, checkSupported } from './version';
import { familyOf, parseCIDR, parseIP } from '../ip';

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number; // 1.1.0
  sandbox?: string;
  socketPath?: string; // 1.1.0
  pciID?: string; // 1.1.0
}

export interface IPConfig {
  interface?: number; // index into interfaces; absent in IPAM results
  address: string; // CIDR
  gateway?: string;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number; // 1.1.0
  advmss?: number; // 1.1.0
  priority?: number; // 1.1.0
  table?: number; // 1.1.0
  scope?: number; // 1.1.0
}

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The current (1.1.0) result, used internally by every plugin. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(what: string, v: unknown): never {
  throw new CniError(ErrDecodingFailure, `failed to parse result: ${what} ${JSON.stringify(v)}`);
}

function str(o: Json, k: string, where: string, required = false): string | undefined {
  const v = o[k];
  if (v === undefined || v === null || (v === '' && !required)) {
    if (required) bad(`${where}.${k} is required, got`, v);
    return undefined;
  }
  if (typeof v !== 'string') bad(`${where}.${k} must be a string, got`, v);
  return v;
}

// Addresses are checked as the Go types' IPNet/net.IP unmarshalling does: a result with a garbage
// address is a decoding failure, not something a plugin goes on to configure.
function cidr(o: Json, k: string, where: string, required = false): string | undefined {
  const v = str(o, k, where, required);
  if (v !== undefined && !parseCIDR(v)) bad(`${where}.${k} must be an address with a prefix length, got`, v);
  return v;
}

function addr(o: Json, k: string, where: string): string | undefined {
  const v = str(o, k, where);
  if (v !== undefined && !parseIP(v)) bad(`${where}.${k} must be an IP address, got`, v);
  return v;
}

function num(o: Json, k: string, where: string): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(`${where}.${k} must be an integer, got`, v);
  return v;
}

function strList(o: Json, k: string, where: string): string[] | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) bad(`${where}.${k} must be a list of strings, got`, v);
  return v as string[];
}

function parseDNS(v: unknown): DNS | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) bad('dns must be an object, got', v);
  const d: DNS = {};
  const ns = strList(v, 'nameservers', 'dns');
  const domain = str(v, 'domain', 'dns');
  const search = strList(v, 'search', 'dns');
  const options = strList(v, 'options', 'dns');
  if (ns?.length) d.nameservers = ns;
  if (domain) d.domain = domain;
  if (search?.length) d.search = search;
  if (options?.length) d.options = options;
  return d;
}

function parseRoute(v: unknown, where: string): Route {
  if (!isObj(v)) bad(`${where} must be an object, got`, v);
  const r: Route = { dst: cidr(v, 'dst', where, true)! };
  const gw = addr(v, 'gw', where);
  if (gw) r.gw = gw;
  for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
    const n = num(v, k, where);
    if (n !== undefined) r[k] = n;
  }
  return r;
}

function list(v: unknown, what: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) bad(`${what} must be a list, got`, v);
  return v;
}

/**
 * The version a printed result is in: its own `cniVersion` when that is a non-empty string, else
 * `fallback` (the version of the config it answers). libcni's rule for a plugin's stdout
 * (fixupResultVersion) and for cached results: an older IPAM plugin may answer a 1.0.0 config in
 * 0.4.0 or 0.2.0 shape, and only a result that names no version is taken to be in the config's.
 */
export function resultVersion(raw: unknown, fallback: string): string {
  const own = isObj(raw) ? raw.cniVersion : undefined;
  return typeof own === 'string' && own !== '' ? own : fallback;
}

/** Parses a result printed in `version` (e.g. an IPAM plugin's stdout or a prevResult) into the current shape. */
export function parseResult(raw: unknown, version: string): Result {
  checkSupported(version);
  if (!isObj(raw)) bad('result must be an object, got', raw);
  const out: Result = { cniVersion: '1.1.0' };
  if (!atLeast(version, '0.3.0')) {
    // 0.1.0/0.2.0: ip4/ip6 each become an IP entry; their routes are flattened.
    const ips: IPConfig[] = [];
    const routes: Route[] = [];
    for (const fam of ['ip4', 'ip6'] as const) {
      const o = raw[fam];
      if (o === undefined || o === null) continue;
      if (!isObj(o)) bad(`${fam} must be an object, got`, o);
      const ip: IPConfig = { address: cidr(o, 'ip', fam, true)! };
      const gw = addr(o, 'gateway', fam);
      if (gw) ip.gateway = gw;
      ips.push(ip);
      list(o.routes, `${fam}.routes`).forEach((r, i) => routes.push(parseRoute(r, `${fam}.routes[${i}]`)));
    }
    if (ips.length) out.ips = ips;
    if (routes.length) out.routes = routes;
  } else {
    const ifs = list(raw.interfaces, 'interfaces').map((v, i): Interface => {
      const where = `interfaces[${i}]`;
      if (!isObj(v)) bad(`${where} must be an object, got`, v);
      const itf: Interface = { name: str(v, 'name', where, true)! };
      const mac = str(v, 'mac', where);
      if (mac) itf.mac = mac;
      const mtu = num(v, 'mtu', where);
      if (mtu) itf.mtu = mtu;
      const sandbox = str(v, 'sandbox', where);
      if (sandbox) itf.sandbox = sandbox;
      const sp = str(v, 'socketPath', where);
      if (sp) itf.socketPath = sp;
      const pci = str(v, 'pciID', where);
      if (pci) itf.pciID = pci;
      return itf;
    });
    const ips = list(raw.ips, 'ips').map((v, i): IPConfig => {
      const where = `ips[${i}]`;
      if (!isObj(v)) bad(`${where} must be an object, got`, v);
      const ip: IPConfig = { address: cidr(v, 'address', where, true)! };
      const idx = num(v, 'interface', where);
      if (idx !== undefined) ip.interface = idx;
      const gw = addr(v, 'gateway', where);
      if (gw) ip.gateway = gw;
      return ip;
    });
    const routes = list(raw.routes, 'routes').map((r, i) => parseRoute(r, `routes[${i}]`));
    if (ifs.length) out.interfaces = ifs;
    if (ips.length) out.ips = ips;
    if (routes.length) out.routes = routes;
  }
  const dns = parseDNS(raw.dns);
  if (dns && Object.keys(dns).length) out.dns = dns;
  return out;
}

function routeOut(r: Route, extras: boolean): Json {
  const o: Json = { dst: r.dst };
  if (r.gw) o.gw = r.gw;
  if (extras) for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) if (r[k] !== undefined) o[k] = r[k];
  return o;
}

function dnsOut(d: DNS | undefined): Json {
  const o: Json = {};
  if (d?.nameservers?.length) o.nameservers = d.nameservers;
  if (d?.domain) o.domain = d.domain;
  if (d?.search?.length) o.search = d.search;
  if (d?.options?.length) o.options = d.options;
  return o;
}

/** Converts the current result to the JSON object of `version` (field order as the Go library marshals it). */
export function formatResult(r: Result, version: string): Json {
  checkSupported(version);
  if (!atLeast(version, '0.3.0')) {
    const pick = (fam: 4 | 6): Json | undefined => {
      const ip = r.ips?.find((x) => familyOf(x.address) === fam);
      if (!ip) return undefined;
      const o: Json = { ip: ip.address };
      if (ip.gateway) o.gateway = ip.gateway;
      const routes = (r.routes ?? []).filter((rt) => familyOf(rt.dst) === fam).map((rt) => routeOut(rt, false));
      if (routes.length) o.routes = routes;
      return o;
    };
    const ip4 = pick(4);
    const ip6 = pick(6);
    // The Go converter refuses a 0.1/0.2 result without any IP (e.g. an L2-only bridge).
    if (!ip4 && !ip6) throw new CniError(ErrInternal, 'cannot convert: no valid IP addresses');
    const o: Json = { cniVersion: version };
    if (ip4) o.ip4 = ip4;
    if (ip6) o.ip6 = ip6;
    o.dns = dnsOut(r.dns);
    return o;
  }
  const v11 = atLeast(version, '1.1.0');
  const v1 = atLeast(version, '1.0.0');
  const o: Json = { cniVersion: version };
  if (r.interfaces?.length) {
    o.interfaces = r.interfaces.map((i) => {
      const x: Json = { name: i.name };
      if (i.mac) x.mac = i.mac;
      if (v11 && i.mtu) x.mtu = i.mtu;
      if (i.sandbox) x.sandbox = i.sandbox;
      if (v11 && i.socketPath) x.socketPath = i.socketPath;
      if (v11 && i.pciID) x.pciID = i.pciID;
      return x;
    });
  }
  if (r.ips?.length) {
    o.ips = r.ips.map((ip) => {
      const x: Json = {};
      if (!v1) x.version = familyOf(ip.address) === 6 ? '6' : '4';
      if (ip.interface !== undefined) x.interface = ip.interface;
      x.address = ip.address;
      if (ip.gateway) x.gateway = ip.gateway;
      return x;
    });
  }
  if (r.routes?.length) o.routes = r.routes.map((rt) => routeOut(rt, v11));
  const dns = dnsOut(r.dns);
  // 0.3.x/0.4.0 always print "dns":{}; 1.x omits an empty one.
  if (!v1 || Object.keys(dns).length) o.dns = dns;
  return o;
}

/** Round-trips a result from one version's JSON to another's (what libcni's GetResult/Convert does). */
export function convertResult(raw: unknown, from: string, to: string): Json {
  return formatResult(parseResult(raw, from), to);
}
