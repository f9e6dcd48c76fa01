// The on-disk store, byte-compatible with the reference's backend/disk: <dataDir>/<network>/<ip>
// files created O_EXCL 0600 holding "<containerID>\r\n<ifname>", last_reserved_ip.<set> holding the
// bare address, and a flock(2)ed `lock` file. Lookups go through the LeaseIndex instead of a walk.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../../shared/linux/libc';
import { formatIP, parseIP, type IP } from '../../shared/ip';
import { FileLock, type Flocker } from '../../shared/linux/lock';
import { LeaseIndex, writeAtomic, type Owner } from './lease-index';
import type { Lease, Store } from './store';

export const LAST_IP_PREFIX = 'last_reserved_ip.';
const LINE_BREAK = '\r\n';

const libcFlocker: Flocker = { flock, LOCK_EX, LOCK_NB, LOCK_UN };

export interface DiskStoreOptions {
  lockTimeoutMs: number;
  flocker?: Flocker; // unit tests (no bun:ffi under jest)
  bootId?: string; // tests: pretend to be another boot
  bootTimeMs?: number;
}

/** "<id>\r\n<ifname>" or, written by old versions, "<id>" alone. */
export function parseLeaseContent(text: string): { id: string; ifname: string } {
  const t = text.trim();
  const i = t.indexOf(LINE_BREAK);
  return i < 0 ? { id: t, ifname: '' } : { id: t.slice(0, i), ifname: t.slice(i + LINE_BREAK.length) };
}

export function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || '-';
  } catch {
    return '-';
  }
}

/** Wall-clock time of this boot, from /proc/stat btime. */
export function readBootTimeMs(): number {
  const m = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
  if (!m) throw new Error('no btime in /proc/stat');
  return Number(m[1]) * 1000;
}

export class DiskStore implements Store {
  readonly dir: string;
  private readonly fileLock: FileLock;
  private readonly index: LeaseIndex;
  private bootIdCache: string | undefined;
  private bootTimeCache: number | undefined;
  // An fs error in the middle of a change may leave a lease the index does not list: never seal then.
  private broken = false;

  constructor(
    network: string,
    dataDir: string,
    private readonly opts: DiskStoreOptions,
  ) {
    this.dir = join(dataDir, network);
    // Created once, up front: making it later would itself change the store directory's mtime.
    // One stat on every call but a network's first (two recursive mkdirs cost four syscalls).
    const own = join(this.dir, '.cnikit');
    if (!existsSync(own)) {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      mkdirSync(own, { recursive: true, mode: 0o700 });
    }
    this.fileLock = new FileLock(join(this.dir, 'lock'), opts.flocker ?? libcFlocker, opts.lockTimeoutMs);
    this.index = new LeaseIndex(this.dir);
  }

  lock(): void {
    this.fileLock.lock();
  }

  unlock(): void {
    if (!this.broken) this.index.seal();
    this.index.forget();
    this.fileLock.unlock();
  }

  close(): void {
    this.fileLock.close();
  }

  private bootId(): string {
    return (this.bootIdCache ??= this.opts.bootId ?? readBootId());
  }

  private leasePath(ip: string): string {
    return join(this.dir, ip);
  }

  private fresh(): LeaseIndex {
    this.index.ensureFresh(() => this.scan());
    return this.index;
  }

