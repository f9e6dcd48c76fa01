// Allocation from one range set against a Store (the reference's backend/allocator/allocator.go).
// Pure: no disk, no clock; the caller holds the store's lock.
import { formatIP, ipEqual, type IP } from '../../shared/ip';
import type { IPConfig } from '../../shared/cni/types';
import { inRange, rangeAt, rangeSize, type Range } from './range';
import { rangeFor, setContains, setString, notInSet, type RangeSet } from './range-set';
import type { Store } from './store';

export class AllocationError extends Error {}

export interface AllocatorOptions {
  /** Reclaim leases made before the current boot when the set is exhausted (README: reclaimStaleLeases). */
  reclaimStale: boolean;
}

export class IPAllocator {
  private readonly rangeID: string;

  constructor(
    private readonly set: RangeSet,
    private readonly store: Store,
    index: number,
    private readonly opts: AllocatorOptions = { reclaimStale: false },
  ) {
    this.rangeID = String(index);
  }

  get(id: string, ifname: string, requested?: IP): IPConfig {
    if (requested) return this.getRequested(id, ifname, requested);
    // plugins#328: a second ADD for the same attachment is refused, not given a second address.
    for (const ip of this.store.getByID(id, ifname))
      if (setContains(this.set, ip)) throw new AllocationError(`${formatIP(ip)} has been allocated to ${id}, duplicate allocation is not allowed`);
    let got = this.firstFree(id, ifname);
    if (!got && this.opts.reclaimStale && this.reclaimStale() > 0) got = this.firstFree(id, ifname);
    if (!got) throw new AllocationError(`no IP addresses available in range set: ${setString(this.set)}`);
    return got;
  }

  release(id: string, ifname: string): void {
    this.store.releaseByID(id, ifname);
  }

  private getRequested(id: string, ifname: string, ip: IP): IPConfig {
    const r = rangeFor(this.set, ip);
    if (!r) throw new AllocationError(notInSet(this.set, ip));
    if (ipEqual(ip, r.gateway)) throw new AllocationError(`requested ip ${formatIP(ip)} is subnet's gateway`);
    if (!this.store.reserve(id, ifname, ip, this.rangeID)) {
      const lease = this.opts.reclaimStale ? this.store.leaseAt(ip) : null;
      const reclaimed = lease !== null && this.store.isStale(lease) && (this.store.release(ip), this.store.reserve(id, ifname, ip, this.rangeID));
      if (!reclaimed) throw new AllocationError(`requested IP address ${formatIP(ip)} is not available in range set ${setString(this.set)}`);
    }
    return { address: `${formatIP(ip)}/${r.subnet.prefix}`, gateway: formatIP(r.gateway) };
  }

  private firstFree(id: string, ifname: string): IPConfig | null {
    for (const { ip, range } of iterate(this.set, this.store.lastReservedIP(this.rangeID)))
      if (this.store.reserve(id, ifname, ip, this.rangeID))
        return { address: `${formatIP(ip)}/${range.subnet.prefix}`, gateway: formatIP(range.gateway) };
    return null;
  }

  /**
   * plugins#252: a lease from an earlier boot belongs to no live pod (netns do not survive reboots).
   * Issue 10: frees one such lease, no more than this allocation needs; returns how many (0 or 1).
   */
  private reclaimStale(): number {
    for (const l of this.store.leases())
      if (setContains(this.set, l.ip) && this.store.isStale(l)) {
        this.store.release(l.ip);
        return 1;
      }
    return 0;
  }
}

/**
 * The reference's RangeIter: round robin starting just after the last reserved address when it is
 * still in the set (else at the first range's start), crossing ranges in order and wrapping,
 * skipping each range's gateway, ending with the last reserved address itself. Walks bigint offsets
 * inside each [rangeStart, rangeEnd], so every address comes once and none lies outside its range,
 * whatever the range says (issue 10: a range whose start was after its end was walked past its end).
 */
export function* iterate(set: RangeSet, lastReserved: IP | null): Generator<{ ip: IP; range: Range }> {
  if (set.length === 0) return;
  let first = 0; // the range the walk starts in, and the offset in it
  let from = 0n;
  const at = lastReserved ? set.findIndex((r) => inRange(r, lastReserved)) : -1;
  if (lastReserved && at >= 0) {
    first = at;
    from = lastReserved.value - set[at]!.rangeStart.value + 1n;
  }
  // That range from `from`, every other range in order, then that range's part before `from`.
  for (let k = 0; k <= set.length; k++) {
    const range = set[(first + k) % set.length]!;
    const lo = k === 0 ? from : 0n;
    const hi = k === set.length ? from : rangeSize(range);
    for (let off = lo; off < hi; off++) {
      const ip = rangeAt(range, off);
      if (!ipEqual(ip, range.gateway)) yield { ip, range };
    }
  }
}
