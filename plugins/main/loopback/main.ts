// The loopback plugin (the reference's plugins/main/loopback): `lo` up on ADD, down on DEL, CHECK
// that it is up. CNI_IFNAME is ignored: this plugin only ever touches `lo`.
import { wrapError } from '../../../shared/cni/errors';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { IPConfig, Result } from '../../../shared/cni/types';
import { contains, formatCIDR, formatIP, parseCIDR, type IPNet } from '../../../shared/ip';
import { listAddrs, type Addr } from '../../../shared/linux/netlink/addr';
import { AF_INET, AF_INET6 } from '../../../shared/linux/netlink/constants';
import { getLink, setLinkDown, setLinkUp } from '../../../shared/linux/netlink/link';
import { withNetlink } from '../../../shared/linux/netlink/socket';
import { NetnsNotFoundError } from '../../../shared/linux/netns';
import { parsePrevResult } from '../../../shared/plugin/prev-result';
import { requireNetlink } from '../../../shared/plugin/status';

const LO = 'lo';
const LOOPBACK_NETS: IPNet[] = [parseCIDR('127.0.0.0/8')!, parseCIDR('::1/128')!];

/** Go's net.IP.IsLoopback: 127.0.0.0/8 or ::1. */
const isLoopback = (a: Addr): boolean => LOOPBACK_NETS.some((n) => contains(n, a.ipnet.ip));

/** The first address of a family on lo, after checking every address of that family is a loopback one. */
function firstLoopback(addrs: Addr[]): IPNet | undefined {
  const bad = addrs.find((a) => !isLoopback(a));
  if (bad) throw new Error(`loopback interface found with non-loopback address "${formatIP(bad.ipnet.ip)}"`);
  return addrs[0]?.ipnet;
}

function cmdAdd(a: CmdArgs): Result {
  // Parse prevResult before touching the netns: a bad one fails without a change.
  let prev: Result | undefined;
  try {
    prev = parsePrevResult(a.conf.prevResult, a.cniVersion);
  } catch (e) {
    throw wrapError(e, 'failed to parse prevResult');
  }
  const [v4, v6] = withNetlink((nl) => {
    const lo = getLink(nl, LO);
    setLinkUp(nl, lo);
    return [firstLoopback(listAddrs(nl, { link: lo, family: AF_INET })), firstLoopback(listAddrs(nl, { link: lo, family: AF_INET6 }))];
  }, a.netns);
  // Chained after another plugin, loopback passes the previous result through (as the reference).
  if (prev) return prev;
  const ips: IPConfig[] = [v4, v6].filter((n): n is IPNet => !!n).map((n) => ({ interface: 0, address: formatCIDR(n) }));
  return {
    cniVersion: '1.1.0',
    interfaces: [{ name: LO, mac: '00:00:00:00:00:00', sandbox: a.netns }],
    ...(ips.length ? { ips } : {}),
  };
}

function cmdDel(a: CmdArgs): void {
  if (!a.netns) return;
  try {
    withNetlink((nl) => setLinkDown(nl, LO), a.netns);
  } catch (e) {
    // The netns is already gone (kubernetes#43014): nothing left to take down.
    if (!(e instanceof NetnsNotFoundError)) throw e;
  }
}

function cmdCheck(a: CmdArgs): void {
  const lo = withNetlink((nl) => getLink(nl, LO), a.netns);
  if (!lo.up) throw new Error('loopback interface is down');
}

export const loopback: Plugin = {
  name: 'loopback',
  about: 'cnikit loopback plugin (lo up in the pod; reference: containernetworking/plugins loopback)',
  // GC: nothing is allocated, so there is nothing to collect (the skel answers GC with success).
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, status: requireNetlink },
};
