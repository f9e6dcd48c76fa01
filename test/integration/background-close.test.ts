// closeInBackground (shared/linux/libc.ts), in a compiled executable on the real kernel: a
// NETLINK_NETFILTER socket handed to a throwaway io_uring leaves the process at once and is released
// by the kernel afterwards (nothing leaks); without a ring (no fd left for it) the fd is closed in place.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, delNetns, nsName } from '../support/cni';
import { compileLikeTheProduct } from '../support/compile';

const root = join(__dirname, '..', '..');
const NETLINK_NETFILTER = 12;

/** The port IDs of the NETLINK_NETFILTER sockets alive in netns `ns` (/proc/net/netlink: sk, Eth, Pid, ...). */
async function netfilterPortIds(ns: string): Promise<number[]> {
  const { stdout } = await execa('ip', ['netns', 'exec', ns, 'cat', '/proc/net/netlink']);
  return stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => Number(c[1]) === NETLINK_NETFILTER)
    .map((c) => Number(c[2]));
}

// A kernel with io_uring switched off (kernel.io_uring_disabled) can only take the fallback.
const ioUringDisabled = existsSync('/proc/sys/kernel/io_uring_disabled') && readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim() !== '0';

describe('closeInBackground on a NETLINK_NETFILTER socket', () => {
  let dir: string;
  let exe: string;
  const host = nsName('bgc-h');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'background-close-'));
    exe = await compileLikeTheProduct(join(root, 'test', 'support', 'background-close-harness.ts'), dir);
    await addNetns(host);
  }, 120_000);
  afterAll(async () => {
    await delNetns(host);
    rmSync(dir, { recursive: true, force: true });
  });

  (ioUringDisabled ? test.skip : test)('hands the socket to an io_uring: the fd is gone from the process, and the kernel releases the socket afterwards', async () => {
    const { stdout } = await execa('ip', ['netns', 'exec', host, exe, 'handoff']);
    const out = JSON.parse(stdout);
    expect(out.handedOff).toBe(true);
    expect(out.before).toMatch(/^socket:\[\d+\]$/);
    expect(out.after).toBeNull();
    expect(out.portId).toBeGreaterThan(0);
    // The ring's teardown runs in a kernel worker: poll until the socket is gone (no leak).
    const deadline = Date.now() + 10_000;
    let alive = await netfilterPortIds(host);
    while (alive.includes(out.portId) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      alive = await netfilterPortIds(host);
    }
    expect(alive).not.toContain(out.portId);
  });

  test('without a free fd for the ring (RLIMIT_NOFILE reached) it closes the fd in place and says so', async () => {
    const { stdout } = await execa('ip', ['netns', 'exec', host, 'prlimit', '--nofile=64:64', exe, 'fallback']);
    const out = JSON.parse(stdout);
    expect(out.filled).toBeGreaterThan(0);
    expect(out.handedOff).toBe(false);
    expect(out.before).toMatch(/^socket:\[\d+\]$/);
    expect(out.after).toBeNull();
    expect(await netfilterPortIds(host)).not.toContain(out.portId);
  });
});
