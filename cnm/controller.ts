// The CNM model (libnetwork's NetworkController, Network, Endpoint, Sandbox) on our CNI runner:
// driver registers → network → endpoint (addresses allocated) → join sandbox (CNI ADD); teardown
// in reverse (leave = CNI DEL with the cached result, endpoint delete releases the addresses,
// network delete). Every object is a record on disk and every change happens under one flock on
// the state dir, so a second process (or a restarted one) sees exactly the same model, and a
// record left half-done by a killed process is finished by the next one that touches it.
import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Runner } from '../runner/runner';
import type { Executor } from '../shared/cni/exec';
import { parseCIDR, type IPNet } from '../shared/ip';
import type { PinnedDir } from '../shared/linux/files';
import { FileLock } from '../shared/linux/lock';
import { createLogger, type Logger } from '../shared/log';
import { createNamedNetns, deleteNamedNetns } from '../shared/linux/netns';
import { listLinks, listRoutes, setLinkUp, withNetlink } from '../shared/linux/netlink';
import { CnmError, conflict, failed, invalid, notFound } from './errors';
import { DEFAULT_ADDRESS_POOLS, NetworkIpam, overlappingSubnets, pickSubnet, resolveIpamConfig, type AddressPool, type EndpointIpam, type IpamRequest } from './ipam';
import { newID, now, validateName, validateSandboxName, type EndpointRecord, type NetworkRecord, type SandboxRecord, type Scope } from './model';
import { LocalNetworkStore, openStateDir, RecordDir, type NetworkStore } from './store';
import type { Driver, DriverContext, JoinRequest } from './drivers/driver';
import { builtinDrivers } from './drivers/registry';

export const DEFAULT_STATE_DIR = '/var/lib/cnikit/cnm';
export const DEFAULT_NETNS_DIR = '/run/netns';
/** Docker's predefined networks: always there, never removed. */
export const PREDEFINED: Readonly<Record<string, string>> = { host: 'host', none: 'null' };

export interface ControllerOptions {
  stateDir?: string; // default DEFAULT_STATE_DIR
  cniPath: string[];
  confDir?: string; // for the cni driver; default /etc/cni/net.d
  cacheDir?: string; // CNI result cache; default the runner's (CNI_CACHEDIR, else /var/lib/cni)
  netnsDir?: string; // where sandbox netns are bind-mounted; default /run/netns
  executor?: Executor; // how plugins run (in-process for our own: plugins/registry ownPluginsExecutor)
  timeoutMs?: number; // per plugin execution (runner); default 60 s
  lockTimeoutMs?: number; // waiting for another cnm process; default 120 s
  /** Network stores by scope; 'local' defaults to files under the state dir. */
  stores?: Partial<Record<Scope, NetworkStore>>;
  drivers?: Driver[]; // registered after the built-in ones (same name replaces)
  /** Steps with timings at debug (CNIKIT_LOG=debug, as the plugins); default: silent. */
  log?: Logger;
  /** Subnets for networks created without --subnet; default dockerd's (DEFAULT_ADDRESS_POOLS). */
  defaultAddressPools?: readonly AddressPool[];
}

export interface NetworkCreateOptions {
  ipam?: Partial<IpamRequest>;
  ipv6?: boolean;
  internal?: boolean;
  options?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface EndpointCreateOptions {
  ipv4?: string; // requested address (--ip)
  ipv6?: string; // --ip6
  sandboxID?: string; // made for this sandbox (connect): a crash before the join is finished by the next cleanup
}

export interface SandboxCreateOptions {
  hostNetwork?: boolean; // share the netns cnm runs in (docker run --network host)
}

/** One `Containers` entry of `docker network inspect`. */
export interface InspectContainer {
  Name: string;
  EndpointID: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
}

export class NetworkController {
  private readonly drivers = new Map<string, Driver>();
  private readonly stores: Partial<Record<Scope, NetworkStore>>;
  private readonly lock: FileLock;
  private readonly held = new AsyncLocalStorage<boolean>();
  readonly ctx: DriverContext;
  readonly endpointsDir: RecordDir<EndpointRecord>;
  readonly sandboxesDir: RecordDir<SandboxRecord>;
  readonly stateDir: string;
  readonly netnsDir: string;
  private readonly pools: readonly AddressPool[];
  readonly log: Logger;

