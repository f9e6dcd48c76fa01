// closeInBackground (shared/linux/libc.ts), in a compiled executable on the real kernel: a
// NETLINK_NETFILTER socket handed to a throwaway io_uring leaves the process at once and is released
// by the kernel afterwards (nothing leaks); without a ring (no fd left for it) the fd is closed in place.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, delNetns, nsName } from '../support/cni';
import { compileLikeTheProduct } from '../support/compile';
import { ioUringDisabled, netfilterPortIds, netfilterSocketsAfterRelease } from '../support/netlink-sockets';

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

  (ioUringDisabled() ? test.skip : test)('hands the socket to an io_uring: the fd is gone from the process, and the kernel releases the socket afterwards', async () => {
    const { stdout } = await execa('ip', ['netns', 'exec', host, exe, 'handoff']);
    const out = JSON.parse(stdout);
    expect(out.handedOff).toBe(true);
    expect(out.before).toMatch(/^socket:\[\d+\]$/);
    expect(out.after).toBeNull();
    expect(out.portId).toBeGreaterThan(0);
    // The ring's teardown runs in a kernel worker: the socket goes a moment later (no leak).
    const alive = await netfilterSocketsAfterRelease(host, [out.portId]);
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
