// CHECK (the reference's cmdCheck): the bridge, the container veth and its host peer on the bridge
// still match prevResult, and the pod still has its addresses and routes. Messages as the reference's.
import { validateExpectedInterfaceIPs, validateExpectedRoutes } from '../../shared/plugin/configure-iface';
import { getLink, type Link } from '../../shared/linux/netlink/link';
import type { NetlinkSocket } from '../../shared/linux/netlink/socket';
import type { Interface, Result } from '../../shared/cni/types';
import type { BridgeConf } from './config';

export interface CheckInput {
  host: NetlinkSocket;
  pod: NetlinkSocket;
  podPath: string;
  ifName: string;
  conf: BridgeConf;
  prev: Result;
}

function lookup(nl: NetlinkSocket, intf: Interface | undefined, inSandbox: boolean): Link {
  if (!intf?.name) throw new Error('Interface name missing ');
  let link: Link;
  try {
    link = getLink(nl, intf.name);
  } catch {
    throw new Error(`Interface name ${intf.name} not found`);
  }
  if (inSandbox && !intf.sandbox) throw new Error(`Interface ${intf.name} is expected to be in a sandbox`);
  if (!inSandbox && intf.sandbox) throw new Error(`Interface ${intf.name} should not be in sandbox`);
  return link;
}

export function checkBridge({ host, pod, podPath, ifName, conf, prev }: CheckInput): void {
  const ifaces = prev.interfaces ?? [];
  const brMap = ifaces.find((i) => i.name === conf.bridge);
  const contMap = ifaces.find((i) => i.name === ifName && i.sandbox === podPath);

  const br = lookup(host, brMap, false);
  if (br.kind !== 'bridge') throw new Error(`Interface ${br.name} does not have link type of bridge`);
  if (brMap!.mac && brMap!.mac !== br.mac) throw new Error(`Bridge interface ${br.name} Mac doesn't match: ${brMap!.mac}`);
  if (br.promisc !== conf.promiscMode)
    throw new Error(`Bridge interface ${br.name} configured Promisc Mode ${conf.promiscMode} doesn't match current state: ${br.promisc} `);

  if (podPath !== (contMap?.sandbox ?? '')) throw new Error(`Sandbox in prevResult ${contMap?.sandbox ?? ''} doesn't match configured netns: ${podPath}`);
  const cont = lookup(pod, contMap, true);
  if (cont.kind !== 'veth') throw new Error(`Error: Container interface ${cont.name} not of type veth`);
  if (contMap!.mac && contMap!.mac !== cont.mac) throw new Error(`Interface ${cont.name} Mac ${contMap!.mac} doesn't match container Mac: ${cont.mac}`);

  // The host end: a veth in the result whose peer is the container interface, enslaved to the bridge.
  let vethFound = false;
  for (const intf of ifaces) {
    if (intf.name === brMap!.name || intf.name === contMap!.name) continue;
    const l = lookup(host, intf, false);
    if (l.kind !== 'veth') continue; // not something we created
    if (l.index !== cont.linkIndex || l.linkIndex !== cont.index || l.masterIndex !== br.index) continue;
    if (intf.mac && intf.mac !== l.mac) throw new Error(`Interface ${intf.name} Mac doesn't match: ${intf.mac} not found`);
    vethFound = true;
    break;
  }
  if (!vethFound) throw new Error(`CNI veth created for bridge ${conf.bridge} was not found`);

  validateExpectedInterfaceIPs(pod, ifName, prev.ips ?? []);
  validateExpectedRoutes(pod, prev.routes ?? []);
}
