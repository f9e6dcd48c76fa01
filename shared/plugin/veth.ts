// The pod's veth pair (the reference's ip.SetupVeth): host end up (and enslaved to a bridge when one
// is given), container end created directly in the pod netns (no move afterwards, the expensive
// kernel step; node-stack.md §2). Used by bridge and ptp.
import { errorMessage } from '../cni/errors';
import { randomHex } from '../crypto';
import { isExists } from '../linux/netlink/errors';
import { addVeth, deleteLink, findLink, getLink, setBridgePort, setLinkUp, type Link } from '../linux/netlink/link';
import type { NetlinkSocket } from '../linux/netlink/socket';
import { sysctlSet } from '../linux/sysctl';

const NAME_RETRIES = 10; // the reference's makeVeth retries on a host-name collision

/** `veth` + 8 random hex digits (the reference's RandomVethName). */
export const randomVethName = (): string => `veth${randomHex(4)}`;

export interface VethPair {
  host: Link; // in the socket `host`'s netns
  container: Link; // in the netns of `peerNetnsFd`
}

export interface VethOptions {
  /** name of the end in the target netns (CNI_IFNAME, or `<br>.<vlan>` for the gateway veth) */
  name: string;
  mtu: number;
  mac?: string;
  /** netns fd for the named end; undefined = same netns as `host` */
  peerNetnsFd?: number;
  /** socket in the named end's netns, to read it back */
  peer: NetlinkSocket;
  /** bridge to enslave the host end to at creation; undefined = unbridged (ptp) */
  master?: Link;
  /** bridge-port flags, only with `master` */
  hairpin?: boolean;
  isolated?: boolean;
  /**
   * Host end without IPv6 DAD (accept_dad=0 before it goes up). A host end that routes (ptp) must
   * send neighbour solicitations for forwarded packets at once, and the kernel sends none while
   * the link's link-local address is tentative (ndisc_send_ns), so a new pod would lose its first
   * IPv6 packets for 1-2 s. Costs one more netlink round trip.
   */
  hostNoDad?: boolean;
}

/**
 * Creates the pair with the host end already up (unless `hostNoDad`) and enslaved to `master` if
 * given (one RTM_NEWLINK), sets the port flags, and returns both ends as the kernel reports them. Throws
 * `container veth name ("x") peer provided ("vethy") already exists` when `name` is taken in the
 * pod (the reference's text); on any later failure the pair is deleted again.
 */
export function setupVeth(host: NetlinkSocket, o: VethOptions): VethPair {
  let hostName = '';
  for (let i = 0; ; i++) {
    hostName = randomVethName();
    try {
      addVeth(host, {
        name: hostName,
        mtu: o.mtu || undefined,
        up: !o.hostNoDad,
        master: o.master?.index,
        peer: { name: o.name, mtu: o.mtu || undefined, mac: o.mac, netnsFd: o.peerNetnsFd },
      });
      break;
    } catch (e) {
      if (!isExists(e)) throw new Error(`failed to create veth pair for "${o.name}": ${errorMessage(e)}`, { cause: e });
      // EEXIST is either our random host name (retry) or the container name (the caller's error).
      if (findLink(o.peer, o.name) || i + 1 >= NAME_RETRIES)
        throw new Error(`container veth name ("${o.name}") peer provided ("${hostName}") already exists`);
    }
  }
  try {
    let hostLink = getLink(host, hostName);
    try {
      sysctlSet(`net/ipv6/conf/${hostName}/accept_ra`, '0');
    } catch {
      /* best effort, as in the reference */
    }
    if (o.hostNoDad) {
      try {
        sysctlSet(`net/ipv6/conf/${hostName}/accept_dad`, '0');
      } catch {
        /* IPv6 off on the host: nothing to wait for */
      }
      setLinkUp(host, hostLink);
      hostLink = getLink(host, hostLink.index);
    }
    const portFlags = !!o.master && (!!o.hairpin || !!o.isolated);
    if (portFlags) {
      try {
        setBridgePort(host, hostLink, { hairpin: o.hairpin, isolated: o.isolated });
      } catch (e) {
        throw new Error(`failed to setup hairpin mode or isolation for ${hostName}: ${errorMessage(e)}`, { cause: e });
      }
    }
    // Read back only when the port flags changed; the accept_ra write changes nothing a Link shows.
    return { host: portFlags ? getLink(host, hostLink.index) : hostLink, container: getLink(o.peer, o.name) };
  } catch (e) {
    // No half-configured pair left behind: deleting the host end removes both.
    try {
      deleteLink(host, hostName);
    } catch {
      /* already gone */
    }
    throw e;
  }
}