  private constructor(state: PinnedDir, o: ControllerOptions) {
    this.pools = o.defaultAddressPools ?? DEFAULT_ADDRESS_POOLS;
    this.log = o.log ?? createLogger({ level: 'off', write: () => undefined, name: 'cnm' });
    this.stateDir = state.path;
    this.netnsDir = o.netnsDir ?? DEFAULT_NETNS_DIR;
    this.lock = FileLock.inDir(state, 'lock', 0o600, o.lockTimeoutMs ?? 120_000, `another cnm process holds ${state.path}/lock`);
    this.endpointsDir = RecordDir.open(state, 'endpoints');
    this.sandboxesDir = RecordDir.open(state, 'sandboxes');
    this.stores = { local: new LocalNetworkStore(RecordDir.open(state, 'networks')), ...o.stores };
    const ipamDir = state.subdir('ipam', { create: 0o700 });
    ipamDir.close();
    this.ctx = {
      runner: new Runner({ path: o.cniPath, executor: o.executor, cacheDir: o.cacheDir, timeoutMs: o.timeoutMs }),
      cniPath: o.cniPath,
      confDir: o.confDir ?? '/etc/cni/net.d',
      netDir: state.subdir('net.d', { create: 0o700 }),
      ipamDataDir: join(state.path, 'ipam'),
      networks: () => this.networkRecords(),
    };
    for (const d of [...builtinDrivers, ...(o.drivers ?? [])]) this.registerDriver(d);
  }

  /**
   * Opens the model in `stateDir` (created 0700) and makes sure the predefined `host` and `none`
   * networks exist. Throws CnmError.
   */
  static async open(o: ControllerOptions): Promise<NetworkController> {
    const c = new NetworkController(openStateDir(o.stateDir ?? DEFAULT_STATE_DIR), o);
    const have = new Set((await c.networkRecords()).map((n) => n.name));
    if (Object.keys(PREDEFINED).some((n) => !have.has(n)))
      await c.locked(async () => {
        const again = new Set((await c.networkRecords()).map((n) => n.name));
        for (const [name, driver] of Object.entries(PREDEFINED)) if (!again.has(name)) await c.createNetworkLocked(driver, name, {});
      });
    return c;
  }

  registerDriver(d: Driver): void {
    this.drivers.set(d.name, d);
  }

  driver(name: string): Driver {
    const d = this.drivers.get(name);
    if (!d) throw invalid(`unknown driver ${JSON.stringify(name)} (registered: ${[...this.drivers.keys()].join(', ')})`);
    return d;
  }

