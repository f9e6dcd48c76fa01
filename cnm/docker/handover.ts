// "Prepare and hand over" (cnm-shim.md §5.1): the CNI chain runs at CreateEndpoint against a
// scratch netns of ours, because the container's netns does not exist yet when Docker calls Join
// (moby/libnetwork#1939); the container's link is then moved to the host netns, where libnetwork
// finds it by name, moves it into the container and re-addresses it. libnetwork returns it to the
// host under the same name; DeleteEndpoint moves it back so a foreign chain's DEL finds what its ADD
// made, or deletes it when the chain is ours (our DEL needs no link).
import { closeSync } from 'node:fs';
import { parseCIDR } from '../../shared/ip';
import { addAddr } from '../../shared/linux/netlink/addr';
import { isExists, isNotFound } from '../../shared/linux/netlink/errors';
import { deleteLink, findLink, getLink, setLink } from '../../shared/linux/netlink/link';
import { withNetlink } from '../../shared/linux/netlink/socket';
import { createNamedNetns, deleteNamedNetns, NetnsNotFoundError, openNetnsFd } from '../../shared/linux/netns';
import { DEFAULT_NETNS_DIR } from '../index';

/** Where named netns live (the library's, as iproute2's NETNS_RUN_DIR). */
export const NETNS_RUN_DIR = DEFAULT_NETNS_DIR;

export const netnsPath = (name: string): string => `${NETNS_RUN_DIR}/${name}`;

/**
 * Creates the scratch netns `name` in-process (as `ip netns add`) and returns its path. An existing
 * netns of that name is reused (a re-sent CreateEndpoint, or one a crash left: the chain's ADD then
 * runs into it again); a file there that is no namespace (a reboot's leftover) is replaced.
 * Throws NetnsError.
 */
export function addScratchNetns(name: string): string {
  const path = netnsPath(name);
  if (isNetns(path)) return path;
  deleteNamedNetns(path);
  createNamedNetns(path);
  return path;
}

/** Removes the scratch netns `name` (its remaining links go with it); succeeds when it is gone. Throws NetnsError. */
export function deleteScratchNetns(name: string): void {
  deleteNamedNetns(netnsPath(name));
}

/** True when `path` is a network namespace (a bind mount of one). */
export function isNetns(path: string): boolean {
  try {
    closeSync(openNetnsFd(path));
    return true;
  } catch {
    return false;
  }
}

/**
 * Moves link `ifName` from the netns at `from` (null: this process's netns) into the netns at `to`
 * (null: ours). Returns false when there is no such link in `from` (or `from` is gone), true when
 * moved; throws NetlinkError/NetnsError otherwise. A move keeps the link's MAC and MTU and its
 * host-side peer; it drops its addresses and routes (the kernel's rule), which libnetwork re-adds.
 */
export function moveLink(ifName: string, from: string | null, to: string | null): boolean {
  let toFd: number;
  try {
    toFd = openNetnsFd(to ?? '/proc/self/ns/net');
  } catch (e) {
    if (e instanceof NetnsNotFoundError) throw new Error(`cannot move link ${ifName}: netns ${to} does not exist`, { cause: e });
    throw e;
  }
  try {
    return withNetlink((nl) => {
      try {
        setLink(nl, ifName, { netnsFd: toFd });
        return true;
      } catch (e) {
        if (isNotFound(e)) return false;
        throw e;
      }
    }, from ?? undefined);
  } catch (e) {
    if (e instanceof NetnsNotFoundError) return false;
    throw e;
  } finally {
    closeSync(toFd);
  }
}

/**
 * Puts `addresses` (CIDRs) back on link `ifName` in the netns at `netns`: a link that came back from
 * the container has none (a netns move drops them), and a chain's DEL may find what to undo through
 * them (the Go reference bridge tears its masquerade rules down by the link's addresses). Throws
 * NetlinkError/NetnsError; an address already there is fine.
 */
export function restoreAddresses(ifName: string, netns: string, addresses: string[]): void {
  withNetlink((nl) => {
    const link = getLink(nl, ifName);
    for (const a of addresses) {
      const net = parseCIDR(a);
      if (!net) continue;
      try {
        addAddr(nl, link, net, net.ip.family === 6 ? { noDad: true } : {});
      } catch (e) {
        if (!isExists(e)) throw e;
      }
    }
  }, netns);
}

/** True when this process's netns has a link named `ifName`. */
export function hasLink(ifName: string, netns?: string): boolean {
  try {
    return withNetlink((nl) => findLink(nl, ifName) !== undefined, netns);
  } catch (e) {
    if (e instanceof NetnsNotFoundError) return false;
    throw e;
  }
}

/** Deletes link `ifName` in this process's netns; false when there was none. */
export function deleteHostLink(ifName: string): boolean {
  return withNetlink((nl) => {
    try {
      deleteLink(nl, ifName);
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  });
}
