// The on-disk store: the reference's bytes and modes, its release rules (legacy ID-only files), and
// the lease index (rebuilt when the reference or anyone changes the store behind its back, entries
// checked against the lease files, a kill between changes leaves "rebuild next time").
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskStore, parseLeaseContent } from '../../ipam/host-local/disk-store';
import type { Flocker } from '../../shared/linux/lock';
import { formatIP, parseIP } from '../../shared/ip';
import { writeReferenceStore } from '../support/host-local-leases';

const noLock: Flocker = { flock: () => 0, LOCK_EX: 2, LOCK_NB: 4, LOCK_UN: 8 };
const ip = (s: string) => parseIP(s)!;

let dataDir: string;
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'hl-store-'));
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

function open(extra: Partial<ConstructorParameters<typeof DiskStore>[2]> = {}): DiskStore {
  const s = new DiskStore('net', dataDir, { lockTimeoutMs: 100, flocker: noLock, ...extra });
  s.lock();
  return s;
}
const done = (s: DiskStore) => {
  s.unlock();
  s.close();
};
const mode = (p: string) => statSync(p).mode & 0o777;

test("reserve writes the reference's bytes: <id>\\r\\n<ifname>, no newline, 0600; last_reserved_ip bare", () => {
  const s = open();
  expect(s.reserve(' c1 ', 'eth0', ip('198.18.0.2'), '0')).toBe(true);
  expect(s.reserve('c2', 'eth0', ip('fd00::2'), '1')).toBe(true);
  expect(s.reserve('c3', 'eth0', ip('198.18.0.2'), '0')).toBe(false); // O_EXCL: taken
  done(s);
  const dir = join(dataDir, 'net');
  expect(readFileSync(join(dir, '198.18.0.2'), 'utf8')).toBe('c1\r\neth0');
  expect(readFileSync(join(dir, 'fd00::2'), 'utf8')).toBe('c2\r\neth0');
  expect(readFileSync(join(dir, 'last_reserved_ip.0'), 'utf8')).toBe('198.18.0.2');
  expect(readFileSync(join(dir, 'last_reserved_ip.1'), 'utf8')).toBe('fd00::2');
  expect(mode(join(dir, '198.18.0.2'))).toBe(0o600);
  expect(mode(join(dir, 'last_reserved_ip.0'))).toBe(0o600);
  expect(mode(join(dir, 'lock'))).toBe(0o750);
  expect(mode(dir)).toBe(0o755);
  expect(mode(join(dir, '.cnikit'))).toBe(0o700);
  // No temp file left over in the store directory.
  expect(readdirSync(dir).sort()).toEqual(['.cnikit', '198.18.0.2', 'fd00::2', 'last_reserved_ip.0', 'last_reserved_ip.1', 'lock']);
});

test('parseLeaseContent: current and legacy formats', () => {
  expect(parseLeaseContent('abc\r\neth0')).toEqual({ id: 'abc', ifname: 'eth0' });
  expect(parseLeaseContent('abc\n')).toEqual({ id: 'abc', ifname: '' });
});

test('releaseByID: the (id, ifname) leases; legacy ID-only files only when none match', () => {
  const dir = join(dataDir, 'net');
  let s = open();
  s.reserve('c1', 'eth0', ip('198.18.0.2'), '0');
  s.reserve('c1', 'eth1', ip('198.18.0.3'), '0');
  done(s);
  writeFileSync(join(dir, '198.18.0.4'), 'c1', { mode: 0o600 }); // legacy, written behind our back
  s = open();
  expect(s.getByID('c1', 'eth0').map(formatIP).sort()).toEqual(['198.18.0.2', '198.18.0.4']);
  s.releaseByID('c1', 'eth0');
  expect(existsSync(join(dir, '198.18.0.2'))).toBe(false);
  expect(existsSync(join(dir, '198.18.0.3'))).toBe(true); // other interface kept
  expect(existsSync(join(dir, '198.18.0.4'))).toBe(true); // a keyed lease was found: legacy untouched
  s.releaseByID('c1', 'eth0'); // second pass (second range set in the reference's DEL loop)
  expect(existsSync(join(dir, '198.18.0.4'))).toBe(false);
  s.releaseByID('nobody', 'eth0'); // nothing found: fine
  done(s);
});