  /** Runs `fn` holding the state lock (re-entrant within one async call chain). */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held.getStore()) return fn();
    await this.log.step('state lock', () => this.lock.acquire());
    try {
      return await this.held.run(true, fn);
    } finally {
      this.lock.unlock();
    }
  }

  private store(scope: Scope): NetworkStore {
    const s = this.stores[scope];
    if (!s) throw invalid(`no ${scope} network store is configured (global networks need a cluster store)`);
    return s;
  }

  /** Every network of every configured store, in creation order. */
  async networkRecords(): Promise<NetworkRecord[]> {
    const all: NetworkRecord[] = [];
    for (const s of Object.values(this.stores)) all.push(...(await s!.list()));
    return all.sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name));
  }

  async networks(): Promise<Network[]> {
    return (await this.networkRecords()).map((r) => new Network(this, r));
  }

  /**
   * The network `ref` names: its name, its full ID or a unique ID prefix (docker's lookup order).
   * Throws CnmError 'not-found' (`no such network "x"`) or 'invalid' for an ambiguous prefix.
   */
  async network(ref: string): Promise<Network> {
    return new Network(this, pick('network', ref, await this.networkRecords()));
  }

  /** Creates a network with `driver` (libnetwork NewNetwork). Throws CnmError. */
  async newNetwork(driver: string, name: string, o: NetworkCreateOptions = {}): Promise<Network> {
    return this.locked(() => this.createNetworkLocked(driver, name, o));
  }

  private async createNetworkLocked(driverName: string, name: string, o: NetworkCreateOptions): Promise<Network> {
    validateName('network', name);
    const d = this.driver(driverName);
    const existing = await this.networkRecords();
    if (existing.some((n) => n.name === name)) throw conflict(`network with name ${JSON.stringify(name)} already exists`);
    if (d.hostNetwork && existing.some((n) => this.drivers.get(n.driver)?.hostNetwork)) throw conflict(`only one instance of the ${JSON.stringify(d.name)} network is allowed`);
    const ipv6 = o.ipv6 ?? false;
    const req: IpamRequest = { subnets: [], ipRanges: [], gateways: [], auxAddresses: {}, ...o.ipam, ipv6 };
    if (!d.usesIpam && (req.subnets.length || req.ipRanges.length || req.gateways.length || Object.keys(req.auxAddresses).length))
      throw invalid(`network ${JSON.stringify(name)}: the ${d.name} driver takes no IPAM flags (--subnet, --ip-range, --gateway, --aux-address)`);
    if (d.usesIpam && !req.subnets.length) {
      // Docker picks a free subnet from its default pools: one no network and no host route overlaps.
      const taken = [...existing.flatMap((n) => n.ipam.config.map((p) => parseCIDR(p.subnet)!)), ...hostRoutes()];
      const picked = pickSubnet(this.pools, taken);
      if (!picked) throw conflict(`network ${JSON.stringify(name)}: no free subnet left in the default address pools; give --subnet`);
      req.subnets = [picked];
    }
    const config = resolveIpamConfig(req);
    for (const n of existing) {
      const o2 = overlappingSubnets(config, n.ipam.config);
      if (o2) throw conflict(`subnet ${o2[0]} overlaps network ${JSON.stringify(n.name)} (${o2[1]})`);
    }
    const rec: NetworkRecord = {
      id: newID(),
      name,
      driver: d.name,
      scope: d.scope,
      created: now(),
      ipv6,
      internal: o.internal ?? false,
      ipam: { driver: 'default', options: {}, config },
      options: { ...o.options },
      labels: { ...o.labels },
      data: {},
    };
    const ipam = this.ipamOf(rec);
    try {
      // A store of this name belongs to no network (the name is free): what a create killed before
      // its record was written left. Its leases would block this network's addresses.
      await ipam?.destroy();
      if (ipam) await ipam.reserveAux(rec.id);
      await d.createNetwork(rec, this.ctx);
      await this.store(rec.scope).put(rec);
    } catch (e) {
      // Nothing of a refused network stays: its conflist, its store.
      await d.deleteNetwork(rec, this.ctx).catch(() => undefined);
      await ipam?.destroy();
      throw e instanceof CnmError ? e : failed(`creating network ${JSON.stringify(name)}`, e);
    }
    return new Network(this, rec);
  }

  /** The IPAM of a network whose driver uses the controller's (null otherwise). */
  ipamOf(n: NetworkRecord): EndpointIpam | null {
    const d = this.driver(n.driver);
    if (!d.usesIpam) return null;
    return d.ipam ? d.ipam(n, this.ctx) : new NetworkIpam(this.ctx.ipamDataDir, n.name, n.ipam.config);
  }

  async deleteNetworkRecord(n: NetworkRecord): Promise<void> {
    await this.store(n.scope).remove(n.id);
  }

  async networkRecord(id: string): Promise<NetworkRecord | null> {
    for (const s of Object.values(this.stores)) {
      const r = await s!.get(id);
      if (r) return r;
    }
    return null;
  }

  sandboxes(): Sandbox[] {
    return this.sandboxesDir
      .list()
      .sort((a, b) => a.created.localeCompare(b.created))
      .map((r) => new Sandbox(this, r));
  }

  /** The sandbox `ref` names (name, ID or unique ID prefix). Throws CnmError 'not-found'. */
  sandbox(ref: string): Sandbox {
    return new Sandbox(this, pick('sandbox', ref, this.sandboxesDir.list()));
  }

  /**
   * Creates a sandbox (libnetwork NewSandbox): a new netns bind-mounted at <netnsDir>/<name> with
   * `lo` up, or with `hostNetwork` none (it runs in the netns cnm runs in). The record is written
   * first, so a crash in between leaves something `sandbox rm` finds. Throws CnmError.
   */
  async newSandbox(name: string, o: SandboxCreateOptions = {}): Promise<Sandbox> {
    validateSandboxName(name);
    return this.locked(async () => {
      if (this.sandboxesDir.list().some((s) => s.name === name)) throw conflict(`sandbox with name ${JSON.stringify(name)} already exists`);
      const key = o.hostNetwork ? '' : join(this.netnsDir, name);
      if (key && existsSync(key)) throw conflict(`sandbox ${JSON.stringify(name)}: ${key} already exists (a netns of that name)`);
      const rec: SandboxRecord = { id: newID(), name, key, created: now(), hostNetwork: o.hostNetwork ?? false };
      this.sandboxesDir.write(rec);
      let made = false; // only a netns we made is removed again (never one that appeared meanwhile)
      if (key)
        try {
          this.log.step(`create netns ${key}`, () => {
            createNamedNetns(key);
            made = true;
            withNetlink((nl) => setLinkUp(nl, 'lo'), key);
          });
        } catch (e) {
          try {
            if (made) deleteNamedNetns(key);
          } finally {
            this.sandboxesDir.remove(rec.id);
          }
          throw failed(`creating sandbox ${JSON.stringify(name)}`, e);
        }
      return new Sandbox(this, rec);
    });
  }

  /** Endpoint records, optionally only those of one network or one sandbox. */
  endpointRecords(f: { networkID?: string; sandboxID?: string } = {}): EndpointRecord[] {
    return this.endpointsDir
      .list()
      .filter((e) => (!f.networkID || e.networkID === f.networkID) && (!f.sandboxID || e.sandboxID === f.sandboxID))
      .sort((a, b) => a.created.localeCompare(b.created));
  }

  /**
   * Removes every network without endpoints (predefined ones stay), after finishing endpoints left
   * by a killed process (`joining`) or whose sandbox is gone. Returns the removed networks' names.
   */
  async prune(): Promise<string[]> {
    return this.locked(async () => {
      await this.repair();
      const removed: string[] = [];
      for (const n of await this.networks()) {
        if (PREDEFINED[n.name] || this.endpointRecords({ networkID: n.id }).length) continue;
        await n.delete();
        removed.push(n.name);
      }
      return removed;
    });
  }

  /**
   * Finishes what a killed process left: endpoints still `joining` are left and deleted (CNI DEL
   * is idempotent), endpoints of a sandbox or network that no longer exists are deleted. Must run
   * under the lock (only then is a `joining` record certainly a dead process's).
   */
  async repair(): Promise<void> {
    const sandboxes = new Set(this.sandboxesDir.list().map((s) => s.id));
    for (const e of this.endpointRecords()) {
      // joining, or created for a sandbox by a connect: its process died (we hold the lock)
      const dead = e.state === 'joining' || (e.state === 'created' && e.sandboxID !== undefined);
      const stale = dead || (e.sandboxID !== undefined && !sandboxes.has(e.sandboxID)) || !(await this.networkRecord(e.networkID));
      if (stale) await new Endpoint(this, e).delete({ force: true });
    }
  }
}

