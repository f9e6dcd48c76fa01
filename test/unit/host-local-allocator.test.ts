// host-local allocation against the fake store (the reference's backend/allocator/allocator_test.go):
// round robin from start / middle / end, wrap across ranges, gateway skipped, requested IPs,
// exhaustion, duplicates, IPv6 128-bit arithmetic, stale-lease reclaim.
import { IPAllocator, iterate } from '../../ipam/host-local/allocator';
import { canonicalizeRangeSet, rangeFor, type RangeSet } from '../../ipam/host-local/range-set';
import { inRange, rangeCapacity } from '../../ipam/host-local/range';
import { FakeStore } from '../../ipam/host-local/testing/fake-store';
import { formatIP, parseCIDR, parseIP } from '../../shared/ip';

type R = { subnet: string; rangeStart?: string; rangeEnd?: string; gateway?: string };
const set = (...rs: R[]): RangeSet =>
  canonicalizeRangeSet(
    rs.map((r) => ({
      subnet: parseCIDR(r.subnet)!,
      rangeStart: r.rangeStart ? parseIP(r.rangeStart)! : undefined,
      rangeEnd: r.rangeEnd ? parseIP(r.rangeEnd)! : undefined,
      gateway: r.gateway ? parseIP(r.gateway)! : undefined,
    })),
  );
const ip = (s: string) => parseIP(s)!;

function take(s: RangeSet, store: FakeStore, n: number): string[] {
  const a = new IPAllocator(s, store, 0);
  return Array.from({ length: n }, (_, i) => a.get(`c${i}-${Math.random()}`, 'eth0').address);
}

