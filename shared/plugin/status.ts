// STATUS (spec 1.1): the check a netlink-based plugin makes before saying it can serve ADD.
import { CniError, errorMessage, ErrPluginNotAvailable } from '../cni/errors';
import { getLink } from '../linux/netlink/link';
import { withNetlink } from '../linux/netlink/socket';

/**
 * Throws CniError code 50 ("plugin not available", spec 1.1 STATUS) when an rtnetlink socket
 * cannot be opened or cannot read `lo` in the plugin's netns; returns when netlink works.
 */
export function requireNetlink(): void {
  try {
    withNetlink((nl) => getLink(nl, 'lo'));
  } catch (e) {
    throw new CniError(ErrPluginNotAvailable, `netlink is not available: ${errorMessage(e)}`, '', { cause: e });
  }
}
