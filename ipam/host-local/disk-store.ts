// The on-disk store, byte-compatible with the reference's backend/disk: <dataDir>/<network>/<ip>
// files created O_EXCL 0600 holding "<containerID>\r\n<ifname>", last_reserved_ip.<set> holding the
// bare address, and a flock(2)ed `lock` file. Lookups go through the LeaseIndex instead of a walk.
//
// Whoever can write into the store directory must not make us touch anything outside it (issue 10):
// the directory is opened once without following symlinks and every entry is reached through that
// fd with O_NOFOLLOW/O_EXCL (shared/linux/files.ts); owners read from lease files are validated
// like CNI_CONTAINERID/CNI_IFNAME before they name an index file; a lease file that is not a small
// regular file, or whose owner is not valid, still blocks its address but is never indexed.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrIOFailure, errorMessage } from '../../shared/cni/errors';
import { validateContainerID, validateIfName } from '../../shared/cni/skel';
import { formatIP, parseIP, type IP } from '../../shared/ip';
import { FileError, PinnedDir } from '../../shared/linux/files';
import { FileLock, type Flocker } from '../../shared/linux/lock';
import { LeaseIndex, UNKNOWN_BOOT, type Owner } from './lease-index';
import type { Lease, Store } from './store';

export const LAST_IP_PREFIX = 'last_reserved_ip.';
const LINE_BREAK = '\r\n';
const MAX_LEASE_FILE = 4096; // "<id>\r\n<ifname>": an ID of a few hundred bytes at most
const MAX_LAST_IP_FILE = 64;

export interface DiskStoreOptions {
  lockTimeoutMs: number;
  flocker?: Flocker; // unit tests (no bun:ffi under jest)
  bootId?: string; // tests: pretend to be another boot
}

/** "<id>\r\n<ifname>" or, written by old versions, "<id>" alone. */
export function parseLeaseContent(text: string): { id: string; ifname: string } {
  const t = text.trim();
  const i = t.indexOf(LINE_BREAK);
  return i < 0 ? { id: t, ifname: '' } : { id: t.slice(0, i), ifname: t.slice(i + LINE_BREAK.length) };
}

/**
 * True when a lease file's owner may name an index file: the ID passes the CNI_CONTAINERID rule and
 * the interface name the CNI_IFNAME rule, or is '' (legacy ID-only lease). Lease contents are
 * anyone's who can write the store, so they are checked like environment input.
 */
export function isValidOwner(id: string, ifname: string): boolean {
  try {
    validateContainerID(id);
    if (ifname !== '') validateIfName(ifname);
    return true;
  } catch {
    return false;
  }
}

/** This boot's ID (/proc/sys/kernel/random/boot_id); UNKNOWN_BOOT when it cannot be read. */
export function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || UNKNOWN_BOOT;
  } catch {
    return UNKNOWN_BOOT;
  }
}

/** A store I/O failure as a CNI error (code 5) naming the file and the errno. */
function ioError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  return new CniError(ErrIOFailure, e instanceof FileError ? e.message : `host-local store: ${errorMessage(e)}`);
}

/** A lease file as scanned: its owner, and whether that owner may be used as a key. */
interface ScannedLease extends Owner {
  valid: boolean;
}

export class DiskStore implements Store {
  readonly dir: string;
  private readonly store: PinnedDir;
  private fileLock: FileLock | null = null;
  private index: LeaseIndex | null | undefined; // undefined: not opened yet; null: unavailable
  private bootIdCache: string | undefined;
  // An fs error in the middle of a change may leave a lease the index does not list: never seal then.
  private broken = false;

  /** Opens (creating with mode 0755) <dataDir>/<network>; throws FileError when that is not a directory. */
  constructor(
    network: string,
    dataDir: string,
    private readonly opts: DiskStoreOptions,
  ) {
    this.dir = join(dataDir, network);
    let store: PinnedDir;
    try {
      // The store directory itself is not followed if it is a symlink; dataDir (the admin's) is.
      store = PinnedDir.open(this.dir, { create: 0o755 });
    } catch (e) {
      if ((e as FileError).code !== 'ENOENT') throw e;
      mkdirSync(dataDir, { recursive: true, mode: 0o755 });
      store = PinnedDir.open(this.dir, { create: 0o755 });
    }
    this.store = store;
    // Made up front (one lstat on every later call): making it later, e.g. in STATUS's probe,
    // would itself change the store directory's mtime and force an index rebuild.
    if (!store.lstat('.cnikit'))
      try {
        mkdirSync(store.at('.cnikit'), 0o700);
      } catch {
        /* raced, or not writable: LeaseIndex.open decides */
      }
  }

