// The process's nfnetlink socket for netfilter work (iptables-nft tables, nftables table lookups).
// Kept open and reused rather than opened and closed per request: closing a NETLINK_NETFILTER socket
// waits for the kernel's pending nf_tables cleanup (an RCU grace period after any commit that
// deleted something, ~10-20 ms, nft_rcv_nl_event), so each close after a deletion costs that wait,
// and several closes in one verb (a read, a delete, the other family's read) can each pay one,
// also for another process's deletion. One socket, closed by the kernel at exit, waits once, and the
// grace period runs alongside whatever the plugin does after its last deletion.
import { readlinkSync } from 'node:fs';
import { NETLINK_NETFILTER } from '../linux/netlink/constants';
import { NetlinkSocket } from '../linux/netlink/socket';

let cached: { netns: string; nl: NetlinkSocket } | undefined;

/**
 * A NETLINK_NETFILTER socket in the calling thread's current netns: the cached one when the netns
 * is the same (compared by /proc/thread-self/ns/net, so a long-running process or a netns worker
 * thread never talks to another netns), else a new one (the old one closed). Throws SyscallError.
 */
export function netfilterSocket(): NetlinkSocket {
  const netns = readlinkSync('/proc/thread-self/ns/net');
  if (cached?.netns === netns) return cached.nl;
  cached?.nl.close();
  cached = undefined;
  const nl = NetlinkSocket.open(NETLINK_NETFILTER);
  cached = { netns, nl };
  return nl;
}
