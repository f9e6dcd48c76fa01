// The ptp plugin's verbs (the reference's plugins/main/ptp): a veth pair per pod with the host end
// unbridged, routed point to point. ADD reads top to bottom:
// netns → IPAM → forwarding → veth → pod addresses and routes → host veth → masquerade → result.
import { errorMessage } from '../../../shared/cni/errors';
import { parseValidAttachments } from '../../../shared/cni/gc';
import { delegateAdd, delegateCheck, delegateDel, delegateGC, delegateStatus } from '../../../shared/cni/invoke';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import { formatResult, type Result } from '../../../shared/cni/types';
import { deleteLink } from '../../../shared/linux/netlink/link';
import { openNetlink } from '../../../shared/linux/netlink/socket';
import { withNetns } from '../../../shared/linux/netns';
import { enableForwarding } from '../../../shared/linux/sysctl';
import { gcIPMasq, setupIPMasq, teardownIPMasq, type Attachment } from '../../../shared/netfilter/masquerade';
import { configureIface } from '../../../shared/plugin/configure-iface';
import { Attempts } from '../../../shared/plugin/attempts';
import { deletePodInterface, openPodNetns, type PodNetns } from '../../../shared/plugin/pod-netns';
import { prevResultAddresses, requirePrevResult } from '../../../shared/plugin/prev-result';
import { Rollback } from '../../../shared/plugin/rollback';
import { requireNetlink } from '../../../shared/plugin/status';
import { setupVeth } from '../../../shared/plugin/veth';
import { checkPtp } from './check';
import { checkAddRules, loadPtpConf } from './config';
import { ptpAddresses, setupHostVeth, setupPodRoutes } from './routes';

/** The container interface's index in the result: [host veth, container]. */
const CONTAINER_IF_INDEX = 1;


async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadPtpConf(a);
  checkAddRules(conf);
  const attachment: Attachment = { containerID: a.containerID, ifname: a.ifName };
  const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
  // A bad netns fails before IPAM is asked (the reference allocates first, then releases).
  const pod: PodNetns = openPodNetns(a.netns);
  const host = openNetlink();
  try {
    const ipam = await delegateAdd(conf.ipamType, a);
    rollback.push(() => delegateDel(conf.ipamType, a)); // release the IP on any later failure
    if (!ipam.ips?.length) throw new Error('IPAM plugin returned missing IP config');
    const addrs = ptpAddresses(ipam.ips);
    for (const f of new Set(addrs.map((x) => x.address.ip.family))) enableForwarding(f);

    const veth = setupVeth(host, { name: a.ifName, mtu: conf.mtu, peerNetnsFd: pod.fd, peer: pod.nl, hostNoDad: true });
    rollback.push(() => deleteLink(host, veth.host.index)); // takes the container end with it

    const result: Result = {
      cniVersion: '1.1.0',
      interfaces: [
        { name: veth.host.name, mac: veth.host.mac },
        { name: veth.container.name, mac: veth.container.mac, sandbox: a.netns },
      ],
      ips: ipam.ips.map((ip) => ({ ...ip, interface: CONTAINER_IF_INDEX })),
      routes: ipam.routes,
      dns: ipam.dns,
    };
    // The subnet route is swapped for the on-link gateway route before IPAM's routes go in: a
    // gateway outside a /32 (/128) address is then reachable (the reference fails there).
    withNetns(a.netns, () => configureIface(pod.nl, a.ifName, result, { beforeRoutes: (link) => setupPodRoutes(pod.nl, link, addrs) }));
    setupHostVeth(host, veth.host, addrs);

    if (conf.ipMasq) {
      setupIPMasq(conf.ipMasqBackend, result.ips!.map((ip) => ip.address), conf.name, attachment);
      rollback.push(() => teardownIPMasq(conf.name, attachment));
    }
    // Only a DNS the config sets replaces IPAM's (the reference's dnsConfSet).
    if (conf.dns) result.dns = conf.dns;
    formatResult(result, conf.cniVersion); // fail here, with rollback, if it cannot be printed
    return result;
  } catch (e) {
    await rollback.run();
    throw e;
  } finally {
    host.close();
    pod.close();
  }
}

async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadPtpConf(a);
  // By container ID and rule comments, so it works without netns or addresses (the reference skips
  // this when the netns or the link is gone and leaks the rules: plugins#810); before the veth goes,
  // so the rules' grace period overlaps its deletion (see teardownIPMasq).
  if (conf.ipMasq) teardownIPMasq(conf.name, { containerID: a.containerID, ifname: a.ifName }, prevResultAddresses(conf.prevResult, a.cniVersion));
  if (a.netns) deletePodInterface(a.netns, a.ifName); // the host end, its gateway address and host routes go with it
  // Release after the link is gone, so the address cannot be handed out while still configured (PR #702).
  if (conf.ipamType) await delegateDel(conf.ipamType, a);
}

async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadPtpConf(a);
  const pod = openPodNetns(a.netns);
  const host = openNetlink();
  try {
    if (conf.ipamType) await delegateCheck(conf.ipamType, a);
    const prev = requirePrevResult(conf.prevResult, a.cniVersion);
    checkPtp({ host, pod: pod.nl, podPath: a.netns, ifName: a.ifName, prev });
  } finally {
    host.close();
    pod.close();
  }
}

/** Spec 1.1 GC: forward to IPAM, then sweep masquerade rules of stale attachments; collect errors. */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadPtpConf(a);
  const valid = parseValidAttachments(a.conf); // a malformed list fails here, before anything is swept
  const attempts = new Attempts(errorMessage);
  if (conf.ipamType) await attempts.run('IPAM GC', () => delegateGC(conf.ipamType, a));
  await attempts.run('ipMasq GC', () => gcIPMasq(conf.name, valid));
  attempts.throwIfAny();
}

/** STATUS: 50 when rtnetlink cannot be used here; otherwise whatever the IPAM plugin says. */
async function cmdStatus(a: CmdArgs): Promise<void> {
  const conf = loadPtpConf(a);
  requireNetlink();
  if (conf.ipamType) await delegateStatus(conf.ipamType, a);
}

export const ptp: Plugin = {
  name: 'ptp',
  about: 'cnikit ptp plugin (a routed veth pair per pod, no bridge; reference: containernetworking/plugins ptp)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