test('index: rebuilt when leases are added or removed behind its back (the reference plugin)', () => {
  const dir = join(dataDir, 'net');
  let s = open();
  s.reserve('c1', 'eth0', ip('198.18.0.2'), '0');
  done(s);
  // The reference adds one lease and removes ours.
  writeFileSync(join(dir, '198.18.0.9'), 'ref\r\neth0', { mode: 0o600 });
  unlinkSync(join(dir, '198.18.0.2'));
  s = open();
  expect(s.getByID('ref', 'eth0').map(formatIP)).toEqual(['198.18.0.9']);
  expect(s.getByID('c1', 'eth0')).toEqual([]);
  done(s);
  expect(readdirSync(join(dir, '.cnikit', 'by-key')).sort()).toEqual(['ref+eth0']);
});

test('index entries are checked against the lease file before they are trusted', () => {
  const dir = join(dataDir, 'net');
  let s = open();
  s.reserve('c1', 'eth0', ip('198.18.0.2'), '0');
  done(s);
  // Same name, new owner, directory mtime restored: the index alone would still say c1.
  const before = statSync(dir);
  writeFileSync(join(dir, '198.18.0.2'), 'other\r\neth0');
  utimesSync(dir, before.atime, before.mtime);
  s = open();
  expect(s.getByID('c1', 'eth0')).toEqual([]);
  s.releaseByID('c1', 'eth0');
  expect(readFileSync(join(dir, '198.18.0.2'), 'utf8')).toBe('other\r\neth0'); // not someone else's lease
  done(s);
});

test('a kill between changes (no sealed state) means the next call rebuilds from the lease files', () => {
  const dir = join(dataDir, 'net');
  const s = open();
  s.reserve('c1', 'eth0', ip('198.18.0.2'), '0');
  s.close(); // "killed": never unlocked/sealed
  rmSync(join(dir, '.cnikit', 'by-key'), { recursive: true }); // and the key file never got written
  expect(existsSync(join(dir, '.cnikit', 'state'))).toBe(false);
  const s2 = open();
  expect(s2.getByID('c1', 'eth0').map(formatIP)).toEqual(['198.18.0.2']);
  done(s2);
});

test('a filesystem error half-way through ADD removes the new lease and leaves the index unsealed (rebuilt next call)', () => {
  const dir = join(dataDir, 'net');
  const s = open();
  require('node:fs').mkdirSync(join(dir, 'last_reserved_ip.0')); // the rename over it will fail
  expect(() => s.reserve('c1', 'eth0', ip('198.18.0.2'), '0')).toThrow(`${dir}/last_reserved_ip.0: cannot replace: EISDIR`);
  expect(existsSync(join(dir, '198.18.0.2'))).toBe(false);
  done(s);
  expect(existsSync(join(dir, '.cnikit', 'state'))).toBe(false);
  expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  const s2 = open();
  expect(s2.getByID('c1', 'eth0')).toEqual([]);
  done(s2);
});

test('a reference-format store of 2,000 leases is indexed once, then looked up without a walk', () => {
  const g = writeReferenceStore(dataDir, 'net', '198.18.0.0', 2000);
  let s = open();
  expect(s.getByID(g.ids[1234]!, 'eth0').map(formatIP)).toEqual([g.ips[1234]]);
  done(s);
  expect(readdirSync(join(dataDir, 'net', '.cnikit', 'by-key'))).toHaveLength(2000);
  s = open();
  s.releaseByID(g.ids[7]!, 'eth0');
  expect(existsSync(join(g.dir, g.ips[7]!))).toBe(false);
  done(s);
  expect(readdirSync(join(dataDir, 'net', '.cnikit', 'by-key'))).toHaveLength(1999);
});

