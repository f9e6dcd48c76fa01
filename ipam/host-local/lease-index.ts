// The O(1) lookup index beside the reference's store: one small file per attachment
// (.cnikit/by-key/<containerID>+<ifname>) listing its addresses, so ADD's duplicate check and DEL
// read one file instead of walking every lease (the reference's O(N) walk; plugins#561).
//
// The per-IP lease files stay the source of truth:
// - an entry is only a hint: every address it names is checked against its lease file before use;
// - .cnikit/state records the store directory's identity and mtime when the index was last known
//   complete. Anything that adds or removes a lease behind our back (the reference plugin, an admin,
//   tmpfiles at boot) changes that mtime, and the next call rebuilds the index from the lease files;
// - we delete the state before our own first change under the lock and write it back last, so a
//   kill -9 at any point also leaves "rebuild next time".
// Limitation: on kernels without multigrain timestamps (< 6.13), a foreign change within the same
// clock tick as our last write can go unseen; the lease files still decide every allocation, and
// GC (which reads the lease files) releases anything the index missed.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const STATE_MAGIC = 'cnikit-index v1';
const KEY_MAGIC = 'cnikit-lease-index v1';

export interface IndexEntry {
  ip: string; // lease file name
  bootId: string; // boot the lease was made in; '-' when unknown (rebuilt from a lease file)
}

export interface Owner {
  id: string;
  ifname: string; // '' for legacy ID-only leases
  ip: string;
}

/** Key file name: readable when short; container IDs cannot contain '+', so the split is unambiguous. */
export function keyName(id: string, ifname: string): string {
  const k = `${id}+${ifname}`;
  return k.length <= 200 ? k : `h-${createHash('sha256').update(k).digest('hex')}`;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

export function writeAtomic(path: string, data: string, mode: number): void {
  const slash = path.lastIndexOf('/');
  // A fixed hidden temp name: we hold the store lock, and a leftover from a kill is just overwritten.
  const tmp = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.cnikit-tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

export class LeaseIndex {
  private readonly root: string;
  private readonly keys: string;
  private readonly state: string;
  private fresh = false;
  private dirty = false;
  // Key files read or written in this lock session: ADD's duplicate check and its add, and DEL's
  // lookup, remove and final check, would otherwise read the same file 2-3 times under one lock.
  private readonly cache = new Map<string, IndexEntry[]>();

  constructor(private readonly storeDir: string) {
    this.root = join(storeDir, '.cnikit');
    this.keys = join(this.root, 'by-key');
    this.state = join(this.root, 'state');
  }

  /** Makes the index trustworthy for this lock session: reuses it when nothing changed, else rebuilds. */
  ensureFresh(scan: () => Owner[]): void {
    if (this.fresh) return;
    if (!this.stateMatches()) this.rebuild(scan());
    this.fresh = true;
  }

  /** Drops the cached view (e.g. after the lock was released). */
  forget(): void {
    this.fresh = false;
    this.cache.clear();
  }

  entries(id: string, ifname: string): IndexEntry[] {
    const name = keyName(id, ifname);
    let e = this.cache.get(name);
    if (!e) this.cache.set(name, (e = this.readKeyFile(name)));
    return [...e];
  }

  private readKeyFile(name: string): IndexEntry[] {
    let text: string;
    try {
      text = readFileSync(join(this.keys, name), 'utf8');
    } catch (e) {
      if (errno(e) === 'ENOENT') return [];
      throw e;
    }
    const lines = text.split('\n');
    if (lines[0] !== KEY_MAGIC) return [];
    const out: IndexEntry[] = [];
    for (const l of lines.slice(1)) {
      if (!l) continue;
      const [ip, bootId] = l.split(' ');
      if (ip) out.push({ ip, bootId: bootId || '-' });
    }
    return out;
  }

  /** Before the first change under the lock: no state means "rebuild" if we die half-way. */
  beginChange(): void {
    if (this.dirty) return;
    rmSync(this.state, { force: true });
    this.dirty = true;
  }

  set(id: string, ifname: string, entries: IndexEntry[]): void {
    this.beginChange();
    const name = keyName(id, ifname);
    const p = join(this.keys, name);
    this.cache.delete(name); // re-read if the write below fails half-way
    if (entries.length === 0) rmSync(p, { force: true });
    else writeAtomic(p, `${KEY_MAGIC}\n${entries.map((e) => `${e.ip} ${e.bootId}\n`).join('')}`, 0o600);
    this.cache.set(name, [...entries]);
  }

  add(o: Owner, bootId: string): void {
    const cur = this.entries(o.id, o.ifname).filter((e) => e.ip !== o.ip);
    this.set(o.id, o.ifname, [...cur, { ip: o.ip, bootId }]);
  }

  remove(o: Owner): void {
    const cur = this.entries(o.id, o.ifname);
    const next = cur.filter((e) => e.ip !== o.ip);
    if (next.length !== cur.length) this.set(o.id, o.ifname, next);
  }

  /** After the last change under the lock: the index is complete for the directory as it is now. */
  seal(): void {
    if (!this.dirty) return;
    writeAtomic(this.state, `${STATE_MAGIC} ${this.dirStamp()}\n`, 0o600);
    this.dirty = false;
  }

  private dirStamp(): string {
    const st = statSync(this.storeDir, { bigint: true });
    return `${st.dev} ${st.ino} ${st.mtimeNs}`;
  }

  private stateMatches(): boolean {
    let text: string;
    try {
      text = readFileSync(this.state, 'utf8');
    } catch {
      return false;
    }
    return text === `${STATE_MAGIC} ${this.dirStamp()}\n`;
  }

  /**
   * Brings the key files in line with the lease files (`owners`: one readdir and one read per lease,
   * done by the caller). Incremental: key files that already say the right thing are only read, so
   * after the reference touched a large store the rebuild costs reads, not thousands of creates;
   * boot IDs recorded for addresses that did not change are kept.
   */
  rebuild(owners: Owner[]): void {
    this.cache.clear();
    mkdirSync(this.keys, { recursive: true, mode: 0o700 });
    rmSync(this.state, { force: true });
    this.dirty = true; // seal() records the directory as it is once the caller is done
    const want = new Map<string, { id: string; ifname: string; ips: string[] }>();
    for (const o of owners) {
      const k = keyName(o.id, o.ifname);
      const w = want.get(k);
      if (w) w.ips.push(o.ip);
      else want.set(k, { id: o.id, ifname: o.ifname, ips: [o.ip] });
    }
    for (const name of readdirSync(this.keys)) {
      if (name.startsWith('.')) {
        rmSync(join(this.keys, name), { force: true }); // a temp file left by a kill
        continue;
      }
      if (!want.has(name)) rmSync(join(this.keys, name), { force: true });
    }
    for (const [name, w] of want) {
      const have = this.readKeyFile(name);
      const same = have.length === w.ips.length && w.ips.every((ip) => have.some((e) => e.ip === ip));
      if (same) continue;
      const entries = w.ips.map((ip) => ({ ip, bootId: have.find((e) => e.ip === ip)?.bootId ?? '-' }));
      writeAtomic(join(this.keys, name), `${KEY_MAGIC}\n${entries.map((e) => `${e.ip} ${e.bootId}\n`).join('')}`, 0o600);
    }
    this.fresh = true;
  }

  /** Key files currently present (tests and diagnostics). */
  keyFiles(): string[] {
    try {
      return readdirSync(this.keys);
    } catch {
      return [];
    }
  }
}