/** The routes of the netns cnm runs in that a new network must not overlap (not the default routes). */
function hostRoutes(): IPNet[] {
  return withNetlink((nl) => listRoutes(nl)).filter((r) => r.dst.prefix > 0).map((r) => r.dst);
}

/** name, then full ID, then unique ID prefix (docker's order). */
function pick<T extends { id: string; name: string }>(what: string, ref: string, all: T[]): T {
  const byName = all.find((r) => r.name === ref);
  if (byName) return byName;
  const byID = all.find((r) => r.id === ref);
  if (byID) return byID;
  if (/^[0-9a-f]+$/.test(ref)) {
    const m = all.filter((r) => r.id.startsWith(ref));
    if (m.length === 1) return m[0]!;
    if (m.length > 1) throw invalid(`${what} ID prefix ${JSON.stringify(ref)} is ambiguous (${m.length} ${what}s)`);
  }
  throw notFound(what, ref);
}

export class Network {
  constructor(
    readonly controller: NetworkController,
    readonly record: NetworkRecord,
  ) {}

  get id(): string {
    return this.record.id;
  }
  get name(): string {
    return this.record.name;
  }

  endpoints(): Endpoint[] {
    return this.controller.endpointRecords({ networkID: this.id }).map((r) => new Endpoint(this.controller, r));
  }

