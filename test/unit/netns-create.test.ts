// createNamedNetns / deleteNamedNetns (shared/linux/netns.ts), the in-process `ip netns add/del`,
// against a fake libc that records the syscalls: the order iproute2 uses, the thread always back in
// its own netns, and nothing left behind when a step fails. The real thing runs in cnm.test.ts.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED } from '../../shared/linux/libc';
import { createNamedNetns, deleteNamedNetns, NetnsError, NetnsRestoreError } from '../../shared/linux/netns';

const EPERM = 1;
const ENOENT = 2;
const EBUSY = 16;
const EINVAL = 22;

interface Fake {
  calls: string[];
  results: Record<string, number[]>; // per syscall, the results of its successive calls (default 0)
}
const mockFake: Fake = { calls: [], results: {} };
const next = (name: string): number => mockFake.results[name]?.shift() ?? 0;

jest.mock('../../shared/linux/libc', () => {
  const actual = jest.requireActual('../../shared/linux/libc');
  return {
    ...actual,
    setns: (_fd: number, type: number) => (mockFake.calls.push(`setns ${type}`), next('setns')),
    unshare: (flags: number) => (mockFake.calls.push(`unshare ${flags}`), next('unshare')),
    mount: (src: string | null, target: string, _fs: string | null, flags: number) => (mockFake.calls.push(`mount ${src} ${target} ${flags}`), next('mount')),
    umount2: (target: string, flags: number) => (mockFake.calls.push(`umount2 ${target} ${flags}`), next('umount2')),
  };
});

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'netns-create-'));
  path = join(dir, 'netns', 'sb');
  mockFake.calls = [];
  mockFake.results = {};
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const SELF = '/proc/thread-self/ns/net';

test('as ip netns add: the dir made a shared mount, a file made, this thread unshared, its netns bind-mounted on the file, the thread switched back', () => {
  createNamedNetns(path);
  expect(mockFake.calls).toEqual([`mount none ${join(dir, 'netns')} ${MS_SHARED | MS_REC}`, `unshare ${CLONE_NEWNET}`, `mount ${SELF} ${path} ${MS_BIND}`, `setns ${CLONE_NEWNET}`]);
  expect(existsSync(path)).toBe(true);
});

test('a netns dir that is not a mount point yet (EINVAL) is bind-mounted onto itself first, as iproute2 does', () => {
  mockFake.results.mount = [-EINVAL];
  createNamedNetns(path);
  const d = join(dir, 'netns');
  expect(mockFake.calls.slice(0, 3)).toEqual([`mount none ${d} ${MS_SHARED | MS_REC}`, `mount ${d} ${d} ${MS_BIND | MS_REC}`, `mount none ${d} ${MS_SHARED | MS_REC}`]);
});

test('unshare refused: NetnsError with its errno, the file removed, no switch needed', () => {
  mockFake.results.unshare = [-EPERM];
  expect(() => createNamedNetns(path)).toThrow(expect.objectContaining({ name: 'NetnsError', errno: EPERM }));
  expect(mockFake.calls.some((c) => c.startsWith('setns'))).toBe(false);
  expect(existsSync(path)).toBe(false);
});

test('the bind mount fails: the thread is switched back before the error, the file removed', () => {
  mockFake.results.mount = [0, -EBUSY];
  let err: unknown;
  try {
    createNamedNetns(path);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(NetnsError);
  expect((err as NetnsError).errno).toBe(EBUSY);
  expect(mockFake.calls[mockFake.calls.length - 1]).toBe(`setns ${CLONE_NEWNET}`);
  expect(existsSync(path)).toBe(false);
});

test('the thread cannot switch back: the fatal NetnsRestoreError', () => {
  mockFake.results.setns = [-EPERM];
  expect(() => createNamedNetns(path)).toThrow(NetnsRestoreError);
});

test('an existing name is refused (EEXIST) and the file there is left alone: nothing unshared', () => {
  createNamedNetns(path);
  mockFake.calls = [];
  writeFileSync(path, 'someone else’s');
  expect(() => createNamedNetns(path)).toThrow(/EEXIST|exists/i);
  expect(mockFake.calls.some((c) => c.startsWith('unshare'))).toBe(false);
  expect(existsSync(path)).toBe(true);
});

test('deleteNamedNetns: lazy unmount then unlink; already gone (not mounted, no file) is success; another failure throws', () => {
  createNamedNetns(path);
  mockFake.calls = [];
  deleteNamedNetns(path);
  expect(mockFake.calls).toEqual([`umount2 ${path} ${MNT_DETACH}`]);
  expect(existsSync(path)).toBe(false);
  mockFake.results.umount2 = [-ENOENT];
  expect(() => deleteNamedNetns(path)).not.toThrow();
  writeFileSync(path, '');
  mockFake.results.umount2 = [-EINVAL]; // a plain file: not a mount point
  deleteNamedNetns(path);
  expect(existsSync(path)).toBe(false);
  mockFake.results.umount2 = [-EBUSY];
  expect(() => deleteNamedNetns(path)).toThrow(NetnsError);
});
