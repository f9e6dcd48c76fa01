// The static IPAM config (the reference's plugins/ipam/static LoadIPAMConfig): addresses from the
// config, from CNI_ARGS IP=/GATEWAY=, from args.cni.ips and from runtimeConfig.ips, in the
// reference's order of precedence. Config errors are code 7 naming the field and its value;
// CNI_ARGS errors are code 4.
import * as z from 'zod/mini';
import { loadArgs } from '../../shared/cni/args';
import { configError, opt, parseConfig, sparseObject } from '../../shared/cni/config';
import { CniError, ErrInvalidEnvironmentVariables } from '../../shared/cni/errors';
import { confRoute, dnsSchema, routeSchema } from '../../shared/cni/netconf';
import type { DNS, Route } from '../../shared/cni/types';
import { atLeast } from '../../shared/cni/version';
import { contains, parseCIDR, parseIP, type IP, type IPNet } from '../../shared/ip';

/** The schema for this config: only the keys it has are built (sparseObject). Unknown keys are ignored, as in Go. */
function netSchema(raw: unknown) {
  const str = () => opt(z.string());
  const strList = () => opt(z.array(z.string()));
  const address = () => z.looseObject({ address: str(), gateway: str() });
  const ipam = (v: unknown) =>
    sparseObject(
      v,
      { type: str, addresses: () => opt(z.array(address())), routes: () => opt(z.array(routeSchema())), dns: dnsSchema },
      { loose: true },
    );
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: str,
      ipam: (v) => opt(ipam(v)),
      runtimeConfig: (v) => opt(sparseObject(v, { ips: strList }, { loose: true })),
      args: (v) => opt(sparseObject(v, { cni: (c) => opt(sparseObject(c, { ips: strList }, { loose: true })) }, { loose: true })),
    },
    { required: ['name'], loose: true },
  );
}

export interface StaticAddress {
  /** the address with its prefix; host bits kept (198.18.0.5/24) */
  address: IPNet;
  gateway?: IP;
}

export interface StaticConf {
  name: string;
  cniVersion: string;
  addresses: StaticAddress[];
  routes: Route[];
  dns: DNS | undefined;
}

type Path = Array<string | number>;

const CIDR_HINT = 'expected an address in CIDR notation, e.g. 198.18.0.5/24';

function cidrField(path: Path, v: string | null | undefined): IPNet {
  const n = parseCIDR(v ?? '');
  if (!n) throw configError(path, v ?? undefined, CIDR_HINT);
  return n;
}

function envError(key: string, v: string, why: string): CniError {
  return new CniError(ErrInvalidEnvironmentVariables, `CNI_ARGS ${key}: ${JSON.stringify(v)}: ${why}`);
}

/** CNI_ARGS IP= (comma-separated CIDRs) and GATEWAY= (comma-separated IPs, each given to the IP= addresses that contain it). */
function envAddresses(cniArgs: string): StaticAddress[] {
  const env = loadArgs(cniArgs, ['IP', 'GATEWAY']);
  const out: StaticAddress[] = (env.IP ? env.IP.split(',') : []).map((item) => {
    const n = parseCIDR(item.trim());
    if (!n) throw envError('IP', item.trim(), CIDR_HINT);
    return { address: n };
  });
  for (const item of env.GATEWAY ? env.GATEWAY.split(',') : []) {
    const gw = parseIP(item.trim());
    if (!gw) throw envError('GATEWAY', item, 'not an IP address');
    // Reference quirk kept: only the CNI_ARGS addresses can take a GATEWAY (the config's are parsed later there).
    for (const a of out) if (contains(a.address, gw)) a.gateway = gw;
  }
  return out;
}

/**
 * Loads the config. Precedence as the reference: ipam.addresses + CNI_ARGS IP=; args.cni.ips replaces
 * those; runtimeConfig.ips replaces all (these two carry no gateway). More than one address per family
 * needs cniVersion >= 0.3.0.
 */
export function loadStaticConf(conf: Record<string, unknown>, cniArgs: string): StaticConf {
  const n = parseConfig(netSchema(conf), conf);
  const ipam = n.ipam;
  if (!ipam) throw configError('ipam', undefined, "IPAM config missing 'ipam' key");
  const cniVersion = n.cniVersion || '0.1.0';

  let addresses: StaticAddress[] = (ipam.addresses ?? []).map((a, i) => {
    const address = cidrField(['ipam', 'addresses', i, 'address'], a.address);
    if (!a.gateway) return { address };
    const gateway = parseIP(a.gateway);
    if (!gateway) throw configError(['ipam', 'addresses', i, 'gateway'], a.gateway, 'not a valid IP address');
    return { address, gateway };
  });
  addresses.push(...envAddresses(cniArgs));
  const argsIPs = n.args?.cni?.ips ?? [];
  if (argsIPs.length) addresses = argsIPs.map((s, i) => ({ address: cidrField(['args', 'cni', 'ips', i], s) }));
  const rtIPs = n.runtimeConfig?.ips ?? [];
  if (rtIPs.length) addresses = rtIPs.map((s, i) => ({ address: cidrField(['runtimeConfig', 'ips', i], s) }));

  const v4 = addresses.filter((a) => a.address.ip.family === 4).length;
  if ((v4 > 1 || addresses.length - v4 > 1) && !atLeast(cniVersion, '0.3.0'))
    throw configError('cniVersion', cniVersion, `CNI version ${cniVersion} does not support more than 1 address per family`);

  const d = ipam.dns ?? undefined;
  const dns: DNS = {
    ...(d?.nameservers?.length ? { nameservers: d.nameservers } : {}),
    ...(d?.domain ? { domain: d.domain } : {}),
    ...(d?.search?.length ? { search: d.search } : {}),
    ...(d?.options?.length ? { options: d.options } : {}),
  };
  return {
    name: n.name,
    cniVersion,
    addresses,
    routes: (ipam.routes ?? []).map((r, i) => confRoute(r, ['ipam', 'routes', i])),
    dns: Object.keys(dns).length ? dns : undefined,
  };
}
