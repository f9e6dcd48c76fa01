// The nfnetlink socket for netfilter work (iptables-nft tables, nftables table lookups): one per
// thread, reused while the thread stays in one netns.
// Releasing a NETLINK_NETFILTER socket makes the kernel finish its pending nf_tables cleanup first
// (nft_rcv_nl_event): after any commit that deleted something, anyone's, that is the rest of an RCU
// grace period, ~10-25 ms here, and the kernel holds the netns's nf_tables mutex meanwhile, so the
// next commit or link deletion there waits too. The kernel releases a process's sockets in its exit,
// so every rule-deleting DEL used to exit one grace period late. NetlinkSocket.close() hands such a
// socket to the kernel to release in its own worker (closeInBackground, Linux 5.12+), and the
// cached one is closed that way when the process exits.
import { readlinkSync } from 'node:fs';
import { NETLINK_NETFILTER } from '../linux/netlink/constants';
import { NetlinkSocket } from '../linux/netlink/socket';

let cached: { netns: string; nl: NetlinkSocket } | undefined;
let exitHookSet = false;

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
  if (!exitHookSet) {
    exitHookSet = true;
    process.once('exit', () => cached?.nl.close());
  }
  cached = { netns, nl };
  return nl;
}