  /** The endpoint `ref` names (name, ID or unique prefix) on this network. Throws CnmError 'not-found'. */
  endpoint(ref: string): Endpoint {
    return new Endpoint(this.controller, pick('endpoint', ref, this.controller.endpointRecords({ networkID: this.id })));
  }

  /**
   * Creates an endpoint (libnetwork CreateEndpoint): with the controller's IPAM its addresses are
   * allocated now (requested --ip/--ip6 honoured), as libnetwork does before the driver is called.
   * Throws CnmError ('conflict' for a duplicate name or a taken address).
   */
  async createEndpoint(name: string, o: EndpointCreateOptions = {}): Promise<Endpoint> {
    validateName('endpoint', name);
    const c = this.controller;
    return c.locked(async () => {
      if (c.endpointRecords({ networkID: this.id }).some((e) => e.name === name)) throw conflict(`endpoint with name ${JSON.stringify(name)} already exists in network ${JSON.stringify(this.name)}`);
      const d = c.driver(this.record.driver);
      const ipam = c.ipamOf(this.record);
      const rec: EndpointRecord = { id: newID(), name, networkID: this.id, created: now(), state: 'created', ...(o.sandboxID ? { sandboxID: o.sandboxID } : {}) };
      if (o.ipv4 || o.ipv6) rec.requested = { ...(o.ipv4 ? { ipv4: o.ipv4 } : {}), ...(o.ipv6 ? { ipv6: o.ipv6 } : {}) };
      // The record first: whatever is made for it afterwards (leases, the driver's part) is owned by
      // its ID, so a crash at any point leaves something endpoint delete (or prune) can undo.
      c.endpointsDir.write(rec);
      try {
        if (ipam) {
          const a = await c.log.step(`allocate addresses on ${this.name}`, () => ipam.allocate(rec.id, { ipv4: o.ipv4, ipv6: o.ipv6 }));
          if (a.ipv4) rec.ipv4 = a.ipv4.address;
          if (a.ipv6) rec.ipv6 = a.ipv6.address;
          c.endpointsDir.write(rec);
        }
        if (d.createEndpoint) {
          Object.assign(rec, await d.createEndpoint(this.record, rec, c.ctx));
          c.endpointsDir.write(rec);
        }
      } catch (e) {
        await d.deleteEndpoint?.(this.record, rec, c.ctx).catch(() => undefined);
        await ipam?.release(rec.id);
        c.endpointsDir.remove(rec.id);
        throw e instanceof CnmError ? e : failed(`creating endpoint ${JSON.stringify(name)} on network ${JSON.stringify(this.name)}`, e);
      }
      return new Endpoint(c, rec);
    });
  }

