// Per-attachment records of a rule-writing plugin: <dataDir>/<network>/<containerID>:<ifName>, one
// file per attachment that ADD wrote rules for. They let DEL find what to remove when the runtime
// does not repeat what ADD was given (no prevResult, no capability args, the address changed) and
// let GC (spec 1.1, issue 12: collect against cni.dev/valid-attachments) find the stale attachments
// of one network. What a record holds is the plugin's (a RecordCodec); the directory, the atomic
// write, the bounded read, the listing and the network's lock are here.
//
// Files are 0600 in 0700 directories, written atomically (fsync, rename), never opened through a
// symlink (shared/linux/files.ts PinnedDir); names are one validated path component.
//
// A plugin whose verbs read every network's records (firewall: CNI-FORWARD is shared by all
// networks) also takes the lock over the whole dataDir (DataDirLock, <dataDir>/.lock), always
// before a network's lock: one fixed order, so two processes never wait on each other.
import { mkdirSync } from 'node:fs';
import { type FileError, PinnedDir } from '../linux/files';
import { FileLock } from '../linux/lock';

const LOCK_FILE = '.lock'; // dot names are not records
const LOCK_TIMEOUT_MS = 10_000; // a GC of the largest network holds it for one restore per family

/** How one plugin's records are written and read. */
export interface RecordCodec<T> {
  /** The plugin's name, for messages ("another <plugin> ADD or GC holds the lock"). */
  plugin: string;
  /** Upper bound of a record's size in bytes (a larger file is FileError 'EFBIG'). */
  maxBytes: number;
  encode(r: T): string;
  /** Parses a record's bytes; throws Error naming `shown` (the file) when they are not a record. */
  decode(data: Buffer, shown: string): T;
}

/**
 * The record's file name. The core has checked both parts (containerID ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$,
 * ifName without "/", ":" or whitespace, not "." or ".."), and neither may hold ":", so the name is
 * one path component and no two attachments share it. Over 255 bytes it is refused (FileError
 * 'EBADNAME') when it touches the directory.
 */
export const recordName = (containerID: string, ifName: string): string => `${containerID}:${ifName}`;

/** The records of one network: <dataDir>/<network>, a directory of ours alone. */
export class AttachmentRecords<T> {
  private fileLock: FileLock | null = null;

  private constructor(
    private readonly dir: PinnedDir,
    private readonly codec: RecordCodec<T>,
  ) {}

  /**
   * For ADD: opens <dataDir>/<network>, creating both (0700) when missing. dataDir is the admin's
   * path (its symlinks followed); the network directory never is: a symlink or file planted there
   * is removed (the link, not its target) and a directory made. Throws FileError.
   */
  static create<T>(dataDir: string, network: string, codec: RecordCodec<T>): AttachmentRecords<T> {
    let root: PinnedDir;
    try {
      root = PinnedDir.open(dataDir, { create: 0o700, followSymlinks: true });
    } catch (e) {
      if ((e as FileError).code !== 'ENOENT') throw e;
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      root = PinnedDir.open(dataDir, { create: 0o700, followSymlinks: true });
    }
    try {
      return new AttachmentRecords(root.subdir(network, { create: 0o700, replace: true }), codec);
    } finally {
      root.close();
    }
  }

  /** For DEL and GC: opens <dataDir>/<network> if it is there (null when it or dataDir is missing). Throws FileError ('ENOTDIR': not a directory, or a symlink). */
  static open<T>(dataDir: string, network: string, codec: RecordCodec<T>): AttachmentRecords<T> | null {
    const root = openIfThere(dataDir);
    if (!root) return null;
    try {
      return AttachmentRecords.in(root, network, codec);
    } catch (e) {
      if ((e as FileError).code === 'ENOENT') return null;
      throw e;
    } finally {
      root.close();
    }
  }

  /** The existing network directory `network` of an open dataDir (never followed). Throws FileError. */
  static in<T>(root: PinnedDir, network: string, codec: RecordCodec<T>): AttachmentRecords<T> {
    return new AttachmentRecords(root.subdir(network), codec);
  }

  get path(): string {
    return this.dir.path;
  }

  /** Writes (replaces) the record `name` (recordName) atomically, 0600. Throws FileError. */
  write(name: string, r: T): void {
    this.dir.writeAtomic(name, this.codec.encode(r), { mode: 0o600 });
  }

  /** The record named `name`; null when there is none. Throws FileError, or Error when it is not a record. */
  read(name: string): T | null {
    const data = this.dir.read(name, this.codec.maxBytes);
    return data ? this.codec.decode(data, `${this.dir.path}/${name}`) : null;
  }

  /** Removes the record `name`; false when it was not there (DEL twice). Throws FileError. */
  remove(name: string): boolean {
    const gone = this.dir.unlink(name);
    if (gone) this.dir.sync();
    return gone;
  }

  /**
   * The record names here. Temp files (".<name>.<hex>.tmp") are not listed, and not removed either:
   * one may be a concurrent ADD's write in progress.
   */
  names(): string[] {
    return this.dir.list().filter((n) => !n.startsWith('.'));
  }

  /**
   * Takes the network's lock (flock of <dir>/.lock, opened without following a symlink) until
   * close(). ADD holds it from its rules to its record, GC for its whole run: otherwise GC could
   * read the records, an ADD reusing a stale record's address could finish, and GC then remove
   * that address's rules. Waits at most 10 s, then CniError code 11; FileError when it cannot open.
   */
  lock(): void {
    this.fileLock ??= FileLock.inDir(this.dir, LOCK_FILE, 0o600, LOCK_TIMEOUT_MS, `another ${this.codec.plugin} ADD or GC of this network holds it; try again later`);
    this.fileLock.lock();
  }

  /** Releases the lock (if held) and closes the directory. */
  close(): void {
    this.fileLock?.close();
    this.fileLock = null;
    this.dir.close();
  }
}

/**
 * The lock over a whole dataDir: flock of <dataDir>/.lock (created 0600, never through a symlink),
 * until release(). For verbs that read other networks' records and must not see them change before
 * their own restore. Taken before any network's lock() (fixed order). take() waits at most 10 s,
 * then CniError code 11; null when dataDir does not exist (no record to protect); FileError when
 * the lock file cannot be opened.
 */
export class DataDirLock {
  private constructor(private readonly fileLock: FileLock) {}

  static take(dataDir: string, plugin: string): DataDirLock | null {
    const root = openIfThere(dataDir);
    if (!root) return null;
    try {
      const fileLock = FileLock.inDir(root, LOCK_FILE, 0o600, LOCK_TIMEOUT_MS, `another ${plugin} ADD, DEL or GC holds it; try again later`);
      try {
        fileLock.lock();
      } catch (e) {
        fileLock.close();
        throw e;
      }
      return new DataDirLock(fileLock);
    } finally {
      root.close();
    }
  }

  /** Releases the lock and closes its file. */
  release(): void {
    this.fileLock.close();
  }
}

/** `dataDir` opened (symlinks in its path followed: it is the administrator's), or null when it does not exist. Throws FileError otherwise. */
function openIfThere(dataDir: string): PinnedDir | null {
  try {
    return PinnedDir.open(dataDir, { followSymlinks: true });
  } catch (e) {
    if ((e as FileError).code === 'ENOENT') return null;
    throw e;
  }
}
