// The netlink sockets alive in a test netns, from /proc/net/netlink (columns: sk, Eth = protocol, Pid = port ID, ...).
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';

const NETLINK_NETFILTER = 12;

/** The port IDs of the user-space NETLINK_NETFILTER sockets alive in netns `ns` (port ID 0, the kernel's own, left out). */
export async function netfilterPortIds(ns: string): Promise<number[]> {
  const { stdout } = await execa('ip', ['netns', 'exec', ns, 'cat', '/proc/net/netlink']);
  return stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => Number(c[1]) === NETLINK_NETFILTER && Number(c[2]) !== 0)
    .map((c) => Number(c[2]));
}

/**
 * The NETLINK_NETFILTER sockets of netns `ns` once none of `portIds` (all of them when omitted) is
 * alive any more, or what is alive after `timeoutMs`: the kernel releases a socket handed to an
 * io_uring in its own worker, a moment after the process let it go.
 */
export async function netfilterSocketsAfterRelease(ns: string, portIds?: number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  const pending = (alive: number[]) => (portIds ? alive.filter((p) => portIds.includes(p)) : alive);
  let alive = await netfilterPortIds(ns);
  while (pending(alive).length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    alive = await netfilterPortIds(ns);
  }
  return alive;
}

/**
 * Whether closeInBackground can hand a socket off here: Linux 5.12 or later (IORING_FEAT_NATIVE_WORKERS)
 * and io_uring not switched off for everyone (kernel.io_uring_disabled = 2; 1 still lets root use it).
 */
export function ioUringUsable(): boolean {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  if (major < 5 || (major === 5 && minor < 12)) return false;
  const knob = '/proc/sys/kernel/io_uring_disabled';
  return !existsSync(knob) || readFileSync(knob, 'utf8').trim() !== '2';
}
