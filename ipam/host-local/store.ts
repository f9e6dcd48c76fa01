// The narrow interface the allocator and the verbs use (the reference's backend/store.go, plus what
// GC, STATUS and stale-lease reclaim need). DiskStore is the real one; testing/fake-store.ts a fake.
import type { IP } from '../../shared/ip';

/** One reserved address and its owner. Legacy (ID-only) lease files have ifname ''. */
export interface Lease {
  ip: IP;
  id: string;
  ifname: string;
}

export interface Store {
  /** Takes the store's lock, waiting at most the configured bound (then code 11). */
  lock(): void;
  unlock(): void;
  close(): void;
  /** Creates the lease if the address is free; false when it is taken. Records last_reserved_ip.<rangeID>. */
  reserve(id: string, ifname: string, ip: IP, rangeID: string): boolean;
  lastReservedIP(rangeID: string): IP | null;
  /** Releases the leases of (id, ifname); when there are none, the legacy ID-only ones. */
  releaseByID(id: string, ifname: string): void;
  /** Addresses held by (id, ifname) or, legacy, by id alone. */
  getByID(id: string, ifname: string): IP[];
  /** Every lease (GC, STATUS, stale reclaim). */
  leases(): Lease[];
  /** The lease on one address, if any. */
  leaseAt(ip: IP): Lease | null;
  /** Releases one address whatever its owner. */
  release(ip: IP): void;
  /** True only when the lease provably cannot belong to a live pod: recorded as made in an earlier boot. */
  isStale(lease: Lease): boolean;
}
