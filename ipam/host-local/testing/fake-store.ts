// In-memory Store for allocator tests (the reference's backend/testing/fake_store.go).
import { formatIP, parseIP, type IP } from '../../../shared/ip';
import type { Lease, Store } from '../store';

export class FakeStore implements Store {
  readonly ipMap = new Map<string, { id: string; ifname: string }>();
  readonly lastReserved = new Map<string, IP>();
  readonly stale = new Set<string>(); // addresses whose lease predates "this boot"

  constructor(leases: Array<[string, string, string?]> = [], lastReserved: Record<string, string> = {}) {
    for (const [ip, id, ifname] of leases) this.ipMap.set(formatIP(parseIP(ip)!), { id, ifname: ifname ?? 'eth0' });
    for (const [k, v] of Object.entries(lastReserved)) this.lastReserved.set(k, parseIP(v)!);
  }

  lock(): void {}
  unlock(): void {}
  close(): void {}

  reserve(id: string, ifname: string, ip: IP, rangeID: string): boolean {
    const k = formatIP(ip);
    if (this.ipMap.has(k)) return false;
    this.ipMap.set(k, { id: id.trim(), ifname });
    this.stale.delete(k); // a lease made now belongs to this boot
    this.lastReserved.set(rangeID, ip);
    return true;
  }

  lastReservedIP(rangeID: string): IP | null {
    return this.lastReserved.get(rangeID) ?? null;
  }

  releaseByID(id: string, ifname: string): void {
    const t = id.trim();
    const keyed = [...this.ipMap].filter(([, o]) => o.id === t && o.ifname === ifname);
    const victims = keyed.length ? keyed : [...this.ipMap].filter(([, o]) => o.id === t && o.ifname === '');
    for (const [k] of victims) this.ipMap.delete(k);
  }

  getByID(id: string, ifname: string): IP[] {
    const t = id.trim();
    return [...this.ipMap].filter(([, o]) => o.id === t && (o.ifname === ifname || o.ifname === '')).map(([k]) => parseIP(k)!);
  }

  leases(): Lease[] {
    return [...this.ipMap].map(([k, o]) => ({ ip: parseIP(k)!, ...o }));
  }

  leaseAt(ip: IP): Lease | null {
    const o = this.ipMap.get(formatIP(ip));
    return o ? { ip, ...o } : null;
  }

  release(ip: IP): void {
    this.ipMap.delete(formatIP(ip));
  }

  isStale(lease: Lease): boolean {
    return this.stale.has(formatIP(lease.ip));
  }
}
