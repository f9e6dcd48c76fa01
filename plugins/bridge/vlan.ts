// VLANs on a bridge port (access VLAN, trunk VIDs, native VLAN 1) and the `<bridge>.<vlan>` gateway veth.
import { errorMessage } from '../../shared/cni/errors';
import { addBridgeVlan, deleteBridgeVlan, getBridgeVlans } from '../../shared/linux/netlink/bridge-vlan';
import { isNotFound } from '../../shared/linux/netlink/errors';
import { getLink, setLinkUp, type Link } from '../../shared/linux/netlink/link';
import type { NetlinkSocket } from '../../shared/linux/netlink/socket';
import type { BridgeConf } from './config';
import { setupVeth } from '../../shared/plugin/veth';

/** Consecutive VIDs as [first, last] ranges: one netlink attribute pair per range instead of per VID. */
export function vidRanges(vids: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const v of vids) {
    const last = out[out.length - 1];
    if (last && v === last[1] + 1) last[1] = v;
    else out.push([v, v]);
  }
  return out;
}

type VlanConf = Pick<BridgeConf, 'vlan' | 'vlans' | 'preserveDefaultVlan'>;

/** The reference's setupVeth VLAN part, in its order. */
export function setupPortVlans(nl: NetlinkSocket, port: Link, c: VlanConf): void {
  const what = `on interface "${port.name}"`;
  if ((c.vlan !== 0 || c.vlans.length) && !c.preserveDefaultVlan) {
    try {
      for (const v of getBridgeVlans(nl, port)) deleteBridgeVlan(nl, port, { vid: v.vid, vidEnd: v.vidEnd });
    } catch (e) {
      throw new Error(`failed to remove default vlan ${what}: ${errorMessage(e)}`, { cause: e });
    }
  }
  if (c.vlan !== 0) {
    try {
      addBridgeVlan(nl, port, { vid: c.vlan, pvid: true, untagged: true });
    } catch (e) {
      throw new Error(`failed to setup vlan tag ${what}: ${errorMessage(e)}`, { cause: e });
    }
  }
  for (const [vid, vidEnd] of vidRanges(c.vlans)) {
    try {
      addBridgeVlan(nl, port, { vid, vidEnd });
    } catch (e) {
      throw new Error(`failed to setup vlan tag ${what}: ${errorMessage(e)}`, { cause: e });
    }
  }
  // Backwards compatibility (reference): a trunk without an access VLAN gets native VLAN 1.
  if (c.vlan === 0 && c.vlans.length) {
    try {
      addBridgeVlan(nl, port, { vid: 1, pvid: true, untagged: true });
    } catch (e) {
      throw new Error(`failed to setup default native vlan tag ${what}: ${errorMessage(e)}`, { cause: e });
    }
  }
}

/**
 * The gateway interface for a VLAN network: a veth `<bridge>.<vlan>` in the host netns whose peer is
 * an access port of that VLAN (the reference's ensureVlanInterface). Returns the `<bridge>.<vlan>` end.
 */
export function ensureVlanInterface(nl: NetlinkSocket, br: Link, c: VlanConf): Link {
  const name = `${br.name}.${c.vlan}`;
  try {
    return getLink(nl, name);
  } catch (e) {
    if (!isNotFound(e)) throw new Error(`failed to find interface "${name}": ${errorMessage(e)}`, { cause: e });
  }
  let pair;
  try {
    pair = setupVeth(nl, { name, mtu: br.mtu, peer: nl, master: br, hairpin: false, isolated: false });
    setupPortVlans(nl, pair.host, { vlan: c.vlan, vlans: [], preserveDefaultVlan: c.preserveDefaultVlan });
  } catch (e) {
    throw new Error(`faild to create vlan gateway "${name}": ${errorMessage(e)}`, { cause: e });
  }
  try {
    setLinkUp(nl, pair.container);
  } catch (e) {
    throw new Error(`failed to up "${name}": ${errorMessage(e)}`, { cause: e });
  }
  return getLink(nl, pair.container.index);
}