  /**
   * Deletes the network (libnetwork Delete): refused while endpoints exist and for the predefined
   * networks. Removes its conflist, its IPAM store and its record. Throws CnmError.
   */
  async delete(): Promise<void> {
    const c = this.controller;
    await c.locked(async () => {
      if (PREDEFINED[this.name]) throw conflict(`${JSON.stringify(this.name)} is a pre-defined network and cannot be removed`);
      const eps = c.endpointRecords({ networkID: this.id });
      if (eps.length) throw conflict(`network ${JSON.stringify(this.name)} has active endpoints: ${eps.length}`);
      await c.driver(this.record.driver).deleteNetwork(this.record, c.ctx);
      await c.ipamOf(this.record)?.destroy();
      await c.deleteNetworkRecord(this.record);
    });
  }

  /** `docker network inspect` of this network (one array element). */
  inspect(): Record<string, unknown> {
    const r = this.record;
    const c = this.controller;
    const sandboxes = new Map(c.sandboxesDir.list().map((s) => [s.id, s]));
    const containers: Record<string, InspectContainer> = {};
    for (const e of c.endpointRecords({ networkID: this.id })) {
      if (!e.sandboxID) continue;
      containers[e.sandboxID] = { Name: sandboxes.get(e.sandboxID)?.name ?? e.name, EndpointID: e.id, MacAddress: e.mac ?? '', IPv4Address: e.ipv4 ?? '', IPv6Address: e.ipv6 ?? '' };
    }
    return {
      Name: r.name,
      Id: r.id,
      Created: r.created,
      Scope: r.scope,
      Driver: r.driver,
      EnableIPv6: r.ipv6,
      IPAM: {
        Driver: r.ipam.driver,
        Options: r.ipam.options,
        Config: r.ipam.config.map((p) => ({
          Subnet: p.subnet,
          ...(p.ipRange ? { IPRange: p.ipRange } : {}),
          Gateway: p.gateway,
          ...(p.auxAddresses ? { AuxiliaryAddresses: p.auxAddresses } : {}),
        })),
      },
      Internal: r.internal,
      // Docker's swarm-only fields, constant here, so consumers of docker's shape find them.
      Attachable: false,
      Ingress: false,
      ConfigFrom: { Network: '' },
      ConfigOnly: false,
      Containers: containers,
      Options: r.options,
      Labels: r.labels,
    };
  }

  /**
   * `docker network connect`: an endpoint named after the sandbox, joined to it. Throws CnmError;
   * a failed join deletes the endpoint again.
   */
  async connect(sb: Sandbox, o: EndpointCreateOptions = {}): Promise<Endpoint> {
    return this.controller.locked(async () => {
      const sbRec = sb.reload();
      if (this.controller.endpointRecords({ networkID: this.id, sandboxID: sbRec.id }).length)
        throw conflict(`sandbox ${JSON.stringify(sbRec.name)} is already connected to network ${JSON.stringify(this.name)}`);
      const ep = await this.createEndpoint(sbRec.name, { ...o, sandboxID: sbRec.id });
      try {
        await ep.join(sb);
      } catch (e) {
        await ep.delete({ force: true }).catch(() => undefined);
        throw e;
      }
      return ep;
    });
  }

  /** `docker network disconnect`: leave and delete the sandbox's endpoint on this network (also a half-joined one). */
  async disconnect(sb: Sandbox): Promise<void> {
    await this.controller.locked(async () => {
      const eps = this.controller.endpointRecords({ networkID: this.id, sandboxID: sb.id });
      if (!eps.length) throw new CnmError('not-found', `sandbox ${JSON.stringify(sb.name)} is not connected to network ${JSON.stringify(this.name)}`);
      for (const e of eps) await new Endpoint(this.controller, e).delete({ force: true });
    });
  }
}

export class Endpoint {
  constructor(
    readonly controller: NetworkController,
    public record: EndpointRecord,
  ) {}

  get id(): string {
    return this.record.id;
  }
  get name(): string {
    return this.record.name;
  }

