// Test-only entry, compiled the way build.mjs compiles main.ts (test/integration/background-close.test.ts):
// closes a NETLINK_NETFILTER socket with closeInBackground and reports what this process saw.
// Usage (in a scratch netns):
//   harness handoff   the socket first deletes a chain (so its release has an RCU grace period to
//                     wait out), then is closed in the background
//   harness fallback  the fds are filled first (run it with a low RLIMIT_NOFILE), so io_uring_setup
//                     has none left and the socket is closed in place
// Prints one JSON object on stdout.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { closeInBackground } from '../../shared/linux/libc';
import { NETLINK_NETFILTER } from '../../shared/linux/netlink/constants';
import { NFPROTO_IPV4, nftDelete } from '../../shared/linux/netlink/nftables';
import { NetlinkSocket } from '../../shared/linux/netlink/socket';

const fdTarget = (fd: number): string | null => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
};

/** Whether a NETLINK_NETFILTER socket with `portId` is alive in this netns (/proc/net/netlink: sk, Eth, Pid, ...). */
const listed = (portId: number): boolean =>
  readFileSync('/proc/net/netlink', 'utf8')
    .split('\n')
    .slice(1)
    .some((l) => {
      const c = l.trim().split(/\s+/);
      return Number(c[1]) === NETLINK_NETFILTER && Number(c[2]) === portId;
    });

function main(): void {
  const mode = process.argv[2];
  if (mode === 'handoff') execFileSync('nft', ['add table ip bgc_harness; add chain ip bgc_harness doomed']);
  const nl = NetlinkSocket.open(NETLINK_NETFILTER);
  if (mode === 'handoff') nftDelete(nl, [{ family: NFPROTO_IPV4, table: 'bgc_harness', chain: 'doomed' }]);
  const before = fdTarget(nl.fd);
  const filler: number[] = [];
  if (mode === 'fallback') {
    for (;;) {
      try {
        filler.push(openSync('/dev/null', 'r'));
      } catch {
        break; // EMFILE: no fd left for the ring
      }
    }
  }
  const t0 = performance.now();
  const handedOff = closeInBackground(nl.fd);
  const ms = performance.now() - t0;
  const listedRightAfter = listed(nl.portId); // the ring still holds it, or it is gone already
  const after = fdTarget(nl.fd);
  for (const fd of filler) closeSync(fd);
  process.stdout.write(JSON.stringify({ portId: nl.portId, before, after, handedOff, listedRightAfter, ms, filled: filler.length }) + '\n');
}

main();
