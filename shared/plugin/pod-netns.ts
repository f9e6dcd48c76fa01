// The pod's network namespace as a plugin holds it during a verb: an fd (to create links in it,
// IFLA_NET_NS_FD) and an rtnetlink socket inside it.
import { closeSync } from 'node:fs';
import { openNetlink, type NetlinkSocket } from '../linux/netlink/socket';
import { openNetnsFd } from '../linux/netns';

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
    throw new Error(`failed to open netns "${path}": ${e instanceof Error ? e.message : String(e)}`);
  }
}