describe('iteration (RangeIter)', () => {
  const s = set({ subnet: '198.18.0.0/29' }); // usable .2-.6 (gateway .1, broadcast .7)

  test('from the start when nothing was reserved: rangeStart, gateway skipped', () => {
    expect([...iterate(s, null)].map((x) => formatIP(x.ip))).toEqual(['198.18.0.2', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6']);
  });

  test('from the middle: after last_reserved_ip, wrapping, ending with it', () => {
    expect([...iterate(s, ip('198.18.0.4'))].map((x) => formatIP(x.ip))).toEqual(['198.18.0.5', '198.18.0.6', '198.18.0.2', '198.18.0.3', '198.18.0.4']);
  });

  test('from the end: wraps to rangeStart and skips the gateway', () => {
    expect([...iterate(s, ip('198.18.0.6'))].map((x) => formatIP(x.ip))).toEqual(['198.18.0.2', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6']);
  });

  test('a last_reserved_ip outside the set (config changed) starts over', () => {
    expect(formatIP([...iterate(s, ip('198.18.9.9'))][0]!.ip)).toBe('198.18.0.2');
  });

  test('across the ranges of a set, wrapping from the last to the first', () => {
    const two = set({ subnet: '198.18.0.0/30' }, { subnet: '198.18.1.0/30' }); // .2 then 1.2
    expect([...iterate(two, null)].map((x) => formatIP(x.ip))).toEqual(['198.18.0.2', '198.18.1.2']);
    expect([...iterate(two, ip('198.18.1.2'))].map((x) => formatIP(x.ip))).toEqual(['198.18.0.2', '198.18.1.2']);
    expect([...iterate(two, ip('198.18.0.2'))].map((x) => [formatIP(x.ip), formatIP(x.range.gateway)])).toEqual([
      ['198.18.1.2', '198.18.1.1'],
      ['198.18.0.2', '198.18.0.1'],
    ]);
  });

  test('a gateway inside a custom range is skipped wherever it is', () => {
    const g = set({ subnet: '198.18.0.0/29', rangeStart: '198.18.0.2', rangeEnd: '198.18.0.5', gateway: '198.18.0.3' });
    expect([...iterate(g, null)].map((x) => formatIP(x.ip))).toEqual(['198.18.0.2', '198.18.0.4', '198.18.0.5']);
  });

  test('IPv6: 128-bit arithmetic across a 64-bit boundary', () => {
    const v6 = set({ subnet: 'fd00::/63', rangeStart: 'fd00:0:0:0:ffff:ffff:ffff:fffe', rangeEnd: 'fd00:0:0:1::1' });
    expect([...iterate(v6, null)].map((x) => formatIP(x.ip))).toEqual(['fd00::ffff:ffff:ffff:fffe', 'fd00::ffff:ffff:ffff:ffff', 'fd00:0:0:1::', 'fd00:0:0:1::1']);
  });

  test('IPv6 default range never hands out the subnet-router anycast address', () => {
    const v6 = set({ subnet: 'fd00::/126' });
    expect([...iterate(v6, null)].map((x) => formatIP(x.ip))).toEqual(['fd00::2', 'fd00::3']);
  });
});

describe('IPAllocator.get', () => {
  test('round robin: each ADD continues after the last reserved address; result has mask and gateway', () => {
    const store = new FakeStore();
    const s = set({ subnet: '198.18.0.0/29' });
    const a = new IPAllocator(s, store, 0);
    expect(a.get('a', 'eth0')).toEqual({ address: '198.18.0.2/29', gateway: '198.18.0.1' });
    expect(a.get('b', 'eth0').address).toBe('198.18.0.3/29');
    store.releaseByID('a', 'eth0');
    expect(a.get('c', 'eth0').address).toBe('198.18.0.4/29'); // not the just-freed .2
    expect(formatIP(store.lastReservedIP('0')!)).toBe('198.18.0.4');
  });

  test('taken addresses are skipped; the broadcast address is never handed out', () => {
    const store = new FakeStore([['198.18.0.2', 'x'], ['198.18.0.4', 'y']]);
    expect(take(set({ subnet: '198.18.0.0/29' }), store, 3)).toEqual(['198.18.0.3/29', '198.18.0.5/29', '198.18.0.6/29']);
  });

  test("exhaustion: the reference's message with the set's ranges", () => {
    const store = new FakeStore([['198.18.0.2', 'x']]);
    const a = new IPAllocator(set({ subnet: '198.18.0.0/30' }, { subnet: '198.18.1.0/30' }), store, 0);
    a.get('b', 'eth0');
    expect(() => a.get('c', 'eth0')).toThrow('no IP addresses available in range set: 198.18.0.1-198.18.0.2,198.18.1.1-198.18.1.2');
  });

  test('duplicate allocation for the same (containerID, ifname) is refused (plugins#328); other ifname ok', () => {
    const store = new FakeStore();
    const a = new IPAllocator(set({ subnet: '198.18.0.0/24' }), store, 0);
    a.get('c1', 'eth0');
    expect(() => a.get('c1', 'eth0')).toThrow('198.18.0.2 has been allocated to c1, duplicate allocation is not allowed');
    expect(a.get('c1', 'eth1').address).toBe('198.18.0.3/24');
  });

  test('a legacy ID-only lease counts as a duplicate too', () => {
    const store = new FakeStore([['198.18.0.9', 'c1', '']]);
    expect(() => new IPAllocator(set({ subnet: '198.18.0.0/24' }), store, 0).get('c1', 'eth0')).toThrow('duplicate allocation is not allowed');
  });

  test('requested IP: reserved exactly, records last_reserved_ip', () => {
    const store = new FakeStore();
    const a = new IPAllocator(set({ subnet: '198.18.0.0/24' }), store, 3);
    expect(a.get('c1', 'eth0', ip('198.18.0.77'))).toEqual({ address: '198.18.0.77/24', gateway: '198.18.0.1' });
    expect(formatIP(store.lastReservedIP('3')!)).toBe('198.18.0.77');
  });

  test('requested IP taken, the gateway, or outside the set', () => {
    const store = new FakeStore([['198.18.0.5', 'x']]);
    const a = new IPAllocator(set({ subnet: '198.18.0.0/24' }), store, 0);
    expect(() => a.get('c', 'eth0', ip('198.18.0.5'))).toThrow('requested IP address 198.18.0.5 is not available in range set 198.18.0.1-198.18.0.254');
    expect(() => a.get('c', 'eth0', ip('198.18.0.1'))).toThrow("requested ip 198.18.0.1 is subnet's gateway");
    expect(() => a.get('c', 'eth0', ip('198.18.1.1'))).toThrow('198.18.1.1 not in range set 198.18.0.1-198.18.0.254');
  });

  test('stale leases (older than this boot) are reclaimed only when the set is exhausted, and only if enabled', () => {
    const leases: Array<[string, string]> = [['198.18.0.2', 'old1'], ['198.18.0.3', 'old2']];
    const s = set({ subnet: '198.18.0.0/29', rangeEnd: '198.18.0.3' });
    const off = new FakeStore(leases);
    off.stale.add('198.18.0.3');
    expect(() => new IPAllocator(s, off, 0, { reclaimStale: false }).get('new', 'eth0')).toThrow('no IP addresses available');
    const on = new FakeStore(leases);
    on.stale.add('198.18.0.3');
    expect(new IPAllocator(s, on, 0, { reclaimStale: true }).get('new', 'eth0').address).toBe('198.18.0.3/29');
    expect(on.ipMap.get('198.18.0.2')!.id).toBe('old1'); // the live one is kept
    expect(() => new IPAllocator(s, on, 0, { reclaimStale: true }).get('new2', 'eth0')).toThrow('no IP addresses available');
  });

  test('reclaim frees no more than the allocation needs: one stale lease per exhausted set', () => {
    const s = set({ subnet: '198.18.0.0/29', rangeEnd: '198.18.0.4' });
    const store = new FakeStore([['198.18.0.2', 'old1'], ['198.18.0.3', 'old2'], ['198.18.0.4', 'old3']]);
    for (const a of ['198.18.0.2', '198.18.0.3', '198.18.0.4']) store.stale.add(a);
    const got = new IPAllocator(s, store, 0, { reclaimStale: true }).get('new', 'eth0').address;
    const kept = [...store.ipMap.entries()].filter(([, o]) => o.id.startsWith('old')).map(([a]) => a);
    expect(kept).toHaveLength(2);
    expect(kept).not.toContain(got.split('/')[0]);
  });

  test('a stale lease on a requested IP is reclaimed', () => {
    const store = new FakeStore([['198.18.0.9', 'old']]);
    store.stale.add('198.18.0.9');
    expect(new IPAllocator(set({ subnet: '198.18.0.0/24' }), store, 0, { reclaimStale: true }).get('new', 'eth0', ip('198.18.0.9')).address).toBe('198.18.0.9/24');
  });
});

describe('iteration stays inside [rangeStart, rangeEnd] whatever the range says (issue 10)', () => {
  const v4 = (s: string) => parseIP(s)!;
  // Hand-made ranges that canonicalisation refuses: the iterator must still never leave them or throw.
  const raw = (subnet: string, start: string, end: string, gw: string): RangeSet => [
    { subnet: parseCIDR(subnet)!, rangeStart: v4(start), rangeEnd: v4(end), gateway: v4(gw) },
  ];

  test('rangeStart after rangeEnd at the top of the address space yields nothing (was a null dereference)', () => {
    const s = raw('255.255.255.252/30', '255.255.255.255', '255.255.255.254', '255.255.255.255');
    expect([...iterate(s, null)]).toEqual([]);
    expect([...iterate(s, v4('255.255.255.254'))]).toEqual([]);
  });

  test('rangeStart after rangeEnd (issue: .20-.10 handed out .20, .21, .22) yields nothing', () => {
    expect([...iterate(raw('198.18.12.0/24', '198.18.12.20', '198.18.12.10', '198.18.12.1'), null)]).toEqual([]);
  });

  test('a range ending at the last address of the family wraps without stepping past it', () => {
    const s = raw('255.255.255.252/30', '255.255.255.254', '255.255.255.255', '255.255.255.253');
    expect([...iterate(s, v4('255.255.255.255'))].map((x) => formatIP(x.ip))).toEqual(['255.255.255.254', '255.255.255.255']);
    expect([...iterate(s, v4('255.255.255.254'))].map((x) => formatIP(x.ip))).toEqual(['255.255.255.255', '255.255.255.254']);
  });

  test('IPv6 at the top of the address space: ::fffe, ::ffff and no wrap to ::', () => {
    const top = parseIP('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')!;
    const s: RangeSet = [{ subnet: parseCIDR('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126')!, rangeStart: parseIP('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe')!, rangeEnd: top, gateway: parseIP('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd')! }];
    expect([...iterate(s, top)].map((x) => formatIP(x.ip))).toEqual(['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff']);
  });
});

describe('STATUS and ADD agree: capacity equals what the iterator hands out', () => {
  test.each([
    [[{ subnet: '198.18.0.0/29' }]],
    [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.7', rangeEnd: '198.18.0.7' }]],
    [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.1', rangeEnd: '198.18.0.1' }]], // only the gateway: 0
    [[{ subnet: '198.18.0.0/29', gateway: '198.18.0.6' }, { subnet: '198.18.1.0/30' }]],
    [[{ subnet: '198.18.0.0/28', rangeStart: '198.18.0.4', rangeEnd: '198.18.0.9', gateway: '198.18.0.14' }]],
    [[{ subnet: '255.255.255.252/30' }]],
    [[{ subnet: 'fd00::/125' }, { subnet: 'fd00:1::/126', rangeEnd: 'fd00:1::3' }]],
  ])('%j', (rs) => {
    const s = set(...rs);
    const cap = s.reduce((n, r) => n + rangeCapacity(r), 0n);
    const handed = [...iterate(s, null)];
    expect(BigInt(handed.length)).toBe(cap);
    for (const { ip: a, range } of handed) expect(inRange(range, a)).toBe(true);
    // The allocator hands out exactly that many, then reports the set full.
    const store = new FakeStore();
    const a = new IPAllocator(s, store, 0);
    for (let i = 0n; i < cap; i++) a.get(`c${i}`, 'eth0');
    expect(() => a.get('one-more', 'eth0')).toThrow('no IP addresses available');
  });
});

describe('rangeFor: binary search over a set of up to 4,096 ranges', () => {
  // Ranges out of address order, with gaps, a custom start/end and a gateway outside its range.
  const rs: R[] = Array.from({ length: 4096 }, (_, i) => {
    const k = (i * 2654435761) % 4096; // a permutation of 0..4095
    return { subnet: `10.${k >> 6}.${(k & 63) * 4}.0/24`, rangeStart: `10.${k >> 6}.${(k & 63) * 4}.10`, rangeEnd: `10.${k >> 6}.${(k & 63) * 4}.20` };
  });
  const s = set(...rs);

  test('finds the same range as a linear scan, for addresses inside, between and outside ranges', () => {
    const probes = ['10.0.0.10', '10.0.0.20', '10.0.0.9', '10.0.0.21', '10.63.252.15', '10.63.253.15', '9.255.255.255', '11.0.0.0', '10.17.40.11', 'fd00::1'];
    for (let i = 0; i < 2000; i++) probes.push(`10.${i % 64}.${(i * 7) % 256}.${(i * 13) % 256}`);
    for (const p of probes) expect(rangeFor(s, ip(p))).toBe(s.find((r) => inRange(r, ip(p))));
  });

  test('100,000 lookups take well under a second', () => {
    const t0 = performance.now();
    for (let i = 0; i < 100_000; i++) rangeFor(s, { family: 4, value: 0x0a000000n + BigInt(i * 97) });
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
