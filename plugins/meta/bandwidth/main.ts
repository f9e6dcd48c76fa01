// The bandwidth plugin's verbs (the reference's plugins/meta/bandwidth, its tbf form of 1.1.x): a
// chained plugin that limits the pod's traffic on its host veth, in process over rtnetlink.
// To the pod (ingress): a tbf root qdisc on the host veth. From the pod (egress): the host veth's
// ingress qdisc redirects every packet to an ifb device whose tbf root qdisc shapes it.
// ADD reads top to bottom: config → prevResult → host veth → ingress tbf → ifb, redirect, egress tbf → result.
import { attachmentHashName } from '../../../shared/cni/hash-name';
import { errorMessage } from '../../../shared/cni/errors';
import { parseValidAttachments } from '../../../shared/cni/gc';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import { formatResult, type Interface, type Result } from '../../../shared/cni/types';
import { isNotFound } from '../../../shared/linux/netlink/errors';
import { addIfb, deleteLink, getLink, listLinks, setLink, type Link } from '../../../shared/linux/netlink/link';
import { openNetlink, type NetlinkSocket } from '../../../shared/linux/netlink/socket';
import { addIngressQdisc, addRedirectFilter, addTbf, deleteQdisc, INGRESS_HANDLE, listFilters, listQdiscs, TC_H_INGRESS, TC_H_ROOT } from '../../../shared/linux/netlink/tc';
import { openPodNetns } from '../../../shared/plugin/pod-netns';
import { parsePrevResult } from '../../../shared/plugin/prev-result';
import { Rollback } from '../../../shared/plugin/rollback';
import { requireNetlink } from '../../../shared/plugin/status';
import { loadBandwidthConf, loadNetworkName, tbfFor, type Limit } from './config';

const IFB_NAME_MAX = 15; // IFNAMSIZ - 1

/** `bwp` + hex sha512(network name + container ID), 15 characters (the reference's getIfbDeviceName). */
export const ifbName = (network: string, containerID: string): string =>
  attachmentHashName('bwp', network, containerID, IFB_NAME_MAX);

