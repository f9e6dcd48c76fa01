// Safe file access for state we own and files a config names: the one place for atomic writes,
// no-follow opens inside a pinned directory, and bounded reads of what must be a regular file.
//
// Why /proc/self/fd/<dirfd>/<name> instead of openat(2): node:fs (the unit tests run on Node, where
// bun:ffi is stubbed) has no *at() calls, and bun:ffi would give the compiled binary a second code
// path. The kernel resolves the magic link /proc/self/fd/<dirfd> to the directory the fd holds
// (not to a path), so `<that>/<name>` is looked up in the pinned directory even if someone renames
// it or replaces a path component with a symlink afterwards: the same guarantee as openat. With a
// validated name (one component: no '/', NUL, '.' or '..') and O_NOFOLLOW/O_EXCL on the final
// component, or calls that never follow it (unlink, rename, mkdir), no symlink planted in the
// directory is ever followed. Both Node and bun pass these flags through to open(2). It needs /proc
// mounted, which a CNI plugin (it enters netns through /proc paths too) always has. Safe across
// threads: /proc/self is the process, and the fd table is shared.
import { closeSync, constants as C, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, unlinkSync, writeSync, type BigIntStats, type Stats } from 'node:fs';
import { randomHex } from '../crypto';

const NOFOLLOW_DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/**
 * A filesystem error with the path as the user knows it (never /proc/self/fd/N) and an errno-like
 * code: the errno's ('ENOENT', 'ENOSPC', ...) or ours: 'ENOTREG' (not a regular file), 'EFBIG'
 * (over the read bound), 'ELOOP' (a symlink where none may be), 'EBADNAME' (not one safe path
 * component). The original error is kept as `cause`.
 */
