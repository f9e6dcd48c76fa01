// The overlay agent: one per host, for every overlay network defined in etcd. It holds one etcd
// lease (TTL --lease-ttl, kept alive), leases a host subnet per network with an etcd transaction
// (two agents never get the same one), creates the network's vxlan device, writes the host lease
// file the per-pod plugin reads, and programs route/neighbour/FDB entries for every other host's
// subnet as hosts come and go (overlay/dataplane.ts).
//
// Failures: the data plane lives in the kernel and is only ever changed from a complete view of etcd
// (a snapshot plus its watch), so while etcd is unreachable nothing is torn down; pods keep their
// connectivity and new pods on this host still get addresses from the lease file. The agent retries
// with exponential backoff, capped at a third of the TTL so that it is back before the lease etcd
// keeps for it runs out, and then re-derives everything from etcd and the kernel.
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import type { Etcd3, IKeyValue, Lease, Watcher } from 'etcd3';
import { errorMessage } from '../shared/cni/errors';
import type { Logger } from '../shared/log';
import { openNetlink } from '../shared/linux/netlink/socket';
import type { NetlinkSocket } from '../shared/linux/netlink/socket';
import { enableForwarding } from '../shared/linux/sysctl';
import { formatCIDR, formatIP, ipEqual, networkOf, type IP, type IPNet } from '../shared/ip';
import { deviceVnis, ensureDevice, findUnderlay, pruneBridgeAddresses, reconcilePeers, removeDevice, setVtepAddress, type Peer, type Underlay } from './dataplane';
import { connectEtcd, etcdFailure } from './etcd';
import { encodeLease, readLease, removeLease, writeLease, type HostLease } from './lease-file';
import {
  MIN_POD_MTU,
  VXLAN_OVERHEAD,
  bridgeName,
  decodeDef,
  decodeHost,
  encodeHost,
  hostSubnetAt,
  hostSubnetCount,
  isNetworkName,
  overlaps,
  subnetFromKey,
  subnetKey,
  type HostRecord,
  type NetworkDef,
} from './network';

export interface AgentOptions {
  /** etcd endpoints (parseEndpoints) */
  hosts: string[];
  underlayIP: IP;
  /** this host's name in etcd */
  name: string;
  stateDir: string;
  /** etcd lease TTL, seconds */
  ttl: number;
  /** key prefix, ending in "/" */
  prefix: string;
  log: Logger;
}

interface HostEntry {
  subnet: IPNet;
  rec: HostRecord;
  lease: string;
  modRevision: string;
}

interface NetState {
  def?: NetworkDef;
  /** why the definition cannot be used (logged once) */
  defError?: string;
  /** subnets/<name>/... by subnet (CIDR text) */
  hosts: Map<string, HostEntry>;
  /** the definition key's create revision: of two networks with one VNI, the older keeps it */
  created?: bigint;
}

const FIRST_BACKOFF_MS = 200;
const RESYNC_MS = 5000; // repairs kernel drift and retries a claim that found no free subnet
const MAX_CLAIM_TRIES = 16; // per sync: a lost race re-reads the state through the watch

export class OverlayAgent {
  private client!: Etcd3;
  private nl: NetlinkSocket;
  private underlay!: Underlay;
  private mtu = 0;
  private nets = new Map<string, NetState>();
  private leaseId = '';
  private stopped = false;
  /** our subnets/ keys that are no host subnet of their network's definition (changed or removed): deleted by sync() */
  private staleKeys = new Set<string>();
  /** the current session got its lease, snapshot and watch */
  private sessionUp = false;
  private stopWaiters: Array<() => void> = [];
  private dirty = false;
  private wake: (() => void) | undefined;
  /** what was last logged per network, so a steady problem is logged once */
  private said = new Map<string, string>();

  constructor(private readonly o: AgentOptions) {
    this.nl = openNetlink();
  }

