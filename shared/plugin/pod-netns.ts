// The pod's network namespace as a plugin holds it during a verb: an fd (to create links in it,
// IFLA_NET_NS_FD) and an rtnetlink socket inside it.
import { closeSync } from 'node:fs';
import { errorMessage } from '../cni/errors';
import { isNotFound } from '../linux/netlink/errors';
import { deleteLink } from '../linux/netlink/link';
import { openNetlink, withNetlink, type NetlinkSocket } from '../linux/netlink/socket';
import { NetnsNotFoundError, openNetnsFd } from '../linux/netns';

export interface PodNetns {
  fd: number;
  nl: NetlinkSocket;
  /** closes the socket and the fd */
  close(): void;
}

/**
 * Opens CNI_NETNS `path`. Throws `failed to open netns "<path>": <why>` (the reference's text) when it
 * is missing or not a network namespace; nothing stays open on failure.
 */
export function openPodNetns(path: string): PodNetns {
  try {
    const fd = openNetnsFd(path);
    try {
      const nl = openNetlink(path);
      return {
        fd,
        nl,
        close: () => {
          nl.close();
          closeSync(fd);
        },
      };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  } catch (e) {
    throw new Error(`failed to open netns "${path}": ${errorMessage(e)}`, { cause: e });
  }
}

/**
 * DEL's removal of the pod's interface `ifName` in netns `path` (a veth: its host end goes with it).
 * Succeeds when the interface or the whole netns is already gone (spec: DEL is idempotent; the netns
 * may be deleted before DEL, kubernetes#43014); throws what else netlink reports.
 */
export function deletePodInterface(path: string, ifName: string): void {
  try {
    withNetlink((pod) => {
      try {
        deleteLink(pod, ifName);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }, path);
  } catch (e) {
    if (!(e instanceof NetnsNotFoundError)) throw e;
  }
}
