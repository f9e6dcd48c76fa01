// The O(1) lookup index beside the reference's store: one small file per attachment
// (.cnikit/by-key/<containerID>+<ifname>) listing its addresses and the boot each lease was made in,
// so ADD's duplicate check and DEL read one file instead of walking every lease (the reference's
// O(N) walk; plugins#561), and stale-lease reclaim knows which leases are from an earlier boot.
//
// The per-IP lease files are the truth; the index is a cache that is never trusted blindly:
// - .cnikit/state records the store directory's identity and mtime and the boot ID when the index
//   was last known complete. Anything that adds or removes a lease behind our back (the reference,
//   an admin, tmpfiles at boot) changes that mtime, a reboot changes the boot ID, and the next call
//   rebuilds the index from the lease files;
// - a key file changed after the state was written (ctime newer; e.g. emptied or edited), a by-key
//   directory changed after it, or a key file that does not parse, also means "rebuild";
// - we delete the state before our own first change under the lock and write it back last, so a
//   kill -9 at any point also leaves "rebuild next time";
// - every address an entry names is still checked against its lease file before use;
// - when the index cannot be opened or written (full disk, read-only, garbage where .cnikit should
//   be that cannot be removed), it steps aside and callers read the lease files (DEL needs no space).
// Index files are written atomically but not fsync'd: after a crash the boot ID differs and the
// index is rebuilt anyway; a lost boot record only makes a lease "unknown boot", never reclaimed.
// Limitation: on kernels without multigrain timestamps (< 6.13), a change within the same clock tick
// as our last write can go unseen; the lease files still decide every allocation, and GC (which
// reads the lease files) releases anything the index missed.
import { sha256Hex } from '../../shared/crypto';
import { FileError, isSafeName, type PinnedDir } from '../../shared/linux/files';

const STATE_MAGIC = 'cnikit-index v2'; // v2: the stamp ends with the boot ID
const KEY_MAGIC = 'cnikit-lease-index v1';
const MAX_KEY_FILE = 64 * 1024; // one attachment holds a handful of addresses
/** Marks a lease whose boot we do not know (rebuilt from a lease file): never reclaimed. */
export const UNKNOWN_BOOT = '-';
const BOOT_ID_RE = /^[0-9A-Za-z-]{1,64}$/; // a UUID in practice

export interface IndexEntry {
  ip: string; // lease file name
  bootId: string; // boot the lease was made in (/proc/sys/kernel/random/boot_id); UNKNOWN_BOOT when unknown
}

/** A lease file's name and the owner written in it (already validated like CNI_CONTAINERID/CNI_IFNAME). */
export interface Owner {
  id: string;
  ifname: string; // '' for legacy ID-only leases
  ip: string;
}

/**
 * Key file name. The caller passes a validated container ID (no '+', '/', never starting with '.')
 * and interface name, so the first '+' splits them and the name is one safe path component.
 */
export function keyName(id: string, ifname: string): string {
  const k = `${id}+${ifname}`;
  return k.length <= 200 ? k : `h-${sha256Hex(k)}`;
}

const encode = (entries: IndexEntry[]): string => `${KEY_MAGIC}\n${entries.map((e) => `${e.ip} ${e.bootId}\n`).join('')}`;

/** A key file's entries, or null when it is not one we wrote (empty, garbled, wrong version). */
function decode(text: string): IndexEntry[] | null {
  const lines = text.split('\n');
  if (lines[0] !== KEY_MAGIC || lines.length < 3 || lines[lines.length - 1] !== '') return null;
  const out: IndexEntry[] = [];
  for (const l of lines.slice(1, -1)) {
    const [ip, bootId, extra] = l.split(' ');
    if (!ip || !isSafeName(ip) || ip.startsWith('.') || !bootId || extra !== undefined) return null;
    if (bootId !== UNKNOWN_BOOT && !BOOT_ID_RE.test(bootId)) return null;
    out.push({ ip, bootId });
  }
  return out;
}

class Corrupt extends Error {}

