// A plugin's result as libcni holds it (cni:pkg/invoke ExecPluginWithResult, pkg/types/{020,040,100}):
// decoded into the Go struct of the version the plugin printed, and kept in that version. cnitool
// prints it, the cache stores it and the next plugin gets it as prevResult exactly as that struct
// marshals, whether or not it could be converted to another version (issue 10: an IP-less result at
// 0.1.0/0.2.0 cannot be, and libcni never tries on ADD).
import { formatResult, parseResult, resultVersion } from '../shared/cni/types';
import { atLeast } from '../shared/cni/version';
import { formatCIDR, formatIP, parseCIDR, parseIP } from '../shared/ip';
import { GoStruct, goMarshal } from './gojson';

type Json = Record<string, unknown>;

/** A result in the version it was printed in, as the Go struct of that version holds it. */
export interface PluginResult {
  version: string;
  value: GoStruct;
}

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const nonEmpty = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
const nonZero = (v: unknown): number | undefined => (typeof v === 'number' && v !== 0 ? v : undefined);
const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.length ? (v as string[]) : undefined);
const slice = <T>(a: T[]): T[] | undefined => (a.length ? a : undefined); // omitempty drops an empty slice

// types.IPNet and net.IP marshal through Go's String(): the address as written (host bits kept),
// canonical text (lower-case, RFC 5952 IPv6, IPv4-mapped as dotted quad). Validity was checked by parseResult.
const cidr = (v: unknown): string => formatCIDR(parseCIDR(v as string)!);
const ip = (v: unknown): string | undefined => (nonEmpty(v) ? formatIP(parseIP(v as string)!) : undefined);

// types.DNS: every field omitempty; the struct itself is always there ("dns":{}).
const dns = (v: unknown): GoStruct => {
  const d = isObj(v) ? v : {};
  return new GoStruct({ nameservers: strings(d.nameservers), domain: nonEmpty(d.domain), search: strings(d.search), options: strings(d.options) });
};

// types.Route: dst and gw in libcni 1.1.2; the fields spec 1.1.0 added are kept for 1.1.0 results.
const route = (v11: boolean) => (v: unknown): GoStruct => {
  const r = v as Json;
  const base: Json = { dst: cidr(r.dst), gw: ip(r.gw) };
  if (v11) Object.assign(base, { mtu: nonZero(r.mtu), advmss: nonZero(r.advmss), priority: nonZero(r.priority), table: int(r.table), scope: int(r.scope) });
  return new GoStruct(base);
};

function struct020(version: string, raw: Json): GoStruct {
  const ipConfig = (v: unknown): GoStruct | undefined => {
    if (!isObj(v)) return undefined;
    return new GoStruct({ ip: cidr(v.ip), gateway: ip(v.gateway), routes: slice(list(v.routes).map(route(false))) });
  };
  return new GoStruct({ cniVersion: version, ip4: ipConfig(raw.ip4), ip6: ipConfig(raw.ip6), dns: dns(raw.dns) });
}

function structCurrent(version: string, raw: Json): GoStruct {
  const v040 = !atLeast(version, '1.0.0');
  const v11 = atLeast(version, '1.1.0');
  const interfaces = list(raw.interfaces).map((v) => {
    const i = v as Json;
    const mtu = v11 ? nonZero(i.mtu) : undefined;
    const extra = v11 ? { socketPath: nonEmpty(i.socketPath), pciID: nonEmpty(i.pciID) } : {};
    return new GoStruct({ name: typeof i.name === 'string' ? i.name : '', mac: nonEmpty(i.mac), mtu, sandbox: nonEmpty(i.sandbox), ...extra });
  });
  const ips = list(raw.ips).map((v) => {
    const c = v as Json;
    // 0.3.x/0.4.0's `version` is not omitempty: a plugin that printed none is cached with "version":"".
    const version040 = v040 ? { version: typeof c.version === 'string' ? c.version : '' } : {};
    return new GoStruct({ ...version040, interface: int(c.interface), address: cidr(c.address), gateway: ip(c.gateway) });
  });
  return new GoStruct({
    cniVersion: version,
    interfaces: slice(interfaces),
    ips: slice(ips),
    routes: slice(list(raw.routes).map(route(v11))),
    dns: dns(raw.dns),
  });
}

/**
 * The Go struct of `version` decoded from `raw` (a result JSON object): unknown fields dropped,
 * omitempty fields absent. Throws the CniError parseResult throws for an invalid result or version.
 */
export function resultStruct(raw: unknown, version: string): PluginResult {
  parseResult(raw, version); // validates fields and addresses, so the encoders below may assume them
  const o = raw as Json;
  return { version, value: atLeast(version, '0.3.0') ? structCurrent(version, o) : struct020(version, o) };
}

/**
 * A plugin's ADD result (its stdout, JSON-parsed) as libcni reads it: in the cniVersion it names,
 * else in the config's (fixupResultVersion; a config without cniVersion is 0.1.0). Throws on an invalid result.
 */
export function decodeResult(raw: unknown, confVersion: string): PluginResult {
  const version = resultVersion(raw, confVersion);
  return resultStruct({ ...(isObj(raw) ? raw : {}), cniVersion: version }, version);
}

/**
 * GetAsVersion: the same struct when the versions match, else converted through the current shape
 * (throws when that is impossible, e.g. no IP for 0.1.0/0.2.0).
 */
export function resultAsVersion(raw: Json, from: string, to: string): PluginResult {
  if (from === to) return resultStruct(raw, to);
  return resultStruct(formatResult(parseResult(raw, from), to), to);
}

/** What libcni's Result.Print writes: json.MarshalIndent(result, "", "    "), no newline after it. */
export const printResult = (r: PluginResult): string => goMarshal(r.value, '    ');

/** The result as a map (what the cache stores: libcni marshals the struct, then unmarshals it into a map). */
export const resultMap = (r: PluginResult): Json => JSON.parse(JSON.stringify(r.value)) as Json;
