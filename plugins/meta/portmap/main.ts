// The portmap plugin's verbs (the reference's plugins/meta/portmap): a chained plugin that forwards
// host ports to the pod's addresses from prevResult, with iptables or nftables. ADD reads top to
// bottom: config → prevResult → pod addresses → read each family's table (one process each) →
// conflicts → route_localnet → one write transaction per family (iptables) or for all (nftables) →
// stale UDP conntrack entries of the mapped ports.
// DEL and GC find the pod's rules by its chain name or comment, never by its address.
import { CniError, ErrPluginNotAvailable, errorMessage } from '../../../shared/cni/errors';
import { parseValidAttachments } from '../../../shared/cni/gc';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { contains, type Family, type IP } from '../../../shared/ip';
import { AF_INET, NETLINK_NETFILTER } from '../../../shared/linux/netlink/constants';
import { deleteConntrackForDstPort, IPPROTO_UDP } from '../../../shared/linux/netlink/conntrack';
import { getLink } from '../../../shared/linux/netlink/link';
import { listRoutes } from '../../../shared/linux/netlink/route';
import { withNetlink } from '../../../shared/linux/netlink/socket';
import { sysctlGet, sysctlSet } from '../../../shared/linux/sysctl';
import { parsePrevResult, requirePrevResult } from '../../../shared/plugin/prev-result';
import { Rollback } from '../../../shared/plugin/rollback';
import { loadPortMapConf, podAddresses, type PodAddress, type PortMapConf } from './config';
import * as ipt from './iptables';
import * as nft from './nftables';

const FAMILIES: Family[] = [4, 6];
const famName = (f: Family): string => (f === 4 ? 'IPv4' : 'IPv6');

async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadPortMapConf(a);
  const prev = parsePrevResult(conf.prevResult, a.cniVersion);
  if (!prev) throw new Error('must be called as chained plugin'); // the reference's text
  if (!conf.portMappings.length) return prev; // nothing to forward: no netfilter process at all
  const pods = podAddresses(prev, a.ifName);
  if (!pods.length) return prev;

  const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
  try {
    if (conf.backend === 'nftables') {
      const tables = new Map(pods.map((p) => [p.family, nft.readTable(p.family)]));
      for (const p of pods) nft.checkConflicts(conf, a.containerID, p.family, tables.get(p.family)!);
      localnetRouting(conf, pods, rollback);
      nft.writeScript(
        pods.flatMap((p) => nft.addLines(conf, a.containerID, p, tables.get(p.family)!)),
        `setting up port mappings for ${conf.name}/${a.containerID}`,
      );
    } else {
      const tables = new Map(pods.map((p) => [p.family, ipt.readNat(p.family)]));
      for (const p of pods) ipt.checkConflicts(conf, a.containerID, p.family, tables.get(p.family)!);
      localnetRouting(conf, pods, rollback);
      for (const p of pods) {
        const what = `setting up ${famName(p.family)} port mappings for ${conf.name}/${a.containerID}`;
        const done = ipt.applyNat(p.family, tables.get(p.family)!, (nat) => ipt.addLines(conf, a.containerID, p, nat), what);
        // A later family's failure takes this one's change back: the ADD applies whole or not at all.
        rollback.push(() => ipt.writeNat(p.family, ipt.undoLines(done.lines, done.nat), `taking back ${famName(p.family)} port mappings`));
      }
    }
  } catch (e) {
    await rollback.run();
    throw e;
  }
  deleteStaleUDPFlows(a, conf, pods);
  return prev; // passed through unchanged, as the reference
}

/**
 * Deletes the conntrack entries of the mapped UDP host ports, after the rules are in: a UDP flow
 * seen before (e.g. a client retrying towards a port that was not mapped yet) would otherwise keep
 * its old entry and never be NATed. As in the reference, a failure is only logged.
 */
function deleteStaleUDPFlows(a: CmdArgs, conf: PortMapConf, pods: PodAddress[]): void {
  const ports = [...new Set(conf.portMappings.filter((m) => m.protocol === 'udp').map((m) => m.hostPort))];
  if (!ports.length) return;
  try {
    withNetlink(
      (nl) => {
        for (const p of pods) for (const port of ports) deleteConntrackForDstPort(nl, p.family, IPPROTO_UDP, port);
      },
      undefined,
      NETLINK_NETFILTER,
    );
  } catch (e) {
    a.log.warn(`failed to delete stale UDP conntrack entries for ${conf.name}/${a.containerID}: ${errorMessage(e)}`);
  }
}