  lock(): void {
    try {
      // Opened in the pinned store directory, never through a planted symlink.
      this.fileLock ??= FileLock.inDir(this.store, 'lock', 0o750, this.opts.lockTimeoutMs, 'another host-local call holds it; try again later (ipam.lockTimeoutMs)', this.opts.flocker);
      this.fileLock.lock();
    } catch (e) {
      if (e instanceof CniError) throw e;
      throw ioError(e);
    }
  }

  unlock(): void {
    if (this.index) {
      if (!this.broken) this.index.seal();
      this.index.forget();
    }
    this.fileLock?.unlock();
  }

  close(): void {
    this.fileLock?.close();
    this.fileLock = null;
    this.index?.close();
    this.index = undefined;
    this.store.close();
  }

  /** Runs fn with this store locked, then unlocks and closes it on every path (the index is sealed). Returns fn's value. */
  lockedThenClosed<T>(fn: (s: DiskStore) => T): T {
    try {
      this.lock();
      try {
        return fn(this);
      } finally {
        this.unlock();
      }
    } finally {
      this.close();
    }
  }

  private bootId(): string {
    return (this.bootIdCache ??= this.opts.bootId ?? readBootId());
  }

  /** The index for this lock session, made trustworthy first; null when it is unavailable. */
  private fresh(): LeaseIndex | null {
    if (this.index === undefined) this.index = LeaseIndex.open(this.store, () => this.stamp());
    if (!this.index) return null;
    this.index.ensureFresh(() => this.scan().filter((o) => o.valid));
    return this.index.ok ? this.index : null;
  }

  /** What .cnikit/state must say for the index to be reused: this directory as it is, in this boot. */
  private stamp(): string {
    const st = this.store.stat();
    return `${st.dev} ${st.ino} ${st.mtimeNs} ${this.bootId()}`;
  }

