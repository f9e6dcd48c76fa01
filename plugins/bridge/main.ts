// The bridge plugin's verbs (the reference's plugins/main/bridge). ADD reads top to bottom:
// bridge → veth → VLANs → spoof check → IPAM → pod addresses → gateway → masquerade → result.
import { errorMessage } from '../../shared/cni/errors';
import { parseValidAttachments } from '../../shared/cni/gc';
import { delegateAdd, delegateCheck, delegateDel, delegateGC, delegateStatus } from '../../shared/cni/invoke';
import { configureIface } from '../../shared/plugin/configure-iface';
import { Attempts } from '../../shared/plugin/attempts';
import { deletePodInterface, openPodNetns, type PodNetns } from '../../shared/plugin/pod-netns';
import { prevResultAddresses, requirePrevResult } from '../../shared/plugin/prev-result';
import { Rollback } from '../../shared/plugin/rollback';
import { requireNetlink } from '../../shared/plugin/status';
import { gcIPMasq, setupIPMasq, teardownIPMasq, type Attachment } from '../../shared/netfilter/masquerade';
import { isNotFound } from '../../shared/linux/netlink/errors';
import { deleteLink, getLink, setLinkUp, waitForLink, WaitTimeoutError, type Link } from '../../shared/linux/netlink/link';
import { openNetlink, withNetlink, type NetlinkSocket } from '../../shared/linux/netlink/socket';
import { withNetns } from '../../shared/linux/netns';
import type { CmdArgs, Plugin } from '../../shared/cni/skel';
import { gcSpoofChecks, setupSpoofCheck, spoofCheckID, teardownSpoofCheck } from '../../shared/netfilter/spoofcheck';
import { enableForwarding, sysctlSet } from '../../shared/linux/sysctl';
import { formatResult, type Result } from '../../shared/cni/types';
import { bridgeByName, ensureAddr, ensureBridge } from './bridge-link';
import { checkBridge } from './check';
import { checkAddRules, loadBridgeConf, type BridgeConf } from './config';
import { calcGateways, type GatewayInfo } from './gateway';
import { setupVeth } from '../../shared/plugin/veth';
import { ensureVlanInterface, setupPortVlans } from './vlan';

const PORT_UP_TIMEOUT_MS = 2550; // the reference's total of 0+50+500+1000+1000 ms of sleeps


async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadBridgeConf(a);
  checkAddRules(conf);
  const attachment: Attachment = { containerID: a.containerID, ifname: a.ifName };
  const host = openNetlink();
  const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
  let pod: PodNetns | undefined;
  try {
    const br = ensureBridge(host, conf);
    pod = openPodNetns(a.netns);
    const veth = setupVeth(host, {
      name: a.ifName,
      mtu: conf.mtu,
      mac: conf.mac,
      peerNetnsFd: pod.fd,
      peer: pod.nl,
      master: br,
      hairpin: conf.hairpinMode,
      isolated: conf.portIsolation,
    });
    const hostVeth = veth.host;
    rollback.push(() => deleteLink(host, hostVeth.index)); // takes the container end with it
    setupPortVlans(host, hostVeth, conf);

    // Container interface at index 2, as every consumer of the reference's result expects.
    const result: Result = {
      cniVersion: '1.1.0',
      interfaces: [
        { name: br.name, mac: br.mac },
        { name: hostVeth.name, mac: hostVeth.mac },
        { name: veth.container.name, mac: veth.container.mac, sandbox: a.netns },
      ],
    };

    if (conf.macspoofchk) {
      const id = spoofCheckID(a.containerID, a.ifName);
      setupSpoofCheck(hostVeth.name, veth.container.mac, id);
      rollback.push(() => teardownSpoofCheck(id));
    }

    if (conf.ipamType) {
      const ipam = await delegateAdd(conf.ipamType, a);
      rollback.push(() => delegateDel(conf.ipamType, a)); // release the IP on any later failure
      result.ips = ipam.ips;
      result.routes = ipam.routes;
      result.dns = ipam.dns;
      if (!result.ips?.length) throw new Error('IPAM plugin returned missing IP config');
      const gateways = calcGateways(result, conf);

      const podNl = pod.nl;
      withNetns(a.netns, () => {
        setPodSysctls(a.ifName, conf.enabledad);
        configureIface(podNl, a.ifName, result);
      });
      if (conf.isGateway) configureGateways(host, br, gateways, conf, result);
      if (conf.ipMasq) {
        setupIPMasq(conf.ipMasqBackend, result.ips.map((ip) => ip.address), conf.name, attachment);
        rollback.push(() => teardownIPMasq(conf.name, attachment));
      }
    } else if (!conf.disableContainerInterface) {
      try {
        setLinkUp(pod.nl, veth.container);
      } catch (e) {
        throw new Error(`failed to set "${a.ifName}" up: ${errorMessage(e)}`, { cause: e });
      }
    }

    // The host end's MAC can change after ADD (plugins#805) and the bridge's after its first port: read both last.
    const hostNow = conf.disableContainerInterface ? getLink(host, hostVeth.index) : waitPortUp(host, hostVeth);
    result.interfaces![1]!.mac = hostNow.mac;
    result.interfaces![0]!.mac = bridgeByName(host, conf.bridge).mac;
    if (conf.dns) result.dns = conf.dns;
    // Fail here, with rollback, if the result cannot be printed in the config's version (an L2-only
    // result in 0.1/0.2); the reference reports that error after the fact and leaks the veth.
    formatResult(result, conf.cniVersion);
    return result;
  } catch (e) {
    await rollback.run();
    throw e;
  } finally {
    host.close();
    pod?.close();
  }
}