// The ifb's alias says whose it is: its name is a hash, and GC must only remove the ifbs of its own
// network's stale attachments (an ifb made by the reference has none and is left alone).
const ifbAlias = (network: string, containerID: string): string => `cni bandwidth: name ${JSON.stringify(network)} id ${JSON.stringify(containerID)}`;
const ALIAS_RE = /^cni bandwidth: name "([^"]*)" id "([^"]*)"$/;

async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadBandwidthConf(a);
  const prev = parsePrevResult(conf.prevResult, a.cniVersion);
  if (!prev) throw new Error('must be called as chained plugin');
  if (!conf.ingress && !conf.egress) return prev; // nothing to limit: the result passes through
  const interfaces = [...(prev.interfaces ?? [])];
  const result: Result = { ...prev, interfaces };

  const host = openNetlink();
  const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
  try {
    const veth = hostVeth(host, interfaces, a.netns, a.ifName);
    if (conf.ingress) {
      addTbf(host, { ifindex: veth.index, ...tbfFor(conf.ingress) }, veth.name);
      rollback.push(() => deleteQdisc(host, veth.index, TC_H_ROOT, veth.name));
    }
    if (conf.egress) {
      const name = ifbName(conf.name, a.containerID);
      try {
        // The host veth's MTU and queue length, as upstream's CreateIfb (Debian's 1.1.1 sets a queue length of 0).
        addIfb(host, { name, mtu: veth.mtu, txQLen: veth.txQLen, up: true });
      } catch (e) {
        throw new Error(`adding link: ${errorMessage(e)}`, { cause: e });
      }
      rollback.push(() => deleteLink(host, name)); // its qdisc goes with it
      setLink(host, name, { alias: ifbAlias(conf.name, a.containerID) });
      const ifb = getLink(host, name);
      interfaces.push({ name, mac: ifb.mac }); // as the reference: the ifb joins the result
      addIngressQdisc(host, veth.index, veth.name);
      rollback.push(() => deleteQdisc(host, veth.index, TC_H_INGRESS, veth.name)); // and its filter
      addRedirectFilter(host, veth.index, ifb.index, `from ${veth.name} to ${name}`);
      addTbf(host, { ifindex: ifb.index, ...tbfFor(conf.egress) }, name);
    }
    formatResult(result, a.cniVersion); // fail here, with rollback, if it cannot be printed
    return result;
  } catch (e) {
    await rollback.run();
    throw e;
  } finally {
    host.close();
  }
}

/**
 * The host end of the pod's veth (the reference's getHostInterface): `ifName` in the pod must be a
 * veth, its peer (IFLA_LINK) must be in this netns, and a result interface with no sandbox must
 * name it. Throws the reference's messages otherwise.
 */
function hostVeth(host: NetlinkSocket, ifaces: Interface[], netns: string, ifName: string): Link {
  if (!ifaces.length) throw new Error('no interfaces provided');
  const pod = openPodNetns(netns);
  let peerIndex: number;
  try {
    let link: Link;
    try {
      link = getLink(pod.nl, ifName);
    } catch (e) {
      throw new Error(`container interface ${ifName} has no veth peer: ${errorMessage(e)}`, { cause: e });
    }
    if (link.kind !== 'veth') throw new Error(`container interface ${ifName} has no veth peer: interface "${ifName}" was not a veth interface`);
    peerIndex = link.linkIndex;
  } finally {
    pod.close();
  }
  let peer: Link;
  try {
    peer = getLink(host, peerIndex);
  } catch {
    throw new Error(`veth peer with index ${peerIndex} is not in host ns`);
  }
  if (!ifaces.some((i) => !i.sandbox && i.name === peer.name)) throw new Error('no veth peer of container interface found in host ns');
  return peer;
}

/** Removes the pod's ifb (and so its qdisc), found by name: no netns or prevResult needed. Idempotent. */
async function cmdDel(a: CmdArgs): Promise<void> {
  const network = loadNetworkName(a);
  const host = openNetlink();
  try {
    deleteIfb(host, ifbName(network, a.containerID));
  } finally {
    host.close();
  }
}

function deleteIfb(host: NetlinkSocket, name: string): void {
  try {
    const l = getLink(host, name);
    if (l.kind === 'ifb') deleteLink(host, l.index); // never a device of that name that is not ours
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

/**
 * The tbf qdiscs still hold the configured values (the reference's cmdCheck and its messages): on
 * the host veth for ingress, on the ifb for egress. Also fails when the redirect to the ifb (the
 * host veth's ingress qdisc and its filter's first action) is gone.
 */
async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadBandwidthConf(a);
  const prev = parsePrevResult(conf.prevResult, a.cniVersion);
  if (!prev) throw new Error('must be called as a chained plugin');
  const host = openNetlink();
  try {
    const veth = hostVeth(host, prev.interfaces ?? [], a.netns, a.ifName);
    if (conf.ingress) checkTbf(host, veth, conf.ingress);
    if (conf.egress) {
      let ifb: Link;
      try {
        ifb = getLink(host, ifbName(conf.name, a.containerID));
      } catch (e) {
        throw new Error(`get ifb device: ${errorMessage(e)}`, { cause: e });
      }
      checkTbf(host, ifb, conf.egress);
      if (!listQdiscs(host, veth.index).some((q) => q.kind === 'ingress')) throw new Error(`Failed to find ingress qdisc on ${veth.name}`);
      if (!listFilters(host, veth.index, INGRESS_HANDLE, veth.name).some((f) => f.redirectsTo[0] === ifb.index))
        throw new Error(`no filter on ${veth.name} redirects its traffic to ${ifb.name}`);
    }
  } finally {
    host.close();
  }
}

function checkTbf(nl: NetlinkSocket, link: Link, l: Limit): void {
  const want = tbfFor(l);
  const tbf = listQdiscs(nl, link.index).find((q) => q.parent === TC_H_ROOT)?.tbf;
  if (!tbf) throw new Error(`Failed to find qdisc: no tbf root qdisc on ${link.name}`);
  if (tbf.rate !== want.rate) throw new Error(`Rate doesn't match on ${link.name}: ${tbf.rate} bytes/s, want ${want.rate}`);
  if (tbf.limit !== want.limit) throw new Error(`Limit doesn't match on ${link.name}: ${tbf.limit} bytes, want ${want.limit}`);
  if (tbf.buffer !== want.buffer) throw new Error(`Buffer doesn't match on ${link.name}: ${tbf.buffer} ticks, want ${want.buffer}`);
}

/** Spec 1.1 GC: removes this network's ifbs (told by their alias) whose container is no longer valid. */
async function cmdGC(a: CmdArgs): Promise<void> {
  const network = loadNetworkName(a);
  const valid = new Set(parseValidAttachments(a.conf).map((v) => v.containerID));
  const host = openNetlink();
  const errors: string[] = [];
  try {
    for (const l of listLinks(host)) {
      const m = l.kind === 'ifb' ? ALIAS_RE.exec(l.alias) : null;
      if (!m || m[1] !== network || valid.has(m[2]!) || l.name !== ifbName(network, m[2]!)) continue;
      try {
        deleteIfb(host, l.name);
      } catch (e) {
        errors.push(errorMessage(e));
      }
    }
  } finally {
    host.close();
  }
  if (errors.length) throw new Error(`bandwidth GC: ${errors.join('; ')}`);
}

/** STATUS: 50 when rtnetlink cannot be used here. */
async function cmdStatus(a: CmdArgs): Promise<void> {
  loadNetworkName(a);
  requireNetlink();
}

export const bandwidth: Plugin = {
  name: 'bandwidth',
  about: 'cnikit bandwidth plugin (tbf rate limits on the pod\'s host veth and an ifb; reference: containernetworking/plugins bandwidth)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
