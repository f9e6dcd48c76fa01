// The process's nfnetlink socket for netfilter work (iptables-nft tables, nftables table lookups).
// Releasing a NETLINK_NETFILTER socket waits for the kernel's pending nf_tables cleanup (an RCU
// grace period after any commit that deleted something, anyone's, ~10-25 ms: nft_rcv_nl_event).
// NetlinkSocket.close() has the kernel do that release in the background, but one socket per netns,
// reused, also saves the opens; and it is closed that way when the process exits, since the
// kernel's own close at exit would make the exit wait (each rule-deleting plugin's DEL did, ~20 ms).
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
  if (!closeAtExit) process.once('exit', (closeAtExit = () => cached?.nl.close()));
  cached = { netns, nl };
  return nl;
}

let closeAtExit: (() => void) | undefined;
