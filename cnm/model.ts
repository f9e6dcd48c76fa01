// The records the CNM model keeps on disk (libnetwork's network, endpoint and sandbox objects,
// reduced to what a CNI-backed host needs), their IDs and the name rules.
import { randomHex } from '../shared/crypto';
import { NAME_RE } from '../shared/cni/skel';
import { invalid } from './errors';

/** 'local': the network exists on this host only; 'global': it lives in a cluster store (overlay). */
export type Scope = 'local' | 'global';

/** One IPAM pool as `docker network inspect` shows it (IPAM.Config[i]); addresses without prefix except Subnet/IPRange. */
export interface IpamPoolConfig {
  subnet: string;
  ipRange?: string;
  gateway: string;
  auxAddresses?: Record<string, string>;
}

export interface NetworkRecord {
  id: string; // 64 hex
  name: string;
  driver: string;
  scope: Scope;
  created: string; // RFC 3339
  ipv6: boolean;
  internal: boolean;
  ipam: { driver: string; options: Record<string, string>; config: IpamPoolConfig[] };
  options: Record<string, string>; // -o k=v (driver options)
  labels: Record<string, string>;
  /** Driver-owned data (the bridge's device name, the cni driver's source conflist, ...). */
  data: Record<string, unknown>;
}

/**
 * 'joining': recorded before the CNI ADD starts and 'joined' after it succeeded; a 'joining' record
 * seen under the state lock belongs to a process that died mid-join (kill -9) and is undone by the
 * next disconnect, prune or sandbox rm.
 */
export type EndpointState = 'created' | 'joining' | 'joined';

export interface EndpointRecord {
  id: string; // 64 hex
  name: string;
  networkID: string;
  created: string;
  ipv4?: string; // CIDR, allocated at createEndpoint (IPAM drivers) or learnt at join
  ipv6?: string;
  mac?: string;
  requested?: { ipv4?: string; ipv6?: string }; // --ip/--ip6 (drivers without the controller's IPAM pass them to the chain)
  state: EndpointState;
  /**
   * The sandbox it is joined to ('joining', 'joined'), or, while 'created', the one `connect`
   * made it for: under the state lock such a record means the connect died before its join.
   */
  sandboxID?: string;
  ifName?: string; // ethN in the sandbox
  gateway?: boolean; // this endpoint owns the sandbox's default route
}

export interface SandboxRecord {
  id: string; // 64 hex
  name: string;
  key: string; // the netns path (/run/netns/<name>); '' for a sandbox in the host's netns
  created: string;
  hostNetwork: boolean;
}

export const ID_RE = /^[0-9a-f]{64}$/;

export const newID = (): string => randomHex(32);

export const now = (): string => new Date().toISOString();

/** Docker's name rule (and CNI's network-name rule, so a network name can name its conflist and store). */
export function validateName(what: string, name: string): string {
  if (!NAME_RE.test(name) || name.length > 128) throw invalid(`invalid ${what} name ${JSON.stringify(name)}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)`);
  return name;
}

/** Sandbox names also name a file under /run/netns and the netns `ip netns` shows. */
export function validateSandboxName(name: string): string {
  validateName('sandbox', name);
  if (name.length > 64) throw invalid(`invalid sandbox name ${JSON.stringify(name)}: at most 64 characters`);
  return name;
}

/** Parses `k=v` pairs (-o, --label, --aux-address); `what` names the flag in errors. */
export function keyValues(what: string, pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw invalid(`invalid ${what} ${JSON.stringify(p)}: expected key=value`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}
