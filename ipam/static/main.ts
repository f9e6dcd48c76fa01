// static IPAM (the reference's plugins/ipam/static): hands back the addresses, routes and DNS the
// config (or the runtime) names. Nothing is allocated, so DEL and GC have nothing to do.
import type { CmdArgs, Plugin } from '../../shared/cni/skel';
import { formatCIDR, formatIP, ipEqual, parseCIDR, parseIP } from '../../shared/ip';
import { requirePrevResult } from '../../shared/plugin/prev-result';
import type { Result } from '../../shared/cni/types';
import { loadStaticConf } from './config';

function cmdAdd(a: CmdArgs): Result {
  const conf = loadStaticConf(a.conf, a.args);
  const result: Result = { cniVersion: '1.1.0' };
  if (conf.addresses.length)
    result.ips = conf.addresses.map((x) => ({ address: formatCIDR(x.address), ...(x.gateway ? { gateway: formatIP(x.gateway) } : {}) }));
  if (conf.routes.length) result.routes = conf.routes;
  if (conf.dns) result.dns = conf.dns;
  return result;
}

/**
 * Every configured address is in prevResult, with the configured gateway when one is set. The
 * reference only checks the gateway of addresses it finds, and passes when an address is missing.
 */
function cmdCheck(a: CmdArgs): void {
  const conf = loadStaticConf(a.conf, a.args);
  const prev = requirePrevResult(a.conf.prevResult, a.cniVersion);
  for (const want of conf.addresses) {
    const have = (prev.ips ?? []).find((ip) => {
      const n = parseCIDR(ip.address);
      return !!n && ipEqual(n.ip, want.address.ip);
    });
    const gw = have?.gateway ? parseIP(have.gateway) : null;
    if (!have || (want.gateway && !(gw && ipEqual(gw, want.gateway))))
      throw new Error(`static: Failed to match addr ${formatIP(want.address.ip)} on interface ${a.ifName}`);
  }
}

export const staticIPAM: Plugin = {
  name: 'static',
  about: 'cnikit static IPAM (addresses, routes and DNS from the config; reference: containernetworking/plugins static)',
  // DEL releases nothing (no allocation) and so never fails, even on a config ADD would refuse.
  // GC and STATUS: nothing is held and nothing can run out (the skel answers both with success).
  funcs: { add: cmdAdd, del: () => undefined, check: cmdCheck },
};
