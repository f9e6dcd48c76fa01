// The link values ADD changes, saved before it changes them so DEL can put them back: the
// reference's configToRestore, in its file (<dataDir>/<containerID>_<ifname>.json) and its format
// (Go's json.MarshalIndent with a one-space indent, only the keys ADD changes), so a node can switch
// between the reference's tuning and ours between a pod's ADD and its DEL, either way.
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FileError, readRegularFile, writeFileAtomic } from '../../../shared/linux/files';
import { normalizeMAC } from '../../../shared/mac';

/** Original values of what ADD changes; a key is present only when ADD changes it. */
export interface SavedLink {
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
  txQLen?: number;
}

/**
 * The file for one attachment. containerID and ifName have passed the protocol core's rules (no
 * "/", not "." or ".."), so the name stays inside dataDir.
 */
export function savedLinkPath(dataDir: string, containerID: string, ifName: string): string {
  return join(dataDir, `${containerID}_${ifName}.json`);
}

/** The reference's bytes: keys in its struct order, omitted when unset (omitempty), no trailing newline. */
export function encodeSavedLink(s: SavedLink): string {
  const o: Record<string, unknown> = {};
  if (s.mac) o.mac = s.mac;
  if (s.promisc !== undefined) o.promisc = s.promisc;
  if (s.mtu) o.mtu = s.mtu;
  if (s.allmulti !== undefined) o.allmulti = s.allmulti;
  if (s.txQLen !== undefined) o.txQLen = s.txQLen;
  return JSON.stringify(o, null, 1);
}

const isUint = (v: unknown, max: number): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;

/**
 * Reads a saved file's text back. Returns undefined when it is not a JSON object (the reference then
 * restores nothing); a key with a value the kernel could not take is dropped, the others are kept.
 */
export function decodeSavedLink(text: string): SavedLink | undefined {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return undefined;
  const r = o as Record<string, unknown>;
  const s: SavedLink = {};
  const mac = typeof r.mac === 'string' ? normalizeMAC(r.mac) : null;
  if (mac) s.mac = mac;
  if (typeof r.promisc === 'boolean') s.promisc = r.promisc;
  if (isUint(r.mtu, 0x7fffffff) && r.mtu > 0) s.mtu = r.mtu;
  if (typeof r.allmulti === 'boolean') s.allmulti = r.allmulti;
  if (isUint(r.txQLen, 0xffffffff)) s.txQLen = r.txQLen;
  return s;
}

/** Writes the file atomically (shared/linux/files: 0600 temp, fsync, rename, directory fsync); the directory is created 0700 if missing. */
export function writeSavedLink(path: string, s: SavedLink): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, encodeSavedLink(s), { mode: 0o600 });
}

// The reference's file holds at most five short keys; anything larger is not one of them.
const MAX_SAVED_BYTES = 64 * 1024;

/** The file's text, or undefined when there is none; a symlink in its place is refused (FileError ELOOP), not followed, and a FIFO cannot block. */
export function readSavedLinkFile(path: string): string | undefined {
  try {
    return readRegularFile(path, MAX_SAVED_BYTES).toString('utf8');
  } catch (e) {
    if (e instanceof FileError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return undefined;
    throw e;
  }
}

/** Removes the file; gone already is fine (DEL is idempotent). */
export function removeSavedLink(path: string): void {
  rmSync(path, { force: true });
}
