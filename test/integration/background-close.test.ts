// closeInBackground (shared/linux/libc.ts), in a compiled executable on the real kernel: a
// NETLINK_NETFILTER socket handed to a throwaway io_uring leaves the process at once and is released
// by the kernel afterwards (nothing leaks); without a ring (no fd left for it) it is closed in place.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, delNetns, nsName } from '../support/cni';
import { compileLikeTheProduct } from '../support/compile';
import { ioUringUsable, netfilterSocketsAfterRelease } from '../support/netlink-sockets';

const root = join(__dirname, '..', '..');
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

  (ioUringUsable() ? test : test.skip)('hands the socket to an io_uring after it deleted a chain: the call returns with the fd gone from the process while the socket is still alive (the ring holds it), and the kernel releases it afterwards', async () => {
    const { stdout } = await execa('ip', ['netns', 'exec', host, exe, 'handoff']);
    const out = JSON.parse(stdout);
    expect(out.handedOff).toBe(true);
    expect(out.before).toMatch(/^socket:\[\d+\]$/);
    expect(out.after).toBeNull();
    expect(out.portId).toBeGreaterThan(0);
    // Released later, not in the call: the ring's teardown in a kernel worker drops it (no leak).
    expect(out.listedRightAfter).toBe(true);
    expect(await netfilterSocketsAfterRelease(host, [out.portId])).not.toContain(out.portId);
    expect((await execa('ip', ['netns', 'exec', host, 'nft', 'list', 'table', 'ip', 'bgc_harness'])).stdout).not.toContain('doomed');
  });

  test('without a free fd for the ring (RLIMIT_NOFILE reached) it closes the socket in place and says so: gone when the call returns', async () => {
    const { stdout } = await execa('ip', ['netns', 'exec', host, 'prlimit', '--nofile=64:64', exe, 'fallback']);
    const out = JSON.parse(stdout);
    expect(out.filled).toBeGreaterThan(0);
    expect(out.handedOff).toBe(false);
    expect(out.before).toMatch(/^socket:\[\d+\]$/);
    expect(out.after).toBeNull();
    expect(out.listedRightAfter).toBe(false);
  });
});