  /** Runs a change; if the filesystem fails half-way, the index is left unsealed (rebuilt next call). */
  private change<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      this.broken = true;
      throw e;
    }
  }

  reserve(id: string, ifname: string, ip: IP, rangeID: string): boolean {
    return this.change(() => this.reserveUnguarded(id, ifname, ip, rangeID));
  }

  private reserveUnguarded(id: string, ifname: string, ip: IP, rangeID: string): boolean {
    const name = formatIP(ip);
    const owner = { id: id.trim(), ifname, ip: name };
    const index = this.fresh();
    index.beginChange();
    let fd: number;
    try {
      fd = openSync(this.leasePath(name), 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    try {
      writeSync(fd, `${owner.id}${LINE_BREAK}${ifname}`);
      closeSync(fd);
    } catch (e) {
      rmSync(this.leasePath(name), { force: true });
      throw e;
    }
    // The reference rewrites this in place; a rename gives the same bytes without a torn file.
    writeAtomic(join(this.dir, LAST_IP_PREFIX + rangeID), name, 0o600);
    index.add(owner, this.bootId());
    return true;
  }

  lastReservedIP(rangeID: string): IP | null {
    try {
      return parseIP(readFileSync(join(this.dir, LAST_IP_PREFIX + rangeID), 'utf8'));
    } catch {
      return null;
    }
  }

  /** The owner written in a lease file, or null when the file is gone. */
  private ownerOf(ip: string): { id: string; ifname: string } | null {
    try {
      return parseLeaseContent(readFileSync(this.leasePath(ip), 'utf8'));
    } catch {
      return null;
    }
  }

  /** Index entries of (id, ifname) whose lease files still say so. */
  private held(id: string, ifname: string): string[] {
    return this.fresh()
      .entries(id, ifname)
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

  /** The reference's ReleaseByID: the (id, ifname) leases, or when there are none the ID-only ones. */
  releaseByID(id: string, ifname: string): void {
    this.change(() => this.releaseByIDUnguarded(id, ifname));
  }

  private releaseByIDUnguarded(id: string, ifname: string): void {
    const t = id.trim();
    let ips = this.held(t, ifname);
    let owner = ifname;
    if (ips.length === 0) {
      ips = this.held(t, '');
      owner = '';
    }
    for (const ip of ips) this.unlinkLease({ id: t, ifname: owner, ip });
    // Whatever the key file still lists is stale (the lease was released or re-owned elsewhere).
    if (this.index.entries(t, owner).length) this.index.set(t, owner, []);
  }

  private unlinkLease(o: Owner): void {
    this.index.beginChange();
    rmSync(this.leasePath(o.ip), { force: true });
    this.index.remove(o);
  }

  release(ip: IP): void {
    const name = formatIP(ip);
    const owner = this.ownerOf(name);
    if (!owner) return;
    this.fresh();
    this.change(() => this.unlinkLease({ ...owner, ip: name }));
  }

  leaseAt(ip: IP): Lease | null {
    const o = this.ownerOf(formatIP(ip));
    return o ? { ip, ...o } : null;
  }

  /** One readdir and one read per lease: the source of truth (rebuild, GC, STATUS). */
  private scan(): Owner[] {
    const out: Owner[] = [];
    for (const name of readdirSync(this.dir)) {
      if (name === 'lock' || name.startsWith('.') || name.startsWith(LAST_IP_PREFIX) || !parseIP(name)) continue;
      const o = this.ownerOf(name);
      if (o) out.push({ ...o, ip: name });
    }
    return out;
  }

  leases(): Lease[] {
    return this.scan().map((o) => ({ ip: parseIP(o.ip)!, id: o.id, ifname: o.ifname }));
  }

  /** plugins#252: made before this boot (mtime < btime), and not recorded by us as made in this boot. */
  isStale(lease: Lease): boolean {
    const name = formatIP(lease.ip);
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.leasePath(name)).mtimeMs;
    } catch {
      return false;
    }
    const boot = (this.bootTimeCache ??= this.opts.bootTimeMs ?? readBootTimeMs());
    if (mtimeMs >= boot) return false;
    const rec = this.fresh().entries(lease.id, lease.ifname).find((e) => e.ip === name);
    return !(rec && rec.bootId === this.bootId());
  }

  /** For STATUS: can we create a file in the store? */
  writable(): boolean {
    // Inside .cnikit: a probe in the store directory itself would change its mtime (index rebuild).
    const probe = join(this.dir, '.cnikit', 'probe');
    try {
      writeAtomic(probe, '', 0o600);
      rmSync(probe, { force: true });
      return true;
    } catch {
      return false;
    }
  }

  /** Addresses leased now, with the index left alone (STATUS). */
  leasedAddresses(): IP[] {
    return readdirSync(this.dir)
      .filter((n) => n !== 'lock' && !n.startsWith('.') && !n.startsWith(LAST_IP_PREFIX))
      .map((n) => parseIP(n))
      .filter((x): x is IP => x !== null);
  }
}
