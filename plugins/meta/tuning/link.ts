// The pod interface's values that tuning changes: what to save before, the changes themselves, and
// putting the saved values back (the reference's createBackup / change* / restoreBackup).
import { errorMessage } from '../../../shared/cni/errors';
import { isNotFound } from '../../../shared/linux/netlink/errors';
import { getLink, setLink, type Link, type LinkChanges } from '../../../shared/linux/netlink/link';
import type { NetlinkSocket } from '../../../shared/linux/netlink/socket';
import type { TuningPlan } from './config';
import type { SavedLink } from './saved-link';

/** The pod's interface; throws `failed to get "<ifName>": <why>` (the reference's wording). */
export function podLink(nl: NetlinkSocket, ifName: string): Link {
  try {
    return getLink(nl, ifName);
  } catch (e) {
    throw new Error(`failed to get "${ifName}": ${errorMessage(e)}`, { cause: e });
  }
}

/** The values ADD is about to change, as the link has them now (the reference's createBackup). */
export function savedFrom(link: Link, p: TuningPlan): SavedLink {
  const s: SavedLink = {};
  if (p.mac) s.mac = link.mac;
  if (p.promisc) s.promisc = link.promisc;
  if (p.mtu) s.mtu = link.mtu;
  if (p.allmulti !== undefined) s.allmulti = link.allmulti;
  if (p.txQLen !== undefined) s.txQLen = link.txQLen;
  return s;
}

/** One change a message, in the reference's order (MAC, promisc, MTU, allmulti, txqlen), so an error names the one that failed. */
export function changeLink(nl: NetlinkSocket, link: Link, p: TuningPlan): void {
  const changes: LinkChanges[] = [];
  if (p.mac) changes.push({ mac: p.mac });
  if (p.promisc) changes.push({ promisc: true });
  if (p.mtu) changes.push({ mtu: p.mtu });
  if (p.allmulti !== undefined) changes.push({ allmulti: p.allmulti });
  if (p.txQLen !== undefined) changes.push({ txQLen: p.txQLen });
  for (const c of changes) setLink(nl, link, c);
}

/**
 * Puts the saved values back in the reference's order (MTU, MAC, promisc, allmulti, txqlen), each
 * tried even when an earlier one failed. Returns the failures, or 'gone' when the link is not there.
 */
export function restoreLink(nl: NetlinkSocket, ifName: string, s: SavedLink): string[] | 'gone' {
  let link: Link;
  try {
    link = getLink(nl, ifName);
  } catch (e) {
    if (isNotFound(e)) return 'gone';
    throw e;
  }
  const failures: string[] = [];
  const attempt = (what: string, c: LinkChanges): void => {
    try {
      setLink(nl, link, c);
    } catch (e) {
      failures.push(`failed to restore ${what}: ${errorMessage(e)}`);
    }
  };
  if (s.mtu) attempt('MTU', { mtu: s.mtu });
  if (s.mac) attempt('MAC address', { mac: s.mac });
  if (s.promisc !== undefined) attempt('promiscuous mode', { promisc: s.promisc });
  if (s.allmulti !== undefined) attempt('all-multicast mode', { allmulti: s.allmulti });
  if (s.txQLen !== undefined) attempt('transmit queue length', { txQLen: s.txQLen });
  return failures;
}