export class LeaseIndex {
  private fresh = false;
  private dirty = false;
  private usable = true;
  // ctime of the state file we found valid: key files changed after it are not ours.
  private sealedAt: bigint | null = null;
  // Every key file's entries after a rebuild; the ones read or written otherwise in this lock session.
  private readonly cache = new Map<string, IndexEntry[]>();
  private complete = false;
  private scan: (() => Owner[]) | null = null;

  private constructor(
    private readonly own: PinnedDir, // <store>/.cnikit
    private readonly keys: PinnedDir, // <store>/.cnikit/by-key
    private readonly stamp: () => string, // the store directory's identity, mtime and the boot ID
  ) {}

  /**
   * Opens <store>/.cnikit (0700) and its by-key directory, creating them, and replacing whatever
   * non-directory is planted at either name (a regular file, a symlink: only the link is removed).
   * Null when that is not possible (full disk, read-only store): callers then use the lease files.
   */
  static open(store: PinnedDir, stamp: () => string): LeaseIndex | null {
    let own: PinnedDir | undefined;
    try {
      own = store.subdir('.cnikit', { create: 0o700, replace: true });
      return new LeaseIndex(own, own.subdir('by-key', { create: 0o700, replace: true }), stamp);
    } catch {
      own?.close();
      return null;
    }
  }

  close(): void {
    this.keys.close();
    this.own.close();
  }

  /** False once a read or write failed: callers must read the lease files instead. */
  get ok(): boolean {
    return this.usable;
  }

  /** Makes the index trustworthy for this lock session: reuses it when nothing changed, else rebuilds. */
  ensureFresh(scan: () => Owner[]): void {
    this.scan = scan;
    if (this.fresh || !this.usable) return;
    this.guard(() => {
      if (!this.stateMatches()) this.rebuild(scan());
    });
    this.fresh = true;
  }

  /** Drops the view of this lock session (call when the lock is released). */
  forget(): void {
    this.fresh = false;
    this.complete = false;
    this.sealedAt = null;
    this.cache.clear();
  }

  /** Runs an index operation; any failure takes the index out of use for this call (state removed). */
  private guard(fn: () => void): void {
    if (!this.usable) return;
    try {
      fn();
    } catch {
      this.usable = false;
      try {
        this.own.unlink('state'); // needs no space; next call rebuilds
      } catch {
        /* nothing more we can do: the lease files still decide */
      }
    }
  }

  /** The recorded leases of (id, ifname), or null when the index cannot answer (use the lease files). */
  entries(id: string, ifname: string): IndexEntry[] | null {
    let out: IndexEntry[] | null = null;
    this.guard(() => {
      try {
        out = this.lookup(keyName(id, ifname));
      } catch (e) {
        if (!(e instanceof Corrupt) || !this.scan) throw e;
        this.rebuild(this.scan()); // a key file we did not write: the lease files decide
        out = this.lookup(keyName(id, ifname));
      }
    });
    return out === null ? null : [...(out as IndexEntry[])];
  }

  private lookup(name: string): IndexEntry[] {
    const hit = this.cache.get(name);
    if (hit || this.complete) return hit ?? [];
    const f = this.readOurs(this.keys, name, MAX_KEY_FILE);
    let e: IndexEntry[] | null = [];
    if (f === 'bad') throw new Corrupt(name);
    if (f) {
      if (this.sealedAt !== null && f.stat.ctimeNs > this.sealedAt) throw new Corrupt(name);
      e = decode(f.data.toString('utf8'));
      if (!e) throw new Corrupt(name);
    }
    this.cache.set(name, e);
    return e;
  }

  /** Before the first change under the lock: no state means "rebuild" if we die half-way. Throws if it cannot. */
  beginChange(): void {
    if (this.dirty || !this.usable) return;
    this.own.unlink('state');
    this.dirty = true;
  }

  set(id: string, ifname: string, entries: IndexEntry[]): void {
    this.guard(() => {
      this.beginChange();
      const name = keyName(id, ifname);
      this.cache.delete(name); // re-read if the write below fails half-way
      if (entries.length === 0) this.keys.unlink(name);
      else this.keys.writeAtomic(name, encode(entries), { durable: false });
      this.cache.set(name, [...entries]);
    });
  }