  private async network(): Promise<NetworkRecord> {
    const n = await this.controller.networkRecord(this.record.networkID);
    if (!n) throw new CnmError('not-found', `endpoint ${JSON.stringify(this.name)}: its network ${this.record.networkID.slice(0, 12)} no longer exists`);
    return n;
  }

  private save(): void {
    this.controller.endpointsDir.write(this.record);
  }

  /**
   * Joins the sandbox (libnetwork Endpoint.Join): CNI ADD of the network's chain into the
   * sandbox's netns as the next free ethN (the driver may name it otherwise), the default route
   * only when the sandbox has none yet and the network is not internal. Recorded `joining` before
   * the ADD so a crash is finished by the next cleanup. Throws CnmError; a failed join is undone.
   */
  async join(sb: Sandbox): Promise<void> {
    const c = this.controller;
    await c.locked(async () => {
      this.record = c.endpointsDir.read(this.id) ?? this.record;
      const s = sb.reload();
      const before = this.record;
      if (before.state !== 'created') throw conflict(`endpoint ${JSON.stringify(this.name)} is already joined to a sandbox`);
      if (before.sandboxID && before.sandboxID !== s.id) throw conflict(`endpoint ${JSON.stringify(this.name)} was made for another sandbox`);
      const net = await this.network();
      const d = c.driver(net.driver);
      const others = c.endpointRecords({ sandboxID: s.id }).filter((e) => e.id !== this.id);
      const otherNets = await Promise.all(others.map((e) => c.networkRecord(e.networkID)));
      if (d.exclusive && others.length) throw conflict(`sandbox ${JSON.stringify(s.name)} is connected to other networks: the ${JSON.stringify(net.name)} network must be its only one`);
      const excl = otherNets.find((n) => n && c.driver(n.driver).exclusive);
      if (excl) throw conflict(`sandbox ${JSON.stringify(s.name)} is on the ${JSON.stringify(excl.name)} network, which must be its only one`);
      if (!!d.hostNetwork !== s.hostNetwork)
        throw conflict(s.hostNetwork ? `sandbox ${JSON.stringify(s.name)} runs in the host's netns: it can only join the host network` : `the host network needs a sandbox created for it (cnm run --network host), not ${JSON.stringify(s.name)}`);
      // What the netns already has beyond our records (a cnitool attachment's eth0 and default route) counts too.
      const present = s.key ? withNetlink((nl) => ({ links: listLinks(nl).map((l) => l.name), defaultRoute: listRoutes(nl).some((r) => r.dst.prefix === 0) }), s.key) : { links: [], defaultRoute: false };
      const used = new Set([...others.map((e) => e.ifName), ...present.links]);
      let ifName = d.ifName;
      for (let i = 0; !ifName; i++) if (!used.has(`eth${i}`)) ifName = `eth${i}`;
      // The default route: ours to give only with our addresses (a cni chain routes as it likes), on a
      // network with a way out, to a sandbox that has none yet.
      const gateway = d.usesIpam && net.ipam.config.length > 0 && !net.internal && !others.some((e) => e.gateway) && !present.defaultRoute;
      this.record = { ...this.record, state: 'joining', sandboxID: s.id, ifName, gateway };
      this.save();
      const j: JoinRequest = { network: net, endpoint: this.record, sandbox: s, ifName, defaultRoute: !!this.record.gateway };
      try {
        const got = await c.log.step(`${d.name} join ${net.name} ${ifName}`, () => d.join(j, c.ctx));
        this.record = { ...this.record, state: 'joined', ...got };
        this.save();
      } catch (e) {
        this.record = before;
        this.save();
        throw e instanceof CnmError ? e : failed(`joining endpoint ${JSON.stringify(this.name)} to sandbox ${JSON.stringify(s.name)}`, e);
      }
    });
  }

