// The iptables backend's attachment records. The reference's rules carry no container ID (they
// must stay byte for byte the reference's, so a node can switch plugins), so ADD also writes which
// addresses it let through for which attachment: <dataDir>/<network>/<containerID>:<ifName>, JSON
// {"containerID", "ifName", "ips"}. DEL reads it when prevResult is missing or its address changed;
// GC (issue 12: every rule-writing plugin collects against cni.dev/valid-attachments) finds stale
// attachments by it. A pod ADDed by the reference has no record: DEL falls back to prevResult, and
// GC cannot attribute its rules, so it leaves them.
//
// Only the addresses are recorded: DEL and GC remove the pod rules alone, never the chains, jumps or
// isolation rules (shared by other pods), so the admin chain and ingressPolicy are not needed to
// find what to remove. Files are 0600 in 0700 directories, written atomically, never through a
// symlink (shared/linux/files.ts).
import { closeSync, constants as C, mkdirSync } from 'node:fs';
import { CniError, ErrTryAgainLater } from '../../../shared/cni/errors';
import { FileError, isSafeName, PinnedDir } from '../../../shared/linux/files';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../../../shared/linux/libc';
import { FileLock } from '../../../shared/linux/lock';
import { formatIP, parseIP, type IP } from '../../../shared/ip';

const MAX_RECORD_BYTES = 64 * 1024; // a record holds a few addresses
const LOCK_FILE = '.lock'; // dot names are not records
const LOCK_TIMEOUT_MS = 10_000; // a GC of the largest network holds it for one restore per family

export interface AttachmentRecord {
  containerID: string;
  ifName: string;
  ips: IP[];
}

/**
 * The record's file name. The core has checked both parts (containerID ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$,
 * ifName without "/", ":" or whitespace, not "." or ".."), and neither may hold ":", so the name is
 * one path component and no two attachments share it. Over 255 bytes it is refused (FileError
 * 'EBADNAME') when it touches the directory.
 */
export const recordName = (containerID: string, ifName: string): string => `${containerID}:${ifName}`;

export function encodeRecord(r: AttachmentRecord): string {
  return `${JSON.stringify({ containerID: r.containerID, ifName: r.ifName, ips: r.ips.map(formatIP) })}\n`;
}

/** Parses a record's bytes; throws Error naming `shown` (the file) when they are not a record. */
export function decodeRecord(data: Buffer, shown: string): AttachmentRecord {
  let o: unknown;
  try {
    o = JSON.parse(data.toString('utf8'));
  } catch {
    throw new Error(`${shown}: not a firewall attachment record (not JSON)`);
  }
  const r = o as Record<string, unknown> | null;
  const ips = Array.isArray(r?.ips) ? r.ips.map((s) => (typeof s === 'string' ? parseIP(s) : null)) : null;
  if (typeof r?.containerID !== 'string' || typeof r.ifName !== 'string' || !ips || ips.some((ip) => !ip))
    throw new Error(`${shown}: not a firewall attachment record (expected {"containerID": string, "ifName": string, "ips": [address, ...]})`);
  return { containerID: r.containerID, ifName: r.ifName, ips: ips as IP[] };
}

/** The records of one network: <dataDir>/<network>, a directory of ours alone. */
export class RecordStore {
  private lockFd = -1;
  private fileLock: FileLock | null = null;

  private constructor(private readonly dir: PinnedDir) {}

  /**
   * For ADD: opens <dataDir>/<network>, creating both (0700) when missing. dataDir is the admin's
   * path (its symlinks followed); the network directory never is: a symlink or file planted there
   * is removed (the link, not its target) and a directory made. Throws FileError.
   */
  static create(dataDir: string, network: string): RecordStore {
    let root: PinnedDir;
    try {
      root = PinnedDir.open(dataDir, { create: 0o700, followSymlinks: true });
    } catch (e) {
      if ((e as FileError).code !== 'ENOENT') throw e;
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      root = PinnedDir.open(dataDir, { create: 0o700, followSymlinks: true });
    }
    try {
      return new RecordStore(root.subdir(network, { create: 0o700, replace: true }));
    } finally {
      root.close();
    }
  }