  add(o: Owner, bootId: string): void {
    const cur = this.entries(o.id, o.ifname);
    if (cur) this.set(o.id, o.ifname, [...cur.filter((e) => e.ip !== o.ip), { ip: o.ip, bootId }]);
  }

  remove(o: Owner): void {
    const cur = this.entries(o.id, o.ifname);
    if (!cur) return;
    const next = cur.filter((e) => e.ip !== o.ip);
    if (next.length !== cur.length) this.set(o.id, o.ifname, next);
  }

  /** After the last change under the lock: the index is complete for the directory as it is now. */
  seal(): void {
    if (!this.dirty) return;
    this.guard(() => this.own.writeAtomic('state', `${STATE_MAGIC} ${this.stamp()}\n`, { durable: false }));
    this.dirty = false;
  }

  /**
   * One of our small files: null when missing, 'bad' when something else is planted there (a FIFO,
   * a symlink, a huge file): treated like a garbled file. Other errors (EIO, EACCES) are thrown.
   */
  private readOurs(dir: PinnedDir, name: string, max: number): { data: Buffer; stat: { ctimeNs: bigint } } | null | 'bad' {
    try {
      return dir.readWithStat(name, max);
    } catch (e) {
      if (e instanceof FileError && ['ENOTREG', 'ELOOP', 'EFBIG'].includes(e.code)) return 'bad';
      throw e;
    }
  }

  private readState(): { data: Buffer; stat: { ctimeNs: bigint } } | null {
    const f = this.readOurs(this.own, 'state', 4096);
    return f === 'bad' ? null : f;
  }

  private stateMatches(): boolean {
    const f = this.readState();
    if (!f || f.data.toString('utf8') !== `${STATE_MAGIC} ${this.stamp()}\n`) return false;
    // A key file added or removed after the state was written: not by us.
    if (this.keys.stat().ctimeNs > f.stat.ctimeNs) return false;
    this.sealedAt = f.stat.ctimeNs;
    return true;
  }

  /**
   * Brings the key files in line with the lease files (`owners`: one readdir and one read per lease,
   * done by the caller). Incremental: key files that already say the right thing are only read, so
   * after the reference touched a large store the rebuild costs reads, not thousands of creates.
   * Boot IDs recorded for addresses that did not change are kept, unless their key file was changed
   * after the last state we wrote (then they are unknown).
   */
  rebuild(owners: Owner[]): void {
    const prev = this.readState();
    const trustedUpTo = prev ? prev.stat.ctimeNs : this.sealedAt; 
    this.cache.clear();
    this.own.unlink('state');
    this.dirty = true; // seal() records the directory as it is once the caller is done
    this.own.cleanupTemp();
    const want = new Map<string, { ips: string[] }>();
    for (const o of owners) {
      const k = keyName(o.id, o.ifname);
      const w = want.get(k);
      if (w) w.ips.push(o.ip);
      else want.set(k, { ips: [o.ip] });
    }
    for (const name of this.keys.list()) if (!want.has(name)) this.keys.unlink(name); // temp files too
    for (const [name, w] of want) {
      const read = this.readOurs(this.keys, name, MAX_KEY_FILE);
      const f = read === 'bad' ? null : read; // replaced by the rename below
      const trusted = f !== null && (trustedUpTo === null || f.stat.ctimeNs <= trustedUpTo);
      const have = (f && decode(f.data.toString('utf8'))) || [];
      const entries = w.ips.map((ip) => ({ ip, bootId: (trusted && have.find((e) => e.ip === ip)?.bootId) || UNKNOWN_BOOT }));
      const same = f !== null && have.length === entries.length && entries.every((e) => have.some((h) => h.ip === e.ip && h.bootId === e.bootId));
      if (!same) this.keys.writeAtomic(name, encode(entries), { durable: false });
      this.cache.set(name, entries);
    }
    this.complete = true;
    this.sealedAt = null;
    this.fresh = true;
  }

  /** Key files currently present (tests and diagnostics). */
  keyFiles(): string[] {
    return this.keys.list();
  }
}
