// Where the model's records live. Networks go through NetworkStore, one per scope, so a global
// (cluster) store can hold the networks of `global` drivers next to the local files; endpoints and
// sandboxes are this host's and always local. Every file: JSON, written atomically (temp + fsync +
// rename) 0600 in 0700 directories reached through a pinned fd (shared/linux/files.ts), named by a
// validated 64-hex ID.
import { mkdirSync } from 'node:fs';
import { FileError, PinnedDir } from '../shared/linux/files';
import { CnmError } from './errors';
import { ID_RE, type NetworkRecord, type Scope } from './model';

const MAX_RECORD = 1 << 20;

/** A directory of `<id>.json` records. */
export class RecordDir<T extends { id: string }> {
  private constructor(private readonly dir: PinnedDir) {}

  /** Opens (creating 0700) `name` under `root`. Throws FileError. */
  static open<T extends { id: string }>(root: PinnedDir, name: string): RecordDir<T> {
    return new RecordDir<T>(root.subdir(name, { create: 0o700 }));
  }

  private static file(id: string): string {
    if (!ID_RE.test(id)) throw new CnmError('invalid', `invalid ID ${JSON.stringify(id)}: expected 64 hex digits`);
    return `${id}.json`;
  }

  /** The record, or null when there is none. Throws CnmError when it is unreadable. */
  read(id: string): T | null {
    const data = this.dir.read(RecordDir.file(id), MAX_RECORD);
    if (!data) return null;
    try {
      return JSON.parse(data.toString('utf8')) as T;
    } catch (e) {
      throw new CnmError('failed', `${this.dir.path}/${id}.json: not valid JSON`, { cause: e });
    }
  }

  write(rec: T): void {
    this.dir.writeAtomic(RecordDir.file(rec.id), JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
  }

  remove(id: string): void {
    this.dir.unlink(RecordDir.file(id));
  }

  /** Every readable record, in name order; files that are not `<id>.json` records are skipped. */
  list(): T[] {
    const out: T[] = [];
    for (const n of this.dir.list().sort()) {
      const id = n.endsWith('.json') ? n.slice(0, -5) : '';
      if (!ID_RE.test(id)) continue;
      const r = this.read(id);
      if (r) out.push(r);
    }
    return out;
  }
}

/**
 * The network definitions of one scope. Local: files under the state dir; a cluster store (the
 * overlay's etcd) implements the same four calls for `global` networks. Async so a remote store fits.
 */
export interface NetworkStore {
  readonly scope: Scope;
  list(): Promise<NetworkRecord[]>;
  get(id: string): Promise<NetworkRecord | null>;
  put(n: NetworkRecord): Promise<void>;
  remove(id: string): Promise<void>;
}

/** Networks as `<state>/networks/<id>.json`. */
export class LocalNetworkStore implements NetworkStore {
  readonly scope: Scope = 'local';
  constructor(private readonly dir: RecordDir<NetworkRecord>) {}
  async list(): Promise<NetworkRecord[]> {
    return this.dir.list();
  }
  async get(id: string): Promise<NetworkRecord | null> {
    return this.dir.read(id);
  }
  async put(n: NetworkRecord): Promise<void> {
    this.dir.write(n);
  }
  async remove(id: string): Promise<void> {
    this.dir.remove(id);
  }
}

/** Opens the state directory (created 0700 with its parents). Throws CnmError naming it. */
export function openStateDir(path: string): PinnedDir {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
    return PinnedDir.open(path, { followSymlinks: true });
  } catch (e) {
    throw new CnmError('failed', `state dir ${path}: ${e instanceof FileError ? e.reason : (e as Error).message}`, { cause: e });
  }
}