/** accept_dad / enhanced_dad / arp_notify on the pod interface; failures ignored as in the reference. */
function setPodSysctls(ifName: string, enableDad: boolean): void {
  const set = (k: string, v: string): void => {
    try {
      sysctlSet(k, v);
    } catch {
      /* e.g. IPv6 disabled in the pod */
    }
  };
  if (enableDad) {
    set(`net/ipv6/conf/${ifName}/enhanced_dad`, '1');
    set(`net/ipv6/conf/${ifName}/accept_dad`, '1');
  } else set(`net/ipv6/conf/${ifName}/accept_dad`, '0');
  set(`net/ipv4/conf/${ifName}/arp_notify`, '1');
}

/** Gateway addresses on the bridge (or on `<bridge>.<vlan>`), MAC pinned, forwarding on. */
function configureGateways(nl: NetlinkSocket, br: Link, gateways: Record<4 | 6, GatewayInfo>, conf: BridgeConf, result: Result): void {
  let vlanIf: Link | undefined;
  for (const g of [gateways[4], gateways[6]]) {
    for (const gw of g.gateways) {
      if (conf.vlan !== 0) {
        let link: Link;
        try {
          link = ensureVlanInterface(nl, br, conf);
          if (!vlanIf) {
            vlanIf = link;
            result.interfaces!.push({ name: link.name, mac: link.mac });
          }
          ensureAddr(nl, link, gw, conf.forceAddress);
        } catch (e) {
          throw new Error(`failed to set vlan interface for bridge with addr: ${errorMessage(e)}`, { cause: e });
        }
      } else {
        try {
          ensureAddr(nl, br, gw, conf.forceAddress);
        } catch (e) {
          throw new Error(`failed to set bridge addr: ${errorMessage(e)}`, { cause: e });
        }
      }
    }
    if (g.gateways.length) enableForwarding(g.family);
  }
  // No second MAC pin here (the reference's refetch + LinkSetHardwareAddr): ensureBridge already pinned
  // it, so neither the new port nor the addresses moved it, and each RTM_SETLINK with IFLA_ADDRESS
  // fires NETDEV_CHANGEADDR, which flushes the bridge's ARP cache.
}

/** Waits for the host end to be operationally up, woken by link events (no fixed sleeps). */
function waitPortUp(nl: NetlinkSocket, port: Link): Link {
  try {
    return waitForLink(nl, port.index, (l) => l.operstate === 'up', PORT_UP_TIMEOUT_MS);
  } catch (e) {
    if (e instanceof WaitTimeoutError) throw new Error(`bridge port in error state: ${e.link.operstate}`);
    throw e;
  }
}

async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadBridgeConf(a);
  // By container ID and rule comments, so it works without netns or addresses (plugins#810); before
  // the veth goes, so the rules' grace period overlaps its deletion (see teardownIPMasq).
  if (conf.ipamType && conf.ipMasq) teardownIPMasq(conf.name, { containerID: a.containerID, ifname: a.ifName }, prevResultAddresses(conf.prevResult, a.cniVersion));
  if (a.netns) deletePodInterface(a.netns, a.ifName);
  // Release after the link is gone, so the address cannot be handed out while still configured (PR #702).
  if (conf.ipamType) await delegateDel(conf.ipamType, a);
  if (conf.macspoofchk) {
    try {
      teardownSpoofCheck(spoofCheckID(a.containerID, a.ifName));
    } catch (e) {
      a.log.warn(errorMessage(e)); // the reference only logs this
    }
  }
}

async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadBridgeConf(a);
  const pod = openPodNetns(a.netns);
  const host = openNetlink();
  try {
    // An L2-only network has no IPAM to ask (the reference calls CHECK with an empty type and fails).
    if (conf.ipamType) await delegateCheck(conf.ipamType, a);
    const prev = requirePrevResult(conf.prevResult, a.cniVersion);
    checkBridge({ host, pod: pod.nl, podPath: a.netns, ifName: a.ifName, conf, prev });
  } finally {
    host.close();
    pod.close();
  }
}

/** Spec 1.1 GC: forward to IPAM, then sweep masquerade and spoof-check rules of stale attachments; collect errors. */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadBridgeConf(a);
  const valid = parseValidAttachments(a.conf); // a malformed list fails here, before anything is swept
  const attempts = new Attempts(errorMessage);
  if (conf.ipamType) await attempts.run('IPAM GC', () => delegateGC(conf.ipamType, a));
  await attempts.run('ipMasq GC', () => gcIPMasq(conf.name, valid));
  await attempts.run('spoof-check GC', () =>
    withNetlink((nl) => {
      const brIndex = bridgeIndex(nl, conf.bridge);
      // The spoof-check table is shared by all networks: only touch ports of our bridge, or gone ones.
      gcSpoofChecks(new Set(valid.map((v) => spoofCheckID(v.containerID, v.ifname))), (iface) => {
        if (!iface) return false;
        try {
          return getLink(nl, iface).masterIndex === brIndex && brIndex !== 0;
        } catch (e) {
          return isNotFound(e);
        }
      });
    }),
  );
  attempts.throwIfAny();
}

function bridgeIndex(nl: NetlinkSocket, name: string): number {
  try {
    return getLink(nl, name).index;
  } catch {
    return 0;
  }
}

/** STATUS: 50 when rtnetlink cannot be used here; otherwise whatever the IPAM plugin says. */
async function cmdStatus(a: CmdArgs): Promise<void> {
  const conf = loadBridgeConf(a);
  requireNetlink();
  if (conf.ipamType) await delegateStatus(conf.ipamType, a);
}

export const bridge: Plugin = {
  name: 'bridge',
  about: 'cnikit bridge plugin (a Linux bridge with a veth per pod; reference: containernetworking/plugins bridge)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