  /** For DEL and GC: opens <dataDir>/<network> if it is there (null when it or dataDir is missing). Throws FileError ('ENOTDIR': not a directory, or a symlink). */
  static open(dataDir: string, network: string): RecordStore | null {
    let root: PinnedDir;
    try {
      root = PinnedDir.open(dataDir, { followSymlinks: true });
    } catch (e) {
      if ((e as FileError).code === 'ENOENT') return null;
      throw e;
    }
    try {
      return RecordStore.in(root, network);
    } catch (e) {
      if ((e as FileError).code === 'ENOENT') return null;
      throw e;
    } finally {
      root.close();
    }
  }

  /** The existing network directory `network` of an open dataDir (never followed). Throws FileError. */
  static in(root: PinnedDir, network: string): RecordStore {
    return new RecordStore(root.subdir(network));
  }

  get path(): string {
    return this.dir.path;
  }

  /** Writes (replaces) the attachment's record atomically, 0600. Throws FileError. */
  write(r: AttachmentRecord): void {
    this.dir.writeAtomic(recordName(r.containerID, r.ifName), encodeRecord(r), { mode: 0o600 });
  }

  /** The record named `name`; null when there is none. Throws FileError, or Error when it is not a record. */
  read(name: string): AttachmentRecord | null {
    const data = this.dir.read(name, MAX_RECORD_BYTES);
    return data ? decodeRecord(data, `${this.dir.path}/${name}`) : null;
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
    if (this.lockFd < 0) this.lockFd = this.dir.open(LOCK_FILE, C.O_CREAT | C.O_RDONLY, 0o600);
    this.fileLock ??= new FileLock(`/proc/self/fd/${this.lockFd}`, { flock, LOCK_EX, LOCK_NB, LOCK_UN }, LOCK_TIMEOUT_MS);
    try {
      this.fileLock.lock();
    } catch (e) {
      if (e instanceof CniError && e.code === ErrTryAgainLater)
        throw new CniError(ErrTryAgainLater, `timed out after ${LOCK_TIMEOUT_MS} ms waiting for the lock ${this.dir.path}/${LOCK_FILE}`, 'another firewall ADD or GC of this network holds it; try again later');
      throw e;
    }
  }

  /** Releases the lock (if held) and closes the directory. */
  close(): void {
    this.fileLock?.close(); // its own fd, reopened through /proc/self/fd/<lockFd>
    if (this.lockFd >= 0) closeSync(this.lockFd);
    this.lockFd = -1;
    this.dir.close();
  }
}

/**
 * The addresses recorded under dataDir by attachments other than `except` (record names of
 * `network`): every record of every network, since CNI-FORWARD is shared by all of them. An address
 * in this set belongs to a live attachment (one pod's address, reused after another's leaked), so
 * its rules must stay. Unreadable entries are skipped: they can only make us keep more.
 */
export function addressesRecordedElsewhere(dataDir: string, network: string, except: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  let root: PinnedDir;
  try {
    root = PinnedDir.open(dataDir, { followSymlinks: true });
  } catch {
    return out;
  }
  try {
    for (const net of root.list()) {
      if (!isSafeName(net) || net.startsWith('.')) continue;
      let dir: RecordStore;
      try {
        dir = RecordStore.in(root, net);
      } catch {
        continue;
      }
      try {
        for (const name of dir.names()) {
          if (net === network && except.has(name)) continue;
          try {
            for (const ip of dir.read(name)?.ips ?? []) out.add(formatIP(ip));
          } catch {
            /* not a record: nothing it holds is known to be live */
          }
        }
      } catch {
        /* unlistable: skipped */
      } finally {
        dir.close();
      }
    }
  } finally {
    root.close();
  }
  return out;
}