  /**
   * Checks the host (underlay address, MTU, state dir) and runs until stop(). Throws Error for bad
   * input (no link has the underlay address, the underlay MTU leaves less than MIN_POD_MTU for pods,
   * the state dir is not a directory and cannot be made one).
   */
  async run(): Promise<void> {
    this.underlay = findUnderlay(this.nl, this.o.underlayIP);
    this.mtu = this.underlay.mtu - VXLAN_OVERHEAD;
    if (this.mtu < MIN_POD_MTU)
      throw new Error(`MTU ${this.underlay.mtu} of underlay ${this.underlay.name} is too small: VXLAN takes ${VXLAN_OVERHEAD} bytes and pods need at least ${MIN_POD_MTU}`);
    prepareStateDir(this.o.stateDir);
    enableForwarding(4);
    this.client = await connectEtcd(this.o.hosts);
    const log = this.o.log;
    log.info(`host ${this.o.name}, underlay ${formatIP(this.underlay.ip)} on ${this.underlay.name} (MTU ${this.underlay.mtu}, pods ${this.mtu}), etcd ${this.o.hosts.join(',')}`);
    const cap = Math.max(1000, Math.round((this.o.ttl * 1000) / 3)); // whole ms: the log says it
    let backoff = FIRST_BACKOFF_MS;
    while (!this.stopped) {
      const t0 = Date.now();
      this.sessionUp = false;
      try {
        await this.session();
      } catch (e) {
        if (this.stopped) break;
        log.warn(`${etcdFailure(this.o.hosts, e)}; retrying in ${backoff} ms`);
      }
      if (this.stopped) break;
      // Start over only after a session that was up for a while: a failed attempt can also take
      // longer than the cap (a call deadline per endpoint), and must not reset the backoff.
      if (this.sessionUp && Date.now() - t0 > cap) backoff = FIRST_BACKOFF_MS;
      await this.sleep(backoff);
      backoff = Math.min(backoff * 2, cap);
    }
  }

  /** Ends run(): the data plane and the etcd keys stay (the keys expire with the lease unless an agent takes them over). */
  stop(): void {
    this.stopped = true;
    for (const w of this.stopWaiters.splice(0)) w();
    this.wake?.();
  }

