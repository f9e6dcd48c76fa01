// /proc/sys access for the sysctls plugins set (accept_ra, accept_dad, arp_notify, forwarding;
// tuning's configured net.* keys). /proc/sys/net resolves to the netns of the thread that opens the file, so these
// work inside withNetns.
import { errorMessage } from '../cni/errors';
import * as fs from 'node:fs';
import { EINVAL, EIO, errnoMessage, errnoOf, kindOfErrno, type ErrorKind } from './netlink/errno';

const ROOT = '/proc/sys/';

/** A sysctl could not be read or written: positive errno, its kind (ENOENT: 'not-found'), the fs error as `cause`. */
export class SysctlError extends Error {
  readonly kind: ErrorKind;
  constructor(
    readonly key: string,
    readonly op: 'reading' | 'writing',
    readonly errno: number,
    options?: ErrorOptions,
  ) {
    super(`${op} sysctl ${key}: ${errnoMessage(errno)}`, options);
    this.name = 'SysctlError';
    this.kind = kindOfErrno(errno);
  }
}

// Keys of the form net.ipv4.conf.<ifname>.<leaf>: the interface name may itself contain dots
// (VLAN devices such as cni0.100), so everything between the 4th component and the leaf is it.
const PER_IFACE = /^net\.(ipv4|ipv6)\.(conf|neigh)\.(.+)\.([^.]+)$/;

/**
 * Turns a key into a path relative to /proc/sys. Slash keys are taken as they are
 * (`net/ipv6/conf/cni0.100/accept_dad`); dotted keys are converted, keeping dots in interface names.
 */
export function sysctlPath(key: string): string {
  let k = key.startsWith(ROOT) ? key.slice(ROOT.length) : key;
  if (!k.includes('/')) {
    const m = PER_IFACE.exec(k);
    k = m ? `net/${m[1]}/${m[2]}/${m[3]}/${m[4]}` : k.split('.').join('/');
  }
  if (k.split('/').some((c) => c === '..' || c === '')) throw new SysctlError(key, 'reading', EINVAL);
  return ROOT + k;
}

/** Reads a sysctl, without the trailing newline. Throws SysctlError. */
export function sysctlGet(key: string): string {
  const path = sysctlPath(key);
  try {
    return fs.readFileSync(path, 'utf8').replace(/\n$/, '');
  } catch (e) {
    throw new SysctlError(key, 'reading', errnoOf(e, EIO), { cause: e });
  }
}

/** Writes a sysctl only if its current value differs. Returns true if it wrote. Throws SysctlError. */
export function sysctlSet(key: string, value: string | number): boolean {
  const want = String(value);
  if (sysctlGet(key).trim() === want.trim()) return false;
  try {
    fs.writeFileSync(sysctlPath(key), want);
  } catch (e) {
    throw new SysctlError(key, 'writing', errnoOf(e, EIO), { cause: e });
  }
  return true;
}

/**
 * IP forwarding for a family (net.ipv4.ip_forward / net.ipv6.conf.all.forwarding = 1; the
 * reference's ip.EnableForward), written only when not already 1. Throws
 * `failed to enable forwarding: <SysctlError>`.
 */
export function enableForwarding(family: 4 | 6): void {
  try {
    if (family === 4) sysctlSet('net/ipv4/ip_forward', '1');
    else sysctlSet('net/ipv6/conf/all/forwarding', '1');
  } catch (e) {
    throw new Error(`failed to enable forwarding: ${errorMessage(e)}`, { cause: e });
  }
}