  /** Runs a change; if the filesystem fails half-way, the index is left unsealed (rebuilt next call). */
  private change<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      this.broken = true;
      throw ioError(e);
    }
  }

  reserve(id: string, ifname: string, ip: IP, rangeID: string): boolean {
    return this.change(() => {
      const name = formatIP(ip);
      const owner = { id: id.trim(), ifname, ip: name };
      const index = this.fresh();
      index?.beginChange();
      // fsync'd: on a full disk the write or the fsync fails here (and the file is removed), not later.
      if (!this.store.createExclusive(name, `${owner.id}${LINE_BREAK}${ifname}`, { mode: 0o600 })) return false;
      try {
        // The reference rewrites this in place; a rename gives the same bytes without a torn file.
        // Only a hint where to start (unreadable = start of the range): not fsync'd itself, but the
        // directory fsync makes the new lease's name durable before ADD reports it.
        this.store.writeAtomic(LAST_IP_PREFIX + rangeID, name, { mode: 0o600, durable: false });
        this.store.sync();
      } catch (e) {
        this.store.unlink(name); // a failed ADD leaves nothing
        throw e;
      }
      index?.add(owner, this.bootId()); // best effort: without it the lease's boot is unknown
      return true;
    });
  }

  lastReservedIP(rangeID: string): IP | null {
    try {
      const b = this.store.read(LAST_IP_PREFIX + rangeID, MAX_LAST_IP_FILE);
      return b ? parseIP(b.toString('utf8')) : null;
    } catch {
      return null; // not a small regular file: only a hint for where to start
    }
  }

  /**
   * The owner written in a lease file; null when there is no lease file, or the name is not a small
   * regular file (a planted symlink or FIFO: it blocks the address, we never read through it).
   */
  private ownerOf(ip: string): ScannedLease | null {
    let b: Buffer | null;
    try {
      b = this.store.read(ip, MAX_LEASE_FILE);
    } catch (e) {
      if (e instanceof FileError && (e.code === 'ENOTREG' || e.code === 'ELOOP' || e.code === 'EFBIG')) return null;
      throw e;
    }
    if (!b) return null;
    const o = parseLeaseContent(b.toString('utf8'));
    return { ...o, ip, valid: isValidOwner(o.id, o.ifname) };
  }

  /** Leases of (id, ifname) (validated by the caller): the index's entries whose lease files still say so, else a walk. */
  private held(id: string, ifname: string): string[] {
    const entries = this.fresh()?.entries(id, ifname);
    if (!entries) return this.scan().filter((o) => o.id === id && o.ifname === ifname).map((o) => o.ip);
    return entries
      .map((e) => e.ip)
      .filter((ip) => {
        const o = this.ownerOf(ip);
        return o !== null && o.id === id && o.ifname === ifname;
      });
  }

  getByID(id: string, ifname: string): IP[] {
    const t = id.trim();
    return [...this.held(t, ifname), ...this.held(t, '')].map((s) => parseIP(s)).filter((x): x is IP => x !== null);
  }

  /**
   * The reference's ReleaseByID: the (id, ifname) leases, or when there are none the ID-only ones.
   * Needs no free space: lease files are unlinked; index updates that fail are left to a rebuild.
   */
  releaseByID(id: string, ifname: string): void {
    this.change(() => {
      const t = id.trim();
      let ips = this.held(t, ifname);
      let owner = ifname;
      if (ips.length === 0) {
        ips = this.held(t, '');
        owner = '';
      }
      for (const ip of ips) this.unlinkLease({ id: t, ifname: owner, ip });
      // Whatever the key file still lists is stale (the lease was released or re-owned elsewhere).
      const index = this.fresh();
      if (index?.entries(t, owner)?.length) index.set(t, owner, []);
    });
  }

  private unlinkLease(o: Owner, valid = true): void {
    const index = this.fresh();
    index?.beginChange();
    this.store.unlink(o.ip);
    if (valid) index?.remove(o);
  }

  release(ip: IP): void {
    const name = formatIP(ip);
    this.change(() => {
      const owner = this.ownerOf(name);
      if (owner) this.unlinkLease(owner, owner.valid);
    });
  }

  leaseAt(ip: IP): Lease | null {
    const o = this.ownerOf(formatIP(ip));
    return o ? { ip, id: o.id, ifname: o.ifname } : null;
  }

  /** One readdir and one read per lease: the source of truth (rebuild, GC, STATUS). */
  private scan(): ScannedLease[] {
    const out: ScannedLease[] = [];
    for (const name of this.store.list()) {
      if (name === 'lock' || name.startsWith('.') || name.startsWith(LAST_IP_PREFIX) || !parseIP(name)) continue;
      const o = this.ownerOf(name);
      if (o) out.push(o);
    }
    return out;
  }

  /** Every lease file, whatever its owner says (GC releases those whose owner is not valid). */
  leases(): Lease[] {
    return this.scan().map((o) => ({ ip: parseIP(o.ip)!, id: o.id, ifname: o.ifname }));
  }

  /**
   * plugins#252, issue 10: stale only when our index recorded the lease as made in another boot.
   * No record (the reference wrote it, the index was lost or rebuilt) means an unknown boot: never
   * stale. Wall-clock times (mtime vs btime) are not evidence: the clock can step.
   */
  isStale(lease: Lease): boolean {
    const name = formatIP(lease.ip);
    if (!isValidOwner(lease.id, lease.ifname)) return false;
    const rec = this.fresh()
      ?.entries(lease.id, lease.ifname)
      ?.find((e) => e.ip === name);
    if (!rec || rec.bootId === UNKNOWN_BOOT || this.bootId() === UNKNOWN_BOOT) return false;
    if (rec.bootId === this.bootId()) return false;
    const now = this.ownerOf(name); // and the lease file still says the same owner
    return now !== null && now.id === lease.id && now.ifname === lease.ifname;
  }

  /** For STATUS: can we create a file in the store? */
  writable(): boolean {
    // Inside .cnikit: a probe in the store directory itself would change its mtime (index rebuild).
    let own: PinnedDir | undefined;
    try {
      own = this.store.subdir('.cnikit', { create: 0o700, replace: true });
      own.writeAtomic('probe', '', { durable: false });
      own.unlink('probe');
      return true;
    } catch {
      return false;
    } finally {
      own?.close();
    }
  }

  /** Addresses leased now, with the index left alone (STATUS). */
  leasedAddresses(): IP[] {
    return this.store
      .list()
      .filter((n) => n !== 'lock' && !n.startsWith('.') && !n.startsWith(LAST_IP_PREFIX))
      .map((n) => parseIP(n))
      .filter((x): x is IP => x !== null);
  }
}