  close(): void {
    this.client?.close();
    this.nl.close();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.stopWaiters.push(done);
    });
  }

  /** One connection: lease, snapshot, watch; resolves on stop(), throws when etcd fails us. */
  private async session(): Promise<void> {
    const lease: Lease = this.client.lease(this.o.ttl);
    let watcher: Watcher | undefined;
    let fail: (e: Error) => void = () => {};
    const failed = new Promise<never>((_, reject) => (fail = reject));
    failed.catch(() => {});
    lease.on('lost', (e) => fail(new Error(`lease lost: ${errorMessage(e)}`)));
    try {
      this.leaseId = await lease.grant();
      const snap = await this.client.getAll().prefix(this.o.prefix).exec();
      this.nets = new Map();
      for (const kv of snap.kvs) this.apply(kv, false);
      watcher = await this.client.watch().prefix(this.o.prefix).startRevision(String(BigInt(snap.header.revision) + 1n)).create();
      watcher.on('put', (kv) => this.onEvent(kv, false));
      watcher.on('delete', (kv) => this.onEvent(kv, true));
      // A dropped watch stream is re-established by the client on another endpoint and resumes
      // after the last revision it delivered, so no event is missed; only a watch that cannot resume
      // (an error) or the lease ends the session.
      watcher.on('disconnected', (e) => this.o.log.warn(`${etcdFailure(this.o.hosts, e)}: watch reconnecting`));
      watcher.on('connected', () => this.schedule());
      watcher.on('error', (e) => fail(new Error(`watch failed: ${errorMessage(e)}`)));
      this.sessionUp = true;
      this.o.log.info(`connected: lease ${this.leaseId} (TTL ${this.o.ttl} s), ${this.nets.size} network(s) at revision ${snap.header.revision}`);
      const resync = setInterval(() => this.schedule(), RESYNC_MS);
      const session = { ended: false };
      this.dirty = true;
      const loop = this.syncLoop(session);
      try {
        await Promise.race([failed, loop]);
      } finally {
        clearInterval(resync);
        // No sync starts after its session ended, and the next session starts only once a sync in
        // flight (an etcd call when the lease was lost; each call has a deadline) returned: it would
        // otherwise run beside the next session's, from this session's view.
        session.ended = true;
        this.wake?.();
        await loop.catch(() => {});
      }
    } finally {
      this.wake = undefined;
      await watcher?.cancel().catch(() => {});
      lease.release(); // stop the keep-alive; never revoke: other hosts would drop our routes
    }
  }

  private onEvent(kv: IKeyValue, deleted: boolean): void {
    this.apply(kv, deleted);
    this.schedule();
  }

  private schedule(): void {
    this.dirty = true;
    this.wake?.();
  }

  /** Runs sync() whenever something changed, one at a time, until stop() or its session ended (a sync in flight then completes). Throws what sync throws (etcd failures). */
  private async syncLoop(session: { ended: boolean }): Promise<void> {
    while (!this.stopped && !session.ended) {
      if (!this.dirty) await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
      if (this.stopped || session.ended) return;
      this.dirty = false;
      await this.sync();
    }
  }

  /** Folds one key into the view of etcd. */
  private apply(kv: IKeyValue, deleted: boolean): void {
    const key = kv.key.toString();
    const rest = key.slice(this.o.prefix.length).split('/');
    if (rest[0] === 'networks' && rest.length === 2 && isNetworkName(rest[1]!)) {
      const st = this.net(rest[1]!);
      st.def = undefined;
      st.defError = undefined;
      if (deleted) {
        this.dropHosts(rest[1]!, st, (h) => this.isMe(h.rec));
        if (!st.hosts.size) this.nets.delete(rest[1]!);
        return;
      }
      try {
        const def = (st.def = decodeDef(rest[1]!, kv.value.toString()));
        st.created = BigInt(kv.create_revision);
        // A changed subnet or host prefix: the leases of the old one are no host subnets of it.
        this.dropHosts(rest[1]!, st, (h) => !subnetFromKey(def, `${formatIP(h.subnet.ip)}-${h.subnet.prefix}`));
      } catch (e) {
        st.defError = errorMessage(e);
      }
    } else if (rest[0] === 'subnets' && rest.length === 3 && isNetworkName(rest[1]!)) {
      const st = this.net(rest[1]!);
      const cidr = rest[2]!.replace('-', '/');
      if (deleted) {
        // Not an entry written after the delete (our own claim of the key, seen before the event).
        const e = st.hosts.get(cidr);
        if (e && BigInt(e.modRevision) > BigInt(kv.mod_revision)) return;
        st.hosts.delete(cidr);
      } else {
        const rec = decodeHost(kv.value.toString());
        const subnet = st.def ? subnetFromKey(st.def, rest[2]!) : null;
        if (rec && subnet) st.hosts.set(cidr, { subnet, rec, lease: kv.lease, modRevision: kv.mod_revision });
        else {
          st.hosts.delete(cidr);
          if (rec && this.isMe(rec)) this.staleKeys.add(key); // ours, of a definition that changed (or went) meanwhile
        }
      }
      if (!st.def && !st.hosts.size) this.nets.delete(rest[1]!);
    }
  }

  /** Removes the host entries `gone` picks from the view; ours are also deleted from etcd at the next sync. */
  private dropHosts(name: string, st: NetState, gone: (h: HostEntry) => boolean): void {
    for (const [cidr, h] of st.hosts) {
      if (!gone(h)) continue;
      st.hosts.delete(cidr);
      if (this.isMe(h.rec)) this.staleKeys.add(subnetKey(this.o.prefix, name, h.subnet));
    }
  }

  private net(name: string): NetState {
    let st = this.nets.get(name);
    if (!st) this.nets.set(name, (st = { hosts: new Map() }));
    return st;
  }

  /**
   * A host record of this host: our name and our underlay address (a restarted agent takes its
   * subnet back by them). The name alone is not enough: another host with the same name (the
   * default, the hostname, of cloned machines) took the key over from the other's lease, and the
   * two agents rewrote it in turn, tens of times a second, each routing the subnet to itself.
   */
  private isMe(rec: HostRecord): boolean {
    return rec.host === this.o.name && ipEqual(rec.underlay, this.underlay.ip);
  }

  /** Once per distinct message per network. */
  private sayOnce(network: string, level: 'error' | 'warn' | 'info', msg: string): void {
    if (this.said.get(network) === msg) return;
    this.said.set(network, msg);
    this.o.log[level](msg);
  }

  /** Brings etcd claims, devices, lease files and peers in line with the current view. */
  private async sync(): Promise<void> {
    for (const key of this.staleKeys) {
      await etcdCall(this.client.delete().key(key).exec());
      this.staleKeys.delete(key);
      this.o.log.info(`${key} removed: not a host subnet of the network's current definition`);
    }
    const wanted = new Set<number>();
    const defined = new Set<string>();
    const owner = this.vniOwners();
    for (const [name, st] of this.nets) {
      if (st.defError) {
        this.sayOnce(name, 'error', st.defError);
        continue;
      }
      const def = st.def;
      if (!def) continue;
      wanted.add(def.vni);
      if (owner.get(def.vni) !== name) {
        // Every agent sees the same revisions, so all pick the same owner.
        this.sayOnce(name, 'error', `network ${name}: VNI ${def.vni} is already network ${owner.get(def.vni)}'s (defined earlier); not joining it`);
        continue;
      }
      defined.add(name);
      if (overlaps(def.subnet, this.underlay.net)) {
        this.sayOnce(name, 'error', `network ${name}: subnet ${formatCIDR(def.subnet)} overlaps the underlay ${formatCIDR(networkOf(this.underlay.net))} of ${this.underlay.name}; not joining it`);
        continue;
      }
      try {
        await this.syncNetwork(name, def, st);
      } catch (e) {
        if (e instanceof EtcdCallError) throw e;
        this.sayOnce(name, 'error', `network ${name}: ${errorMessage(e)}`);
      }
    }
    // Networks that are gone (only ever judged from a complete view): the lease file first, so no
    // new pod is wired to a network whose device is about to go, then the device.
    for (const f of listLeaseFiles(this.o.stateDir)) {
      if (defined.has(f)) continue;
      removeLease(this.o.stateDir, f);
      if (this.nets.get(f)?.def) {
        this.o.log.info(`network ${f}: not joined, lease file removed`); // why was said above, once
        continue;
      }
      this.said.delete(f);
      this.o.log.info(`network ${f}: removed from etcd, lease file removed`);
    }
    for (const vni of deviceVnis(this.nl)) if (!wanted.has(vni) && removeDevice(this.nl, vni)) this.o.log.info(`removed the devices of VNI ${vni}: no network uses it`);
  }

  /**
   * The network each VNI belongs to: the one whose definition was created first (then the lower
   * name). Two definitions with one VNI (possible by hand: cnm allocates VNIs, etcdctl does not)
   * would share ovl.<vni> and ovlbr.<vni>, each sync undoing the other's routes and addresses.
   */
  private vniOwners(): Map<number, string> {
    const owner = new Map<number, { name: string; created: bigint }>();
    for (const [name, st] of this.nets) {
      if (!st.def || st.defError) continue;
      const created = st.created ?? 0n;
      const o = owner.get(st.def.vni);
      if (!o || created < o.created || (created === o.created && name < o.name)) owner.set(st.def.vni, { name, created });
    }
    return new Map([...owner].map(([vni, o]) => [vni, o.name]));
  }

  private async syncNetwork(name: string, def: NetworkDef, st: NetState): Promise<void> {
    const dev = ensureDevice(this.nl, def.vni, this.underlay, this.mtu, (m) => this.o.log.info(m));
    const mine = await this.claim(name, def, st, dev.mac);
    if (!mine) return;
    setVtepAddress(this.nl, dev, mine);
    const stale = pruneBridgeAddresses(this.nl, def.vni, mine);
    if (stale.length) this.o.log.info(`network ${name}: removed ${stale.join(' ')} from ${bridgeName(def.vni)}: not in this host's subnet ${formatCIDR(mine)}`);
    const lease: HostLease = { network: name, subnet: def.subnet, hostSubnet: mine, vni: def.vni, mtu: this.mtu, bridge: bridgeName(def.vni), host: this.o.name };
    let old: HostLease | null = null;
    try {
      old = readLease(this.o.stateDir, name);
    } catch {
      old = null; // unreadable: rewritten below
    }
    if (!old || encodeLease(old) !== encodeLease(lease)) writeLease(this.o.stateDir, lease);
    const peers: Peer[] = [];
    for (const h of st.hosts.values()) if (!this.isMe(h.rec)) peers.push({ subnet: h.subnet, underlay: h.rec.underlay, mac: h.rec.mac });
    const twin = [...st.hosts.values()].find((h) => h.rec.host === this.o.name && !this.isMe(h.rec));
    if (twin) this.sayOnce(`${name}\0name`, 'warn', `network ${name}: the agent at ${formatIP(twin.rec.underlay)} (subnet ${formatCIDR(twin.subnet)}) also calls itself "${this.o.name}": give every host its own --name`);
    const ch = reconcilePeers(this.nl, dev, peers);
    this.sayOnce(name, 'info', `network ${name}: host subnet ${formatCIDR(mine)} on ${dev.name} (VNI ${def.vni}), ${peers.length} peer(s)`);
    if (ch.added.length) this.o.log.info(`network ${name}: routes to ${ch.added.join(' ')} programmed`);
    if (ch.removed.length) this.o.log.info(`network ${name}: routes to ${ch.removed.join(' ')} removed (host gone)`);
  }

  /**
   * This host's subnet of `name`, leased under our current etcd lease: the key we already hold is
   * moved onto it (a restart or a reconnect keeps its subnet), else the subnet of the last lease file
   * if free, else the first free one. Each claim is a transaction (create-only, or on the exact
   * revision we saw), so two agents never hold one subnet. null when none is free.
   */
  private async claim(name: string, def: NetworkDef, st: NetState, mac: string): Promise<IPNet | null> {
    const rec: HostRecord = { host: this.o.name, underlay: this.underlay.ip, mac };
    const value = encodeHost(rec);
    const put = (key: string) => this.client.put(key).value(value).lease(this.leaseId);
    const held = [...st.hosts.values()].find((h) => this.isMe(h.rec));
    if (held) {
      if (held.lease === this.leaseId && encodeHost(held.rec) === value) return held.subnet;
      const key = subnetKey(this.o.prefix, name, held.subnet);
      const r = await etcdCall(this.client.if(key, 'Mod', '==', held.modRevision).then(put(key)).commit());
      if (r.succeeded) {
        Object.assign(held, { rec, lease: this.leaseId, modRevision: r.header.revision });
        return held.subnet;
      }
      this.schedule(); // changed under us: the watch brings the new state
      return null;
    }
    let last: IPNet | undefined;
    try {
      last = readLease(this.o.stateDir, name)?.hostSubnet;
    } catch {
      last = undefined;
    }
    const taken = (n: IPNet) => st.hosts.has(formatCIDR(n));
    const candidates: IPNet[] = [];
    if (last && subnetFromKey(def, `${formatIP(last.ip)}-${last.prefix}`) && !taken(last)) candidates.push(last);
    for (let i = 0, n = hostSubnetCount(def); i < n && candidates.length < MAX_CLAIM_TRIES; i++) {
      const s = hostSubnetAt(def, i);
      if (!taken(s) && !(last && ipEqual(s.ip, last.ip))) candidates.push(s);
    }
    for (const s of candidates) {
      const key = subnetKey(this.o.prefix, name, s);
      const r = await etcdCall(this.client.if(key, 'Create', '==', 0).then(put(key)).commit());
      if (r.succeeded) {
        st.hosts.set(formatCIDR(s), { subnet: s, rec, lease: this.leaseId, modRevision: r.header.revision });
        this.o.log.info(`network ${name}: leased host subnet ${formatCIDR(s)}`);
        return s;
      }
    }
    this.sayOnce(name, 'warn', `network ${name}: no free /${def.hostPrefix} left in ${formatCIDR(def.subnet)} (${st.hosts.size} leased); waiting for one`);
    return null;
  }
}

/** A failed etcd call inside sync(): it ends the session (a kernel error only fails one network). */
class EtcdCallError extends Error {}

async function etcdCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw new EtcdCallError(errorMessage(e), { cause: e });
  }
}

/**
 * Makes `dir` (0700) if missing; throws Error naming it when it is not a directory or cannot be
 * made. Before etcd: an agent that could not write a lease file would still lease subnets the other
 * hosts route to.
 */
function prepareStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`--state-dir ${dir}: ${code === 'EEXIST' || code === 'ENOTDIR' ? 'not a directory' : errorMessage(e)}`);
  }
}

/** The network names of the lease files in stateDir (none when it does not exist). */
function listLeaseFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .filter(isNetworkName);
  } catch {
    return [];
  }
}
