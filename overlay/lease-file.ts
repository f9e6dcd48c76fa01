// The host lease the agent writes for each overlay network, <stateDir>/<network>.json, and the only
// thing the per-pod plugin and the CNM driver read: the pod path never talks to etcd (issue 13).
// Written atomically (fsync, rename) 0600 in a 0700 directory; read without following a symlink.
import { mkdirSync, unlinkSync } from 'node:fs';
import { FileError, readRegularFile, writeFileAtomic } from '../shared/linux/files';
import { formatCIDR, parseCIDR, type IPNet } from '../shared/ip';
import { isNetworkName } from './network';

export const DEFAULT_STATE_DIR = '/run/cnikit/overlay';

/** What <stateDir>/<network>.json holds. */
export interface HostLease {
  network: string;
  /** the whole overlay: pods route it through their gateway */
  subnet: IPNet;
  /** this host's share: pods' addresses come from it */
  hostSubnet: IPNet;
  vni: number;
  /** pod MTU = underlay MTU − 50 */
  mtu: number;
  /** the bridge pods of this network hang on */
  bridge: string;
  /** the agent's host name */
  host: string;
}

const MAX_BYTES = 4096;

/** The lease file's path; throws Error naming the network when it cannot be a file name. */
export function leasePath(stateDir: string, network: string): string {
  if (!isNetworkName(network)) throw new Error(`invalid overlay network name ${JSON.stringify(network)}`);
  return `${stateDir.replace(/\/+$/, '')}/${network}.json`;
}

export function encodeLease(l: HostLease): string {
  return `${JSON.stringify({ ...l, subnet: formatCIDR(l.subnet), hostSubnet: formatCIDR(l.hostSubnet) })}\n`;
}

/** Writes the lease atomically, creating stateDir (0700) if needed. Throws FileError. */
export function writeLease(stateDir: string, l: HostLease): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(leasePath(stateDir, l.network), encodeLease(l));
}

/** Removes the lease file; a missing one is fine. */
export function removeLease(stateDir: string, network: string): void {
  try {
    unlinkSync(leasePath(stateDir, network));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * Reads the lease of `network` from stateDir: null when there is none (ENOENT). Throws FileError
 * for an unreadable file (a symlink, too large) and Error naming the file when its content is not a lease.
 */
export function readLease(stateDir: string, network: string): HostLease | null {
  const path = leasePath(stateDir, network);
  let data: Buffer;
  try {
    data = readRegularFile(path, MAX_BYTES);
  } catch (e) {
    if (e instanceof FileError && e.code === 'ENOENT') return null;
    throw e;
  }
  const bad = (): never => {
    throw new Error(`${path} is not an overlay lease`);
  };
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
  } catch {
    return bad();
  }
  const subnet = typeof raw.subnet === 'string' ? parseCIDR(raw.subnet) : null;
  const hostSubnet = typeof raw.hostSubnet === 'string' ? parseCIDR(raw.hostSubnet) : null;
  const { vni, mtu, bridge, host } = raw;
  if (raw.network !== network || !subnet || !hostSubnet || typeof vni !== 'number' || typeof mtu !== 'number' || typeof bridge !== 'string' || typeof host !== 'string') return bad();
  return { network, subnet, hostSubnet, vni, mtu, bridge, host };
}
