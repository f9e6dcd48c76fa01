// Who we are: the product version compiled into the bundle, and the build ID the build appends to
// the executable, so a copy of it (`cp dist/bin/* /opt/cni/bin/`, a package manager) is recognised
// as our own executable by its content, not by its path (issue 10, item 6).
//
// Trailer format (written by build.mjs, which keeps its own copy of these two constants): the last
// TRAILER_LEN bytes of the executable are TRAILER_MAGIC followed by 32 lowercase hex digits, the
// first 128 bits of the SHA-256 of every byte before the trailer. bun finds its module graph
// through an ELF section, so bytes after the section headers do not disturb it.
import { closeSync, fstatSync, openSync, readSync, realpathSync, constants } from 'node:fs';

export const TRAILER_MAGIC = '\ncnikit-build-id:';
const ID_HEX = 32;
export const TRAILER_LEN = TRAILER_MAGIC.length + ID_HEX;
const ID_RE = /^[0-9a-f]{32}$/;

// Replaced by esbuild's `define` at build time; absent when the sources run on Node (unit tests).
declare const __CNIKIT_VERSION__: string | undefined;

/** The product version (package.json's), or "dev" when running from the sources. */
export const VERSION: string = typeof __CNIKIT_VERSION__ === 'string' ? __CNIKIT_VERSION__ : 'dev';

/**
 * The build ID in the trailer of `file` (32 hex digits), or null when the file has none, cannot be
 * opened, or is not a regular file. Costs one open, one fstat and one pread of TRAILER_LEN bytes;
 * follows symlinks (an installed name is a link to the executable). Never throws.
 */
export function readBuildId(file: string): string | null {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted under the name must not block the open (libuv adds O_CLOEXEC).
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size < TRAILER_LEN) return null;
    const buf = Buffer.alloc(TRAILER_LEN);
    if (readSync(fd, buf, 0, TRAILER_LEN, st.size - TRAILER_LEN) !== TRAILER_LEN) return null;
    const text = buf.toString('latin1');
    if (!text.startsWith(TRAILER_MAGIC)) return null;
    const id = text.slice(TRAILER_MAGIC.length);
    return ID_RE.test(id) ? id : null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

let own: string | null | undefined;

/** This process's build ID (from its own executable, read once), or null when run from the sources. */
export function ownBuildId(): string | null {
  if (own === undefined) own = readBuildId(process.execPath);
  return own;
}

/**
 * True when `file` is a build-identical copy of (or a link to) the running executable: both carry
 * the same build ID. A file without a trailer (the reference plugins, node) is never ours.
 */
export function isSameBuild(file: string): boolean {
  const mine = ownBuildId();
  return mine !== null && readBuildId(file) === mine;
}

let ownPath: string | null | undefined;

/**
 * True when a plugin file in CNI_PATH is our own multi-call executable, so it can run in-process: a
 * link to the running executable (same realpath, one stat-free comparison after the first), or a
 * copy of it with the same build ID. False when either cannot be read.
 */
export function isOwnExecutable(file: string): boolean {
  if (ownPath === undefined) {
    try {
      ownPath = realpathSync(process.execPath);
    } catch {
      ownPath = null;
    }
  }
  try {
    if (ownPath !== null && realpathSync(file) === ownPath) return true;
  } catch {
    return false;
  }
  return isSameBuild(file);
}

/** One line for `--version` and the plugins' about text: "cnikit 0.1.0 (build 1a2b3c4d5e6f)". */
export function versionLine(): string {
  const id = ownBuildId();
  return `cnikit ${VERSION}${id ? ` (build ${id.slice(0, 12)})` : ''}`;
}