  /**
   * Leaves the sandbox it is joined to (CNI DEL; also for a half-done join). Not joined is an
   * error unless `force`. Throws CnmError; the record keeps its sandbox when DEL fails (retry).
   */
  async leave(sb?: Sandbox, o: { force?: boolean } = {}): Promise<void> {
    const c = this.controller;
    await c.locked(async () => {
      this.record = c.endpointsDir.read(this.id) ?? this.record;
      const r = this.record;
      if (r.state === 'created') {
        if (o.force) return;
        throw conflict(`endpoint ${JSON.stringify(this.name)} is not joined to a sandbox`);
      }
      if (!r.sandboxID) throw new CnmError('failed', `endpoint ${JSON.stringify(this.name)}: record in state ${r.state} names no sandbox`);
      if (sb && sb.id !== r.sandboxID) throw conflict(`endpoint ${JSON.stringify(this.name)} is not joined to sandbox ${JSON.stringify(sb.name)}`);
      const net = await c.networkRecord(r.networkID);
      const sRec = c.sandboxesDir.read(r.sandboxID);
      // The sandbox record may be gone (crash between its removal steps): DEL still runs, in no netns.
      const s: SandboxRecord = sRec ?? { id: r.sandboxID, name: r.name, key: '', created: '', hostNetwork: false };
      if (net) {
        const key = s.key && existsSync(s.key) ? s.key : '';
        const d = c.driver(net.driver);
        await c.log.step(`${d.name} leave ${net.name} ${r.ifName ?? ''}`, () => d.leave({ network: net, endpoint: r, sandbox: { ...s, key }, ifName: r.ifName ?? 'eth0', defaultRoute: !!r.gateway }, c.ctx));
      }
      const { sandboxID: _s, ifName: _i, gateway: _g, mac: _m, ...rest } = r;
      this.record = { ...rest, state: 'created' };
      if (net && !c.driver(net.driver).usesIpam) {
        delete this.record.ipv4;
        delete this.record.ipv6;
      }
      this.save();
    });
  }

  /**
   * Deletes the endpoint (libnetwork Endpoint.Delete): refused while joined unless `force`, which
   * leaves first. Releases its addresses and removes its record.
   */
  async delete(o: { force?: boolean } = {}): Promise<void> {
    const c = this.controller;
    await c.locked(async () => {
      const cur = c.endpointsDir.read(this.id);
      if (!cur) return;
      this.record = cur;
      if (cur.state !== 'created') {
        if (!o.force) throw conflict(`endpoint ${JSON.stringify(this.name)} is joined to a sandbox: leave it first`);
        await this.leave(undefined, { force: true });
      }
      const net = await c.networkRecord(cur.networkID);
      if (net) {
        await c.driver(net.driver).deleteEndpoint?.(net, this.record, c.ctx);
        await c.ipamOf(net)?.release(cur.id);
      }
      c.endpointsDir.remove(cur.id);
    });
  }
}

export class Sandbox {
  constructor(
    readonly controller: NetworkController,
    public record: SandboxRecord,
  ) {}

  get id(): string {
    return this.record.id;
  }
  get name(): string {
    return this.record.name;
  }
  /** The netns path ('' for a host-network sandbox). */
  get key(): string {
    return this.record.key;
  }

  /** The record as on disk now. Throws CnmError 'not-found' when the sandbox was removed. */
  reload(): SandboxRecord {
    const r = this.controller.sandboxesDir.read(this.id);
    if (!r) throw notFound('sandbox', this.name);
    return (this.record = r);
  }

  endpoints(): Endpoint[] {
    return this.controller.endpointRecords({ sandboxID: this.id }).map((r) => new Endpoint(this.controller, r));
  }

  /**
   * Deletes the sandbox (libnetwork Sandbox.Delete): every endpoint leaves and is deleted, then the
   * netns is unmounted and removed, then the record. Idempotent.
   */
  async delete(): Promise<void> {
    const c = this.controller;
    await c.locked(async () => {
      for (const e of this.endpoints()) await e.delete({ force: true });
      if (this.record.key) deleteNamedNetns(this.record.key);
      if (c.sandboxesDir.read(this.id)) c.sandboxesDir.remove(this.id);
    });
  }
}

