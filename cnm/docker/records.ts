// The Docker plugin's records on disk, so that a restart (or kill -9) loses nothing: dockerd never
// replays CreateNetwork or re-activates a plugin (cnm-shim.md §5.5.3), so the next call may be a
// Join or DeleteEndpoint for an endpoint an earlier process created. Layout under <state>/docker
// (RecordDir files of the CNM library's store.ts, named by 64-hex IDs):
//   networks/<NetworkID>.json   endpoints/<EndpointID>.json   pools/<PoolID>.json
//   lock (held by the running daemon)   cache/ (libcni result cache)
// Host-local stores are the library's <state>/ipam/<network>, generated conflists its <state>/net.d.
// Every record is written atomically (fsync + rename) before the call that made it is answered.
import type { PinnedDir } from '../../shared/linux/files';
import { FileLock } from '../../shared/linux/lock';
import { openStateDir, RecordDir, type NetworkRecord } from '../index';
import type { IPAMData } from './protocol';

/** A Docker network this driver created (CreateNetwork). */
export interface DockerNetworkRecord {
  id: string;
  /** the CNI network list run for each endpoint (a generated bridge network, or `cni.network` from --conf-dir) */
  conflist: string;
  /** true when the chain was generated for this network (its bridge and store are ours to remove) */
  generated: boolean;
  /** generated networks: the CNM library's record of it (bridge driver) */
  model?: NetworkRecord;
  /** `-o k=v` as sent */
  options: Record<string, string>;
  ipv4: IPAMData[];
  ipv6: IPAMData[];
  internal: boolean;
  /** the addresses come from this driver's IPAM (--ipam-driver NAME), not Docker's */
  ownIpam: boolean;
}

/** One endpoint's CNI attachment (CreateEndpoint), its hand-over state and its answer. */
export interface DockerEndpointRecord {
  id: string;
  network: string;
  /** the conflist the ADD ran (DEL runs the same bytes even after the network record is gone) */
  conflist: string;
  /** CNI_IFNAME: also the link's name in the host netns between the hand-over and libnetwork's move */
  ifName: string;
  /** the scratch netns name under /run/netns (CNI_NETNS = /run/netns/<netns>) */
  netns: string;
  /** the capability args and CNI_ARGS the ADD ran with (DEL sends the same) */
  capabilityArgs: Record<string, unknown>;
  args: Array<[string, string]>;
  /** the CreateEndpoint answer's Interface (only fields the request left empty) */
  reply: Record<string, string>;
  /** what Join answers */
  join: { gateway: string; gatewayIPv6: string; staticRoutes: Array<{ Destination: string; RouteType: number; NextHop?: string }> };
  address: string;
  addressIPv6: string;
  mac: string;
  /** the SandboxKey Join was given ("" before Join), and when (ms since the epoch) */
  sandboxKey: string;
  joinedAt?: number;
}

/** An address pool this driver's IPAM handed out (RequestPool). */
export interface PoolRecord {
  id: string; // 64 hex: sha256 of the pool and sub-pool
  pool: string; // CIDR
  subPool: string; // CIDR or ""
  v6: boolean;
  gateway: string; // CIDR
  /** the name of the host-local store (under <state>/ipam) holding this pool's leases */
  store: string;
  /** owner (the endpoint's MAC, "gateway", an aux address) → leased CIDR, so a re-sent request finds its lease */
  leases: Record<string, string>;
}

export class PluginState {
  readonly path: string;
  /** the libcni result cache directory */
  readonly cacheDir: string;
  /** host-local stores, one per network or pool: the CNM library's <state>/ipam */
  readonly ipamDir: string;
  /** the CNM library's <state>/net.d: generated networks' conflists, for cnitool */
  readonly netDir: PinnedDir;
  readonly networks: RecordDir<DockerNetworkRecord>;
  readonly endpoints: RecordDir<DockerEndpointRecord>;
  readonly pools: RecordDir<PoolRecord>;
  /** the `cnm` CLI's networks on the same state dir (<state>/networks), for the bridge driver's uniqueness check */
  readonly cnmNetworks: RecordDir<NetworkRecord>;
  private readonly top: PinnedDir;
  private readonly root: PinnedDir;
  private lock: FileLock | undefined;

  /**
   * Opens (creating, 0700) `<stateDir>/docker` and its record directories. Throws CnmError/FileError
   * when something that is not a directory is in the way.
   */
  constructor(stateDir: string) {
    this.top = openStateDir(stateDir);
    this.root = this.top.subdir('docker', { create: 0o700 });
    this.path = this.root.path;
    this.networks = RecordDir.open(this.root, 'networks');
    this.endpoints = RecordDir.open(this.root, 'endpoints');
    this.pools = RecordDir.open(this.root, 'pools');
    this.netDir = this.top.subdir('net.d', { create: 0o700 });
    this.cnmNetworks = RecordDir.open(this.top, 'networks');
    const made = (dir: PinnedDir, name: string): string => {
      const d = dir.subdir(name, { create: 0o700 });
      d.close();
      return d.path;
    };
    this.cacheDir = made(this.root, 'cache');
    this.ipamDir = made(this.top, 'ipam');
  }

  /**
   * Takes the daemon's lock for as long as the process lives: a second daemon on the same state
   * directory would run the same endpoints' DELs. Throws CniError 11 naming the lock when held.
   */
  async lockInstance(): Promise<void> {
    this.lock = FileLock.inDir(this.root, 'lock', 0o600, 100, 'another docker-plugin runs on this --state-dir');
    await this.lock.acquire();
  }

  close(): void {
    this.lock?.close();
    this.netDir.close();
    this.root.close();
    this.top.close();
  }
}