export class FileError extends Error {
  /** `reason`: what is wrong, without the path ("is not a regular file"); message = "<path>: <reason>". */
  constructor(
    readonly code: string,
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${reason}`, options);
    this.name = 'FileError';
  }
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** Re-throws an fs error naming `path` (the user's path) and `op` (what we were doing). */
function rethrow(e: unknown, op: string, path: string): never {
  if (e instanceof FileError) throw e;
  const code = errnoOf(e) ?? 'EIO';
  throw new FileError(code, path, `${op}: ${code === 'ELOOP' ? 'is a symbolic link' : code}`, { cause: e });
}

/** True when `name` is one path component that cannot climb or descend: not '', '.', '..', no '/', no NUL, ≤ 255 bytes. */
export function isSafeName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && Buffer.byteLength(name) <= 255;
}

/**
 * Reads at most `maxBytes` of a file that must be a regular file. Opened O_NONBLOCK (a FIFO, a
 * device or a socket cannot block us: fstat rejects them before any read) and, unless
 * `followSymlinks` (files a config names, e.g. /etc/resolv.conf is often a symlink), O_NOFOLLOW.
 * Throws FileError: the errno of open ('ENOENT', ...), 'ELOOP', 'ENOTREG', or 'EFBIG' when the file
 * is larger than `maxBytes`.
 */
export function readRegularFile(path: string, maxBytes: number, opts: { followSymlinks?: boolean } = {}): Buffer {
  return readBounded(path, path, maxBytes, opts.followSymlinks ?? false).data;
}

function readBounded(openPath: string, shownPath: string, maxBytes: number, follow: boolean): { data: Buffer; stat: BigIntStats } {
  let fd: number;
  try {
    fd = openSync(openPath, C.O_RDONLY | C.O_NONBLOCK | (follow ? 0 : C.O_NOFOLLOW));
  } catch (e) {
    rethrow(e, 'cannot open', shownPath);
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    if (!stat.isFile()) throw new FileError('ENOTREG', shownPath, 'is not a regular file');
    // One byte more than allowed tells "exactly maxBytes" from "larger". st_size is only a hint
    // (0 for /proc files, or the file grows): the buffer grows up to that bound.
    const limit = maxBytes + 1;
    let buf = Buffer.alloc(Math.min(Math.max(Number(stat.size) + 1, 4096), limit));
    let n = 0;
    for (let r; (r = readSync(fd, buf, n, buf.length - n, null)) > 0; ) {
      n += r;
      if (n < buf.length) continue;
      if (buf.length === limit) break;
      const bigger = Buffer.alloc(Math.min(buf.length * 2, limit));
      buf.copy(bigger, 0, 0, n);
      buf = bigger;
    }
    if (n > maxBytes) throw new FileError('EFBIG', shownPath, `is larger than ${maxBytes} bytes`);
    return { data: buf.subarray(0, n), stat };
  } catch (e) {
    rethrow(e, 'cannot read', shownPath);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of `data` to `fd` (write(2) may write less than asked). */
function writeAll(fd: number, data: Uint8Array): void {
  for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
}

const bytes = (data: string | Uint8Array): Uint8Array => (typeof data === 'string' ? Buffer.from(data) : data);

export interface WriteOptions {
  /** File mode (before umask); default 0600. */
  mode?: number;
  /**
   * fsync the file before the rename and the directory after it (default true), so after a crash
   * the name holds the old or the new bytes. false only for data that is re-validated after every
   * boot anyway (a cache): the write stays atomic for readers and kill -9, just not power-loss durable.
   */
  durable?: boolean;
}

/**
 * A directory opened once (O_DIRECTORY|O_NOFOLLOW unless the caller's own configured path may be a
 * symlink) whose entries are only ever reached through its fd: see the module comment. Names must
 * be single safe components (isSafeName), else FileError 'EBADNAME'. Errors name `<path>/<name>`.
 */
export class PinnedDir {
  private constructor(
    readonly path: string,
    readonly fd: number,
  ) {}

  /**
   * Opens `path`, creating it (one level, `create` = mode) when missing. `followSymlinks` is for a
   * root the configuration names (its symlinks are the admin's); everything below is opened with
   * subdir(), never following. Throws FileError ('ENOTDIR' also when it is a symlink and not followed).
   */
  static open(path: string, opts: { create?: number; followSymlinks?: boolean } = {}): PinnedDir {
    const flags = opts.followSymlinks ? C.O_RDONLY | C.O_DIRECTORY : NOFOLLOW_DIR;
    return new PinnedDir(path, openDir(path, path, flags, opts.create));
  }

  /** `/proc/self/fd/<fd>/<name>`: the entry `name` of this directory, whatever happened to its path. */
  at(name: string): string {
    if (!isSafeName(name)) throw new FileError('EBADNAME', `${this.path}/${JSON.stringify(name)}`, 'is not a single safe file name');
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  private shown(name: string): string {
    return `${this.path}/${name}`;
  }

  /**
   * Opens the subdirectory `name` without following a symlink, creating it with mode `create` when
   * missing. With `replace`, a non-directory in its place (a regular file, a planted symlink) is
   * unlinked — the link itself, never its target — and the directory made afresh: for directories
   * that are ours alone. Throws FileError ('ENOTDIR' when something else is there and not replaced).
   */
  subdir(name: string, opts: { create?: number; replace?: boolean } = {}): PinnedDir {
    const p = this.at(name);
    try {
      return new PinnedDir(this.shown(name), openDir(p, this.shown(name), NOFOLLOW_DIR, opts.create));
    } catch (e) {
      if (!opts.replace || (e as FileError).code !== 'ENOTDIR') throw e;
    }
    this.unlink(name);
    return new PinnedDir(this.shown(name), openDir(p, this.shown(name), NOFOLLOW_DIR, opts.create ?? 0o700));
  }

  /** Entry names (readdir of the pinned directory). */
  list(): string[] {
    try {
      return readdirSync(`/proc/self/fd/${this.fd}`);
    } catch (e) {
      rethrow(e, 'cannot list', this.path);
    }
  }

  /** lstat of an entry (never follows it); null when it does not exist. */
  lstat(name: string): Stats | null {
    try {
      return lstatSync(this.at(name));
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return null;
      rethrow(e, 'cannot stat', this.shown(name));
    }
  }

  /** fstat of the directory itself (identity and mtime, for change detection). */
  stat(): BigIntStats {
    return fstatSync(this.fd, { bigint: true });
  }

  /**
   * Opens an entry with `flags` | O_NOFOLLOW; returns the fd (the caller closes it). For a lock
   * file, say: `open(name, O_CREAT|O_RDONLY, 0o750)`. Throws FileError ('ELOOP' for a symlink).
   */
  open(name: string, flags: number, mode = 0o600): number {
    try {
      return openSync(this.at(name), flags | C.O_NOFOLLOW, mode);
    } catch (e) {
      rethrow(e, 'cannot open', this.shown(name));
    }
  }

  /**
   * Reads at most `maxBytes` of the regular file `name` (O_NOFOLLOW|O_NONBLOCK, fstat checked, see
   * readRegularFile). Returns null when it does not exist; throws FileError otherwise.
   */
  read(name: string, maxBytes: number): Buffer | null {
    return this.readWithStat(name, maxBytes)?.data ?? null;
  }

  /** read() plus the file's fstat (ctime/mtime in ns, for change detection). */
  readWithStat(name: string, maxBytes: number): { data: Buffer; stat: BigIntStats } | null {
    try {
      return readBounded(this.at(name), this.shown(name), maxBytes, false);
    } catch (e) {
      if ((e as FileError).code === 'ENOENT') return null;
      throw e;
    }
  }

  /**
   * Creates `name` exclusively (O_CREAT|O_EXCL|O_NOFOLLOW: an existing entry, a planted symlink
   * included, is never opened) holding `data`; false when the name exists. If writing (or the
   * fsync, when `durable`) fails, e.g. ENOSPC, the new file is unlinked before the FileError is
   * thrown: a failed create leaves nothing.
   */
  createExclusive(name: string, data: string | Uint8Array, opts: WriteOptions = {}): boolean {
    let fd: number;
    try {
      fd = openSync(this.at(name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, opts.mode ?? 0o600);
    } catch (e) {
      if (errnoOf(e) === 'EEXIST') return false;
      rethrow(e, 'cannot create', this.shown(name));
    }
    try {
      writeAll(fd, bytes(data));
      if (opts.durable ?? true) fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      this.unlink(name);
      rethrow(e, 'cannot write', this.shown(name));
    }
    closeSync(fd);
    return true;
  }

  /**
   * Replaces `name` atomically: a temp file with a random name (`.<name>.<hex>.tmp`) created
   * O_EXCL|O_NOFOLLOW, written, fsync'd, renamed over `name` (rename never follows a symlink at
   * either name: a planted one is replaced, not written through), then the directory fsync'd (see
   * WriteOptions.durable). On failure the temp file is unlinked and a FileError thrown.
   */
  writeAtomic(name: string, data: string | Uint8Array, opts: WriteOptions = {}): void {
    const durable = opts.durable ?? true;
    const target = this.at(name);
    // Random, so nobody can plant it in advance; the '.tmp' names are what cleanupTemp() removes.
    const tmp = `.${name.slice(0, 200)}.${randomHex(8)}.tmp`;
    let created: boolean;
    try {
      created = this.createExclusive(tmp, data, { mode: opts.mode, durable });
    } catch (e) {
      const f = e as FileError; // name the file being written, not its temp file
      throw new FileError(f.code, this.shown(name), f.reason, { cause: e });
    }
    if (!created) throw new FileError('EEXIST', this.shown(tmp), 'temp file exists');
    try {
      renameSync(this.at(tmp), target);
    } catch (e) {
      this.unlink(tmp);
      rethrow(e, 'cannot replace', this.shown(name));
    }
    if (durable) this.sync();
  }

  /** Renames within the directory (never follows either name). */
  rename(from: string, to: string): void {
    try {
      renameSync(this.at(from), this.at(to));
    } catch (e) {
      rethrow(e, 'cannot rename', this.shown(from));
    }
  }

  /**
   * Unlinks `name` (a symlink is removed itself, its target untouched); false when it was not
   * there. Needs no free space. A directory is refused (EISDIR): we never remove a tree here.
   */
  unlink(name: string): boolean {
    try {
      unlinkSync(this.at(name));
      return true;
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return false;
      rethrow(e, 'cannot remove', this.shown(name));
    }
  }

  /** Removes temp files left by a writer killed between create and rename (names `.*.tmp`). */
  cleanupTemp(): void {
    for (const n of this.list()) if (n.startsWith('.') && n.endsWith('.tmp')) this.unlink(n);
  }

  /** fsync of the directory: makes its entries (creates, renames, unlinks) durable. */
  sync(): void {
    try {
      fsyncSync(this.fd);
    } catch (e) {
      rethrow(e, 'cannot sync', this.path);
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

function openDir(openPath: string, shownPath: string, flags: number, create: number | undefined): number {
  for (let attempt = 0; ; attempt++) {
    try {
      return openSync(openPath, flags);
    } catch (e) {
      // O_DIRECTORY|O_NOFOLLOW on a symlink also says ENOTDIR; either way it is not a directory for us.
      if (errnoOf(e) === 'ENOENT' && create !== undefined && attempt === 0) {
        try {
          mkdirSync(openPath, create); // mkdir never follows a symlink at the name (EEXIST)
        } catch (m) {
          if (errnoOf(m) !== 'EEXIST') rethrow(m, 'cannot create directory', shownPath);
        }
        continue;
      }
      if (errnoOf(e) === 'ENOTDIR' || errnoOf(e) === 'ELOOP') throw new FileError('ENOTDIR', shownPath, 'is not a directory', { cause: e });
      rethrow(e, 'cannot open directory', shownPath);
    }
  }
}

/**
 * Atomically replaces the file at `path` (see PinnedDir.writeAtomic): the parent directory is
 * opened as the caller's path (its symlinks followed), the final component never is.
 * Throws FileError.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, opts: WriteOptions = {}): void {
  const slash = path.lastIndexOf('/');
  const dir = PinnedDir.open(slash > 0 ? path.slice(0, slash) : slash === 0 ? '/' : '.', { followSymlinks: true });
  try {
    dir.writeAtomic(path.slice(slash + 1), data, opts);
  } finally {
    dir.close();
  }
}