/**
 * route_localnet=1 on the host interface that routes to the pod's IPv4 address, so that 127/8 may
 * cross to it (localhost access to a mapped port, the reference's enableLocalnetRouting). Undone by
 * `rollback` when this ADD fails; left set by DEL, as the reference (other pods may need it).
 */
function localnetRouting(conf: PortMapConf, pods: PodAddress[], rollback: Rollback): void {
  const v4 = pods.find((p) => p.family === 4);
  if (!conf.snat || !v4) return;
  const ifName = routingInterface(v4.net.ip);
  if (!ifName) return;
  const key = `net/ipv4/conf/${ifName}/route_localnet`;
  const old = sysctlGet(key);
  if (sysctlSet(key, '1')) rollback.push(() => sysctlSet(key, old));
}

/** The interface of the most specific main-table route to `ip` in the host netns, or undefined. */
function routingInterface(ip: IP): string | undefined {
  return withNetlink((nl) => {
    const best = listRoutes(nl, { family: AF_INET })
      .filter((r) => r.oif !== undefined && contains(r.dst, ip))
      .sort((x, y) => y.dst.prefix - x.dst.prefix)[0];
    return best ? getLink(nl, best.oif!).name : undefined;
  });
}

/**
 * Removes the container's rules in both families, found by the per-pod chain name (iptables) or the
 * container-ID comment (nftables): no netns or prevResult needed, and a pod whose address changed is
 * still cleaned. Like the reference, a config without portMappings removes nothing (and runs nothing).
 * A family whose table cannot be read is skipped (no IPv6 nat here) unless neither can be.
 */
async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  if (!conf.portMappings.length) return;
  const what = `removing port mappings of ${conf.name}/${a.containerID}`;
  if (conf.backend === 'nftables') {
    const lines = readableFamilies((f) => nft.delLines(a.containerID, f, nft.readTable(f)));
    nft.writeScript(lines.flatMap(([, l]) => l), what);
  } else {
    for (const [f, nat] of readableFamilies(ipt.readNat)) ipt.applyNat(f, nat, (t) => ipt.delLines(conf.name, a.containerID, t), what);
  }
}

/** Runs `read` for each family; a family that fails is left out unless both fail (then throws both errors). */
function readableFamilies<T>(read: (f: Family) => T): Array<[Family, T]> {
  const out: Array<[Family, T]> = [];
  const errors: string[] = [];
  for (const f of FAMILIES) {
    try {
      out.push([f, read(f)]);
    } catch (e) {
      errors.push(`${famName(f)}: ${errorMessage(e)}`);
    }
  }
  if (!out.length) throw new Error(`neither IPv4 nor IPv6 netfilter is usable: ${errors.join('; ')}`);
  return out;
}

/** The pod's rules are all in place for each of its addresses (the reference's cmdCheck, stricter: see checkFamily). */
async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  const prev = requirePrevResult(conf.prevResult, a.cniVersion);
  if (!conf.portMappings.length) return;
  for (const p of podAddresses(prev, a.ifName)) {
    if (conf.backend === 'nftables') nft.checkFamily(conf, a.containerID, p, nft.readTable(p.family));
    else ipt.checkFamily(conf, a.containerID, p, ipt.readNat(p.family));
  }
}

/**
 * Spec 1.1 GC (the reference's portmap has none): removes this network's per-pod chains whose
 * container is not in `cni.dev/valid-attachments`, one read and at most one write per family. The
 * nftables rules carry only the container ID (upstream's format, which its DEL matches exactly), so
 * they cannot tell which network wrote them; GC leaves them rather than remove another network's.
 */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  const valid = new Set(parseValidAttachments(a.conf).map((v) => v.containerID));
  if (conf.backend === 'nftables') {
    a.log.info('GC: nftables port mappings carry no network name; left to DEL');
    return;
  }
  for (const [f, nat] of readableFamilies(ipt.readNat)) ipt.applyNat(f, nat, (t) => ipt.gcLines(conf.name, valid, t), `garbage-collecting port mappings of ${conf.name}`);
}

/** STATUS: code 50 when the backend's tool cannot read its IPv4 table here (not installed, no permission, no nat support). */
async function cmdStatus(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  try {
    if (conf.backend === 'nftables') nft.readTable(4);
    else ipt.readNat(4);
  } catch (e) {
    throw new CniError(ErrPluginNotAvailable, `${conf.backend} is not usable: ${errorMessage(e)}`, '', { cause: e });
  }
}

export const portmap: Plugin = {
  name: 'portmap',
  about: 'cnikit portmap plugin (host port forwarding with iptables or nftables; reference: containernetworking/plugins portmap)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
