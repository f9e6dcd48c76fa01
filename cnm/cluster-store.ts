// `cnm --cluster-store etcd://IP:2379`: global networks in etcd (libnetwork's --cluster-store), next to
// the overlay agents' keys (overlay/network.ts has the layout). Loaded only when the flag is given,
// so cnm without it never loads the etcd client.
//   <prefix>cnm/networks/<id>                    the CNM record of a global network (JSON NetworkRecord)
//   <prefix>cnm/endpoints/<network>/<endpoint>   {"host","sandbox"}: an endpoint joined on some host
import { hostname } from 'node:os';
import type { Etcd3 } from 'etcd3';
import { connectEtcd, etcdFailure, parseEndpoints } from '../overlay/etcd';
import { DEFAULT_PREFIX } from '../overlay/network';
import { overlayDriver } from './drivers/overlay';
import type { Driver } from './drivers/driver';
import { CnmError } from './errors';
import { ID_RE, type NetworkRecord, type Scope } from './model';
import type { NetworkStore } from './store';

/** The etcd of the cluster store with the places the overlay driver needs. */
export interface Cluster {
  client: Etcd3;
  hosts: string[];
  prefix: string;
  /** the overlay agent's --state-dir on this host (its host leases) */
  overlayStateDir: string;
  /** this host's name in endpoint keys when the agent's lease does not say it (the hostname) */
  host: string;
}

export const cnmNetworksPrefix = (c: Cluster): string => `${c.prefix}cnm/networks/`;
export const cnmEndpointsPrefix = (c: Cluster, network: string): string => `${c.prefix}cnm/endpoints/${network}/`;

/** An etcd call whose failure is a CnmError naming the endpoints. */
export async function etcdCall<T>(c: Cluster, what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw new CnmError('failed', `${what}: ${etcdFailure(c.hosts, e)}`, { cause: e });
  }
}

/** Global networks as etcd keys. */
export class EtcdNetworkStore implements NetworkStore {
  readonly scope: Scope = 'global';
  constructor(private readonly c: Cluster) {}

  async list(): Promise<NetworkRecord[]> {
    const all = await etcdCall(this.c, 'listing global networks', this.c.client.getAll().prefix(cnmNetworksPrefix(this.c)).strings());
    return Object.values(all).flatMap((v) => parse(v));
  }

  async get(id: string): Promise<NetworkRecord | null> {
    if (!ID_RE.test(id)) return null;
    const v = await etcdCall(this.c, `reading global network ${id}`, this.c.client.get(`${cnmNetworksPrefix(this.c)}${id}`).string());
    return v === null ? null : (parse(v)[0] ?? null);
  }

  async put(n: NetworkRecord): Promise<void> {
    await etcdCall(this.c, `storing global network ${JSON.stringify(n.name)}`, this.c.client.put(`${cnmNetworksPrefix(this.c)}${n.id}`).value(JSON.stringify(n)).exec());
  }

  async remove(id: string): Promise<void> {
    await etcdCall(this.c, `removing global network ${id}`, this.c.client.delete().key(`${cnmNetworksPrefix(this.c)}${id}`).exec());
  }
}

/** A record that does not parse is skipped (never a crash of `network ls`). */
function parse(v: string): NetworkRecord[] {
  try {
    const r = JSON.parse(v) as NetworkRecord;
    return r && typeof r.name === 'string' && ID_RE.test(r.id) ? [{ ...r, scope: 'global' }] : [];
  } catch {
    return [];
  }
}

/**
 * What `--cluster-store URL [--overlay-state-dir DIR]` adds to a controller: the global store and
 * the overlay driver. Throws CnmError 'invalid' naming a bad URL.
 */
export async function clusterOptions(url: string, overlayStateDir: string): Promise<{ stores: { global: NetworkStore }; drivers: Driver[] }> {
  let hosts: string[];
  try {
    hosts = parseEndpoints('--cluster-store', url);
  } catch (e) {
    throw new CnmError('invalid', (e as Error).message);
  }
  const c: Cluster = { client: await connectEtcd(hosts), hosts, prefix: DEFAULT_PREFIX, overlayStateDir, host: hostname() };
  return { stores: { global: new EtcdNetworkStore(c) }, drivers: [overlayDriver(c)] };
}
