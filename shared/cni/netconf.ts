// Keys many network configs share, parsed one way: `dns` (the Go library's types.DNS, with the
// reference plugins' dnsConfSet rule) and a route (types.Route, as IPAM configs list them).
import * as z from 'zod/mini';
import { formatIP, parseCIDR, parseIP } from '../ip';
import { configError, opt, sparseObject } from './config';
import type { DNS, Route } from './types';

type Path = Array<string | number>;

/** Schema builder for a `dns` key (for sparseObject): nameservers, domain, search, options; null allowed. */
export function dnsSchema(v: unknown) {
  const strList = () => opt(z.array(z.string()));
  return opt(sparseObject(v, { nameservers: strList, domain: () => opt(z.string()), search: strList, options: strList }, { loose: true }));
}

type ConfDNS = z.infer<ReturnType<typeof dnsSchema>>;

/**
 * The config's DNS when it "is set" (the reference's dnsConfSet: any list present, even empty, or a
 * non-empty domain), else undefined. A set DNS replaces what IPAM returned (bridge, ptp).
 * Empty fields are left out of the returned DNS.
 */
export function confDNS(d: ConfDNS): DNS | undefined {
  if (!d || (d.nameservers == null && d.search == null && d.options == null && !d.domain)) return undefined;
  return {
    ...(d.nameservers ? { nameservers: d.nameservers } : {}),
    ...(d.domain ? { domain: d.domain } : {}),
    ...(d.search ? { search: d.search } : {}),
    ...(d.options ? { options: d.options } : {}),
  };
}

/** Schema of one route in a config: {dst, gw?, mtu?, advmss?, priority?, table?, scope?}. */
export function routeSchema() {
  const num = () => opt(z.number());
  return z.object({ dst: z.string(), gw: opt(z.string()), mtu: num(), advmss: num(), priority: num(), table: num(), scope: num() });
}

/**
 * A config route as a result Route: `dst` must be a CIDR (host bits are kept, as Go's
 * types.ParseCIDR does), `gw` an IP or empty. Throws CniError code 7 naming `path`.dst / .gw.
 */
export function confRoute(r: z.infer<ReturnType<typeof routeSchema>>, path: Path): Route {
  const dst = parseCIDR(r.dst);
  if (!dst) throw configError([...path, 'dst'], r.dst, `invalid CIDR address: ${r.dst}`);
  const out: Route = { dst: `${formatIP(dst.ip)}/${dst.prefix}` };
  if (r.gw) {
    const gw = parseIP(r.gw);
    if (!gw) throw configError([...path, 'gw'], r.gw, 'not a valid IP address');
    out.gw = formatIP(gw);
  }
  for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
    const v = r[k];
    if (v !== undefined && v !== null) out[k] = v;
  }
  return out;
}