test('isStale: only a lease our index recorded in another boot; unknown boot (reference, lost index) never; clocks never', () => {
  const dir = join(dataDir, 'net');
  let s = open({ bootId: 'boot-a' });
  s.reserve('earlier', 'eth0', ip('198.18.0.2'), '0');
  s.reserve('ours', 'eth0', ip('198.18.0.4'), '0');
  done(s);
  s = open({ bootId: 'boot-b' });
  s.reserve('now', 'eth0', ip('198.18.0.5'), '0');
  writeFileSync(join(dir, '198.18.0.3'), 'reference\r\neth0', { mode: 0o600 }); // no index record
  const past = new Date(Date.now() - 10 * 365 * 86400_000); // mtimes say nothing: the clock can step
  for (const a of ['198.18.0.3', '198.18.0.5']) utimesSync(join(dir, a), past, past);
  const stale = (st: DiskStore) => Object.fromEntries(st.leases().map((l) => [formatIP(l.ip), st.isStale(l)]));
  expect(stale(s)).toEqual({ '198.18.0.2': true, '198.18.0.3': false, '198.18.0.4': true, '198.18.0.5': false });
  done(s);
  rmSync(join(dir, '.cnikit'), { recursive: true }); // index lost: every boot is unknown
  s = open({ bootId: 'boot-c' });
  expect(Object.values(stale(s))).toEqual([false, false, false, false]);
  done(s);
});

test('writable() probes without touching the store directory', () => {
  const s = open();
  const m = statSync(s.dir).mtimeMs;
  expect(s.writable()).toBe(true);
  expect(statSync(s.dir).mtimeMs).toBe(m);
  done(s);
});

test('a lease whose owner is not a valid container ID / interface name blocks its address but never names an index file', () => {
  const dir = join(dataDir, 'net');
  let s = open();
  s.reserve('c1', 'eth0', ip('198.18.0.2'), '0');
  done(s);
  for (const [a, text] of [['198.18.0.3', '..\r\n/../../../../etc/x'], ['198.18.0.4', 'ok\r\neth0/../x'], ['198.18.0.5', '-lead\r\neth0'], ['198.18.0.6', 'c\r\n..']])
    writeFileSync(join(dir, a), text, { mode: 0o600 });
  s = open();
  expect(s.reserve('c2', 'eth0', ip('198.18.0.3'), '0')).toBe(false);
  expect(s.getByID('c1', 'eth0').map(formatIP)).toEqual(['198.18.0.2']);
  expect(s.leases().map((l) => formatIP(l.ip)).sort()).toEqual(['198.18.0.2', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6']);
  s.release(ip('198.18.0.3')); // GC's way: the lease file goes, nothing else
  done(s);
  expect(existsSync(join(dir, '198.18.0.3'))).toBe(false);
  expect(readdirSync(join(dir, '.cnikit', 'by-key'))).toEqual(['c1+eth0']);
});

test('index files replaced by a FIFO or a symlink are treated as garbled (rebuilt), never read through or blocked on', () => {
  const dir = join(dataDir, 'net');
  let s = open();
  s.reserve('c1', 'eth0', ip('198.18.0.2'), '0');
  done(s);
  const own = join(dir, '.cnikit');
  rmSync(join(own, 'by-key', 'c1+eth0'));
  require('node:child_process').execFileSync('mkfifo', [join(own, 'by-key', 'c1+eth0')]);
  rmSync(join(own, 'state'));
  symlinkSync('/etc/hostname', join(own, 'state'));
  s = open();
  expect(s.getByID('c1', 'eth0').map(formatIP)).toEqual(['198.18.0.2']);
  done(s);
  expect(lstatSync(join(own, 'state')).isFile()).toBe(true);
  expect(lstatSync(join(own, 'by-key', 'c1+eth0')).isFile()).toBe(true);
});

test('boot IDs recorded by the previous index format (v1 key files) are kept across the upgrade', () => {
  const dir = join(dataDir, 'net');
  mkdirSync(join(dir, '.cnikit', 'by-key'), { recursive: true });
  writeFileSync(join(dir, '198.18.0.2'), 'c1\r\neth0', { mode: 0o600 });
  writeFileSync(join(dir, '.cnikit', 'by-key', 'c1+eth0'), 'cnikit-lease-index v1\n198.18.0.2 boot-old\n');
  writeFileSync(join(dir, '.cnikit', 'state'), 'cnikit-index v1 1 2 3\n'); // written last, as v1 did
  const s = open({ bootId: 'boot-new' });
  expect(s.leases().map((l) => s.isStale(l))).toEqual([true]);
  done(s);
});
