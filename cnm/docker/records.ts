// The Docker plugin's records on disk, so that a restart (or kill -9) loses nothing: dockerd never
// replays CreateNetwork or re-activates a plugin (cnm-shim.md §5.5.3), so the next call may be a
// Join or DeleteEndpoint for an endpoint an earlier process created. Layout under <state>/docker:
//   networks/<NetworkID>.json   endpoints/<EndpointID>.json   pools/<PoolID>.json
//   lock (held by the running daemon)   cache/ (libcni result cache)   ipam/ (host-local stores)
// Every record is written atomically (fsync + rename) before the call that made it is answered.
import { PinnedDir, FileError } from '../../shared/linux/files';
import { FileLock } from '../../shared/linux/lock';
import type { IPAMData } from './protocol';

const MAX_RECORD = 1 << 20;
const ID_RE = /^[0-9a-f]{64}$/;

/** A Docker network this driver created (CreateNetwork). */
export interface NetworkRecord {
  id: string;
  /** the CNI network list run for each endpoint (a generated bridge network, or `cni.network` from --conf-dir) */
  conflist: string;
  /** true when the chain was generated for this network (its bridge and store are ours to remove) */
  generated: boolean;
  /** the generated bridge's name (generated networks only) */
  bridge?: string;
  /** `-o k=v` as sent */
  options: Record<string, string>;
  ipv4: IPAMData[];
  ipv6: IPAMData[];
  internal: boolean;
  /** the addresses come from this driver's IPAM (--ipam-driver NAME), not Docker's */
  ownIpam: boolean;
}

/** One endpoint's CNI attachment (CreateEndpoint), its hand-over state and its answer. */
export interface EndpointRecord {
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
  id: string;
  pool: string; // CIDR
  subPool: string; // CIDR or ""
  v6: boolean;
  gateway: string; // CIDR
  /** the host-local network name whose store holds this pool's leases */
  store: string;
}

export class PluginState {
  readonly path: string;
  /** the libcni result cache directory */
  readonly cacheDir: string;
  /** the data directory of the generated networks' and pools' host-local stores */
  readonly ipamDir: string;
  private readonly root: PinnedDir;
  private readonly dirs: Record<'networks' | 'endpoints' | 'pools', PinnedDir>;
  private lock: FileLock | undefined;

  /**
   * Opens (creating, 0700) `<stateDir>/docker` and its record directories. Throws FileError when
   * something that is not a directory is in the way.
   */
  constructor(stateDir: string) {
    const top = PinnedDir.open(stateDir, { create: 0o700, followSymlinks: true });
    try {
      this.root = top.subdir('docker', { create: 0o700 });
    } finally {
      top.close();
    }
    this.path = this.root.path;
    this.dirs = {
      networks: this.root.subdir('networks', { create: 0o700 }),
      endpoints: this.root.subdir('endpoints', { create: 0o700 }),
      pools: this.root.subdir('pools', { create: 0o700 }),
    };
    for (const d of Object.values(this.dirs)) d.cleanupTemp();
    const made = (name: string): string => {
      const d = this.root.subdir(name, { create: 0o700 });
      d.close();
      return d.path;
    };
    this.cacheDir = made('cache');
    this.ipamDir = made('ipam');
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
    for (const d of Object.values(this.dirs)) d.close();
    this.root.close();
  }

  private read<T>(dir: 'networks' | 'endpoints' | 'pools', id: string): T | null {
    const data = this.dirs[dir].read(`${id}.json`, MAX_RECORD);
    if (!data) return null;
    try {
      return JSON.parse(data.toString()) as T;
    } catch {
      throw new FileError('EINVAL', `${this.dirs[dir].path}/${id}.json`, 'is not valid JSON (a damaged record)');
    }
  }
  private write(dir: 'networks' | 'endpoints' | 'pools', id: string, rec: unknown): void {
    this.dirs[dir].writeAtomic(`${id}.json`, JSON.stringify(rec));
  }
  private list(dir: 'networks' | 'endpoints' | 'pools', valid: (id: string) => boolean): string[] {
    return this.dirs[dir]
      .list()
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .filter(valid)
      .sort();
  }

  network(id: string): NetworkRecord | null {
    return this.read<NetworkRecord>('networks', checkId(id));
  }
  saveNetwork(r: NetworkRecord): void {
    this.write('networks', checkId(r.id), r);
  }
  removeNetwork(id: string): void {
    this.dirs.networks.unlink(`${checkId(id)}.json`);
  }
  networkIds(): string[] {
    return this.list('networks', (id) => ID_RE.test(id));
  }

  endpoint(id: string): EndpointRecord | null {
    return this.read<EndpointRecord>('endpoints', checkId(id));
  }
  saveEndpoint(r: EndpointRecord): void {
    this.write('endpoints', checkId(r.id), r);
  }
  removeEndpoint(id: string): void {
    this.dirs.endpoints.unlink(`${checkId(id)}.json`);
  }
  endpointIds(): string[] {
    return this.list('endpoints', (id) => ID_RE.test(id));
  }

  pool(id: string): PoolRecord | null {
    return this.read<PoolRecord>('pools', checkPoolId(id));
  }
  savePool(r: PoolRecord): void {
    this.write('pools', checkPoolId(r.id), r);
  }
  removePool(id: string): void {
    this.dirs.pools.unlink(`${checkPoolId(id)}.json`);
  }
  poolIds(): string[] {
    return this.list('pools', (id) => POOL_ID_RE.test(id));
  }
}

function checkId(id: string): string {
  if (!ID_RE.test(id)) throw new FileError('EBADNAME', JSON.stringify(id), 'is not a 64-hex-digit ID');
  return id;
}

/** Pool IDs are ours: "pool-" + 16 hex digits of the pool's hash (a safe file name by construction). */
export const POOL_ID_RE = /^pool-[0-9a-f]{16}$/;

function checkPoolId(id: string): string {
  if (!POOL_ID_RE.test(id)) throw new FileError('EBADNAME', JSON.stringify(id), 'is not a pool ID of this driver');
  return id;
}
