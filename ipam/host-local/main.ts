// host-local IPAM: leases addresses from range sets into a per-node store (the reference's
// plugins/ipam/host-local). Each verb: load config → open store → lock → do the thing.
import { CniError, ErrInternal, ErrIOFailure, ErrPluginNotAvailable, wrapError, errorMessage } from '../../shared/cni/errors';
import { parseValidAttachments } from '../../shared/cni/gc';
import type { CmdArgs, Plugin } from '../../shared/cni/skel';
import type { IPConfig, Result } from '../../shared/cni/types';
import { formatIP, ipEqual, type IP } from '../../shared/ip';
import { loadIPAMConfig, type IPAMConfig } from './config';
import { IPAllocator } from './allocator';
import { DiskStore } from './disk-store';
import { parseResolvConf } from './dns';
import { rangeCapacity } from './range';
import { rangeFor, setContains, setString, type RangeSet } from './range-set';
import type { Lease } from './store';

function openStore(conf: IPAMConfig): DiskStore {
  try {
    return new DiskStore(conf.name, conf.dataDir, { lockTimeoutMs: conf.lockTimeoutMs });
  } catch (e) {
    throw new CniError(ErrIOFailure, `failed to open the store in ${conf.dataDir}/${conf.name}: ${errorMessage(e)}`, '', { cause: e });
  }
}

/** Runs fn with the store open and locked; the lock is released and the index sealed on every path. */
function withStore<T>(conf: IPAMConfig, fn: (s: DiskStore) => T): T {
  return openStore(conf).lockedThenClosed(fn);
}

function cmdAdd(args: CmdArgs): Result {
  const conf = loadIPAMConfig(args.conf, args.args);
  const result: Result = { cniVersion: '1.1.0' };
  if (conf.resolvConf) result.dns = parseResolvConf(conf.resolvConf);

  const ips = withStore(conf, (store) => {
    const used: IPAllocator[] = [];
    const releaseAll = (): void => used.forEach((a) => a.release(args.containerID, args.ifName));
    const pending: IP[] = [...conf.requestedIPs];
    const out: IPConfig[] = [];
    conf.ranges.forEach((set, idx) => {
      const alloc = new IPAllocator(set, store, idx, { reclaimStale: conf.reclaimStaleLeases });
      const i = pending.findIndex((ip) => setContains(set, ip));
      const requested = i >= 0 ? pending.splice(i, 1)[0] : undefined;
      try {
        out.push(alloc.get(args.containerID, args.ifName, requested));
      } catch (e) {
        releaseAll(); // addresses taken earlier in this ADD go back
        throw allocError(e, `failed to allocate for range ${idx}`);
      }
      used.push(alloc);
    });
    if (pending.length) {
      releaseAll();
      throw new CniError(ErrInternal, `failed to allocate all requested IPs: ${pending.map(formatIP).join(' ')}`);
    }
    return out;
  });
  result.ips = ips;
  if (conf.routes.length) result.routes = conf.routes;
  return result;
}

function allocError(e: unknown, context: string): CniError {
  // The reference reports allocation failures as plain errors (code 999); store and lock errors keep theirs.
  return wrapError(e instanceof CniError ? e : new CniError(ErrInternal, errorMessage(e)), context);
}

function cmdDel(args: CmdArgs): void {
  const conf = loadIPAMConfig(args.conf, args.args);
  // Like the reference: once per range set (the second pass is what releases legacy ID-only files).
  withStore(conf, (store) => conf.ranges.forEach(() => store.releaseByID(args.containerID, args.ifName)));
}

function cmdCheck(args: CmdArgs): void {
  const conf = loadIPAMConfig(args.conf, args.args);
  const found = withStore(conf, (store) => store.getByID(args.containerID, args.ifName).length > 0);
  if (!found) throw new CniError(ErrInternal, `host-local: Failed to find address added by container ${args.containerID}`);
}

function cmdGC(args: CmdArgs): void {
  const conf = loadIPAMConfig(args.conf, args.args);
  // Lease files keep IDs trimmed (the reference's store does): compare trimmed.
  const valid = parseValidAttachments(args.conf).map((a) => ({ ...a, containerID: a.containerID.trim() }));
  const keys = new Set(valid.map((a) => `${a.containerID}\r\n${a.ifname}`));
  const ids = new Set(valid.map((a) => a.containerID));
  // Legacy ID-only leases match on the ID; lock and last_reserved_ip.* are not leases.
  const live = (l: Lease): boolean => (l.ifname ? keys.has(`${l.id}\r\n${l.ifname}`) : ids.has(l.id));
  withStore(conf, (store) => {
    for (const l of store.leases()) if (!live(l)) store.release(l.ip);
  });
}

/** Code 50 when the store cannot be written or a range set has nothing left to hand out. */
function cmdStatus(args: CmdArgs): void {
  const conf = loadIPAMConfig(args.conf, args.args);
  let store: DiskStore;
  try {
    store = new DiskStore(conf.name, conf.dataDir, { lockTimeoutMs: conf.lockTimeoutMs });
  } catch (e) {
    throw new CniError(ErrPluginNotAvailable, `store ${conf.dataDir}/${conf.name} is not usable: ${errorMessage(e)}`, '', { cause: e });
  }
  try {
    if (!store.writable()) throw new CniError(ErrPluginNotAvailable, `store ${store.dir} is not writable`);
    const leased = store.leasedAddresses();
    conf.ranges.forEach((set, idx) => {
      if (freeIn(set, leased) > 0n) return;
      if (!conf.reclaimStaleLeases || !earlierBootLeaseIn(store, set)) throw new CniError(ErrPluginNotAvailable, `no IP addresses available in range set ${idx}: ${setString(set)}`);
    });
  } finally {
    store.close();
  }
}

/** Whether ADD could reclaim a lease from an earlier boot in `set` (under the lock: it reads the index). */
function earlierBootLeaseIn(store: DiskStore, set: RangeSet): boolean {
  store.lock();
  try {
    return store.leases().some((l) => setContains(set, l.ip) && store.isStale(l));
  } finally {
    store.unlock();
  }
}

function freeIn(set: RangeSet, leased: IP[]): bigint {
  let cap = 0n;
  for (const r of set) cap += rangeCapacity(r);
  for (const ip of leased) {
    const r = rangeFor(set, ip);
    if (r && !ipEqual(ip, r.gateway)) cap--;
  }
  return cap;
}

export const hostLocal: Plugin = {
  name: 'host-local',
  about: 'host-local IPAM: addresses from range sets, leased in a per-node store (drop-in for the reference plugin)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
