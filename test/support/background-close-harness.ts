// Test-only entry, compiled the way build.mjs compiles main.ts (test/integration/background-close.test.ts):
// closes a NETLINK_NETFILTER socket with closeInBackground and reports what this process saw.
// Usage: harness handoff | harness fallback (run it with a low RLIMIT_NOFILE: the fds are filled
// first, so io_uring_setup has none left). Prints one JSON object on stdout.
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { closeInBackground } from '../../shared/linux/libc';
import { NETLINK_NETFILTER } from '../../shared/linux/netlink/constants';
import { NetlinkSocket } from '../../shared/linux/netlink/socket';

const fdTarget = (fd: number): string | null => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
};

function main(): void {
  const mode = process.argv[2];
  const nl = NetlinkSocket.open(NETLINK_NETFILTER);
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
  const handedOff = closeInBackground(nl.fd);
  const after = fdTarget(nl.fd);
  for (const fd of filler) closeSync(fd);
  process.stdout.write(JSON.stringify({ portId: nl.portId, fd: nl.fd, before, after, handedOff, filled: filler.length }) + '\n');
}

main();
