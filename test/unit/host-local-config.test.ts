// host-local config: the reference's LoadIPAMConfig / Canonicalize rules and messages
// (backend/allocator/config_test.go, range_test.go, range_set_test.go), as code 7 naming field and value.
import { loadIPAMConfig } from '../../ipam/host-local/config';
import { formatIP, parseIP } from '../../shared/ip';
import { CniError } from '../../shared/cni/errors';
import type { RangeSet } from '../../ipam/host-local/range-set';
import { iterate } from '../../ipam/host-local/allocator';
import { rangeCapacity } from '../../ipam/host-local/range';

const net = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.0.0',
  name: 'mynet',
  ipam: { type: 'host-local', ...ipam },
  ...extra,
});

const show = (sets: RangeSet[]) =>
  sets.map((s) =>
    s.map((r) => ({
      subnet: `${formatIP(r.subnet.ip)}/${r.subnet.prefix}`,
      rangeStart: formatIP(r.rangeStart),
      rangeEnd: formatIP(r.rangeEnd),
      gateway: formatIP(r.gateway),
    })),
  );

function fails(conf: Record<string, unknown>, args = ''): CniError {
  try {
    loadIPAMConfig(conf, args);
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected the config to be refused');
}

describe('defaults (Range.Canonicalize)', () => {
  test('legacy IPv4 subnet: gateway and rangeStart = network+1, rangeEnd = broadcast-1', () => {
    const c = loadIPAMConfig(net({ subnet: '198.18.0.0/24' }), '');
    expect(show(c.ranges)).toEqual([[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.1', rangeEnd: '198.18.0.254', gateway: '198.18.0.1' }]]);
    expect(c.dataDir).toBe('/var/lib/cni/networks');
    expect(c.name).toBe('mynet');
    expect(c.reclaimStaleLeases).toBe(true);
    expect(c.lockTimeoutMs).toBe(30000);
  });

  test('IPv6: rangeEnd defaults to the last address of the prefix (cni.dev#131), not ::ff', () => {
    const c = loadIPAMConfig(net({ ranges: [[{ subnet: 'fd00:1::/64' }]] }), '');
    expect(show(c.ranges)[0]![0]).toEqual({ subnet: 'fd00:1::/64', rangeStart: 'fd00:1::1', rangeEnd: 'fd00:1::ffff:ffff:ffff:ffff', gateway: 'fd00:1::1' });
  });

  test('explicit start, end and gateway are kept', () => {
    const c = loadIPAMConfig(net({ ranges: [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.10', rangeEnd: '198.18.0.20', gateway: '198.18.0.254' }]] }), '');
    expect(show(c.ranges)[0]![0]).toEqual({ subnet: '198.18.0.0/24', rangeStart: '198.18.0.10', rangeEnd: '198.18.0.20', gateway: '198.18.0.254' });
  });

  test('order: runtimeConfig.ipRanges, then the legacy range, then ipam.ranges', () => {
    const c = loadIPAMConfig(
      net(
        { subnet: '198.18.1.0/24', ranges: [[{ subnet: '198.18.2.0/24' }], [{ subnet: 'fd00::/64' }]] },
        { runtimeConfig: { ipRanges: [[{ subnet: '198.18.3.0/24' }]] } },
      ),
      '',
    );
    expect(show(c.ranges).map((s) => s[0]!.subnet)).toEqual(['198.18.3.0/24', '198.18.1.0/24', '198.18.2.0/24', 'fd00::/64']);
  });

  test('routes are returned verbatim (canonical text), resolvConf and dataDir kept', () => {
    const c = loadIPAMConfig(net({ subnet: '198.18.0.0/24', dataDir: '/run/x', resolvConf: '/etc/r', routes: [{ dst: '0.0.0.0/0' }, { dst: 'fd00::0/8', gw: 'fd00::1' }] }), '');
    expect(c.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: 'fd00::/8', gw: 'fd00::1' }]);
    expect(c.dataDir).toBe('/run/x');
    expect(c.resolvConf).toBe('/etc/r');
  });
});

describe('validation with the reference messages, code 7 naming field and value', () => {
  test.each([
    [{ subnet: '198.18.0.1/24' }, 'ipam.subnet', 'Network has host bits set. For a subnet mask of length 24 the network address is 198.18.0.0'],
    [{ ranges: [[{ subnet: '198.18.0.0/31' }]] }, 'ipam.ranges[0][0].subnet', 'Network 198.18.0.0/31 too small to allocate from'],
    [{ ranges: [[{ subnet: '198.18.0.1/32' }]] }, 'ipam.ranges[0][0].subnet', 'Network 198.18.0.1/32 too small to allocate from'],
    [{ ranges: [[{ subnet: 'fd00::/127' }]] }, 'ipam.ranges[0][0].subnet', 'Network fd00::/127 too small to allocate from'],
    [{ ranges: [[{ subnet: 'fd00::1/128' }]] }, 'ipam.ranges[0][0].subnet', 'Network fd00::1/128 too small to allocate from'],
    [{ ranges: [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.1.1' }]] }, 'ipam.ranges[0][0].rangeStart', 'RangeStart 198.18.1.1 not in network 198.18.0.0/24'],
    [{ ranges: [[{ subnet: '198.18.0.0/24', rangeEnd: '198.18.1.1' }]] }, 'ipam.ranges[0][0].rangeEnd', 'RangeEnd 198.18.1.1 not in network 198.18.0.0/24'],
    [{ ranges: [[{ subnet: '198.18.0.0/24' }, { subnet: 'fd00::/64' }]] }, 'ipam.ranges[0][1].subnet', 'invalid range set 0: mixed address families'],
    [{ ranges: [[{ subnet: '198.18.0.0/24' }, { subnet: '198.18.0.0/25' }]] }, 'ipam.ranges[0][1].subnet', 'subnets 198.18.0.1-198.18.0.254 and 198.18.0.1-198.18.0.126 overlap'],
    [{ ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: '198.18.0.0/26' }]] }, 'ipam.ranges[1][0]', 'range set 0 overlaps with 1: 198.18.0.1-198.18.0.254 and 198.18.0.1-198.18.0.62'],
    [{ ranges: [] }, 'ipam.ranges', 'no IP ranges specified'],
    [{}, 'ipam.ranges', 'no IP ranges specified'],
    [{ ranges: [[]] }, 'ipam.ranges[0]', 'invalid range set 0: empty range set'],
    [{ ranges: [[{ subnet: 'banana' }]] }, 'ipam.ranges[0][0].subnet', 'invalid CIDR address: banana'],
    [{ ranges: [[{ subnet: '198.18.0.0/24', gateway: '198.18.0.300' }]] }, 'ipam.ranges[0][0].gateway', 'not a valid IP address'],
    [{ subnet: '198.18.0.0/24', dataDir: 'relative/dir' }, 'ipam.dataDir', 'must be an absolute path'],
    [{ subnet: '198.18.0.0/24', dataDir: '/var/lib/../../etc' }, 'ipam.dataDir', 'must not contain ".." components'],
    [{ subnet: '198.18.0.0/24', lockTimeoutMs: -1 }, 'ipam.lockTimeoutMs', ''],
    [{ subnet: '198.18.0.0/24', reclaimStaleLeases: 'no' }, 'ipam.reclaimStaleLeases', ''],
    [{ subnet: '198.18.0.0/24', routes: [{ dst: 'x' }] }, 'ipam.routes[0].dst', 'invalid CIDR address: x'],
  ])('%j → %s', (ipam, field, msg) => {
    const e = fails(net(ipam));
    expect(e.code).toBe(7);
    expect(e.message).toContain(`field "${field}"`);
    expect(e.message).toContain(msg);
  });

  test('the value at fault is named', () => {
    expect(fails(net({ subnet: '198.18.0.1/24' })).message).toContain('"198.18.0.1/24"');
  });

  test("missing ipam: the reference's message", () => {
    const e = fails({ cniVersion: '1.0.0', name: 'n' });
    expect(e.code).toBe(7);
    expect(e.message).toContain("IPAM config missing 'ipam' key");
  });

  test('more than one range set per family needs cniVersion >= 0.3.0', () => {
    const two = { ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: '198.18.1.0/24' }]] };
    expect(fails({ ...net(two), cniVersion: '0.2.0' }).message).toContain('CNI version 0.2.0 does not support more than 1 address per family');
    expect(loadIPAMConfig({ ...net(two), cniVersion: '0.3.0' }, '').ranges).toHaveLength(2);
    expect(loadIPAMConfig({ ...net({ ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: 'fd00::/64' }]] }), cniVersion: '0.2.0' }, '').ranges).toHaveLength(2);
  });
});

describe('requested IPs', () => {
  test('CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips are combined, deduplicated, prefix ignored', () => {
    const c = loadIPAMConfig(
      net({ ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: 'fd00::/64' }]] }, { args: { cni: { ips: ['fd00::5/64', '198.18.0.9'] } }, runtimeConfig: { ips: ['198.18.0.9/24'] } }),
      'IgnoreUnknown=1;K8S_POD_NAME=x;IP=198.18.0.7',
    );
    expect(c.requestedIPs.map(formatIP)).toEqual(['198.18.0.7', 'fd00::5', '198.18.0.9']);
  });

  test('a bad IP in args is code 7 naming it; a bad CNI_ARGS IP is code 4', () => {
    const e = fails(net({ subnet: '198.18.0.0/24' }, { args: { cni: { ips: ['nope'] } } }));
    expect([e.code, e.message]).toEqual([7, expect.stringContaining('field "args.cni.ips[0]" = "nope"')]);
    const e2 = fails(net({ subnet: '198.18.0.0/24' }), 'IP=1.2.3');
    expect(e2.code).toBe(4);
    expect(e2.message).toContain('"1.2.3"');
  });

  test('unknown CNI_ARGS keys are refused unless IgnoreUnknown', () => {
    expect(fails(net({ subnet: '198.18.0.0/24' }), 'FOO=bar').code).toBe(4);
    expect(loadIPAMConfig(net({ subnet: '198.18.0.0/24' }), 'IgnoreUnknown=true;FOO=bar').requestedIPs).toEqual([]);
  });
});

// Engine text that must never reach a CNI error (issue 10: "null is not an object (evaluating 'e.family')").
const ENGINE_TEXT = /null|undefined|is not an object|evaluating|TypeError|Cannot read/;

describe('range rules after defaults: network < rangeStart ≤ rangeEnd ≤ last usable, gateway in the subnet (issue 10)', () => {
  test('issue case: rangeStart after rangeEnd is refused with code 7 naming rangeStart and its value', () => {
    const e = fails(net({ ranges: [[{ subnet: '198.18.12.0/24', rangeStart: '198.18.12.20', rangeEnd: '198.18.12.10' }]] }));
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      'invalid config: field "ipam.ranges[0][0].rangeStart" = "198.18.12.20": invalid range set 0: 198.18.12.20 is in network 198.18.12.0/24 but after end 198.18.12.10',
    );
  });

  test('issue case: the IPv4 broadcast address as rangeStart (and gateway) of a /30 is code 7, no engine text', () => {
    const e = fails(net({ ranges: [[{ subnet: '255.255.255.252/30', rangeStart: '255.255.255.255', gateway: '255.255.255.255' }]] }));
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      'invalid config: field "ipam.ranges[0][0].rangeStart" = "255.255.255.255": invalid range set 0: RangeStart 255.255.255.255 is the broadcast address of network 255.255.255.252/30',
    );
    expect(e.message).not.toMatch(ENGINE_TEXT);
  });

  test.each([
    // [range, field at fault, message]
    [{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.0' }, 'rangeStart', 'RangeStart 198.18.0.0 is the network address of network 198.18.0.0/24'],
    [{ subnet: '198.18.0.0/24', rangeEnd: '198.18.0.0' }, 'rangeEnd', 'RangeEnd 198.18.0.0 is the network address of network 198.18.0.0/24'],
    [{ subnet: '198.18.0.0/24', rangeEnd: '198.18.0.255' }, 'rangeEnd', 'RangeEnd 198.18.0.255 is the broadcast address of network 198.18.0.0/24'],
    [{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.255' }, 'rangeStart', 'RangeStart 198.18.0.255 is the broadcast address of network 198.18.0.0/24'],
    [{ subnet: 'fd00::/64', rangeStart: 'fd00::' }, 'rangeStart', 'RangeStart fd00:: is the network address of network fd00::/64'],
    [{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.10', rangeEnd: '198.18.0.9' }, 'rangeStart', '198.18.0.10 is in network 198.18.0.0/24 but after end 198.18.0.9'],
    [{ subnet: 'fd00::/64', rangeStart: 'fd00::10', rangeEnd: 'fd00::f' }, 'rangeStart', 'fd00::10 is in network fd00::/64 but after end fd00::f'],
    [{ subnet: '198.18.0.0/24', rangeStart: 'fd00::1' }, 'rangeStart', 'RangeStart fd00::1 not in network 198.18.0.0/24'],
    [{ subnet: 'fd00::/64', rangeEnd: '198.18.0.1' }, 'rangeEnd', 'RangeEnd 198.18.0.1 not in network fd00::/64'],
    [{ subnet: '198.18.0.0/24', gateway: '198.18.1.1' }, 'gateway', 'gateway 198.18.1.1 not in network 198.18.0.0/24'],
    [{ subnet: '198.18.0.0/24', gateway: 'fd00::1' }, 'gateway', 'gateway fd00::1 not in network 198.18.0.0/24'],
    [{ subnet: 'fd00::/64', gateway: '198.18.0.1' }, 'gateway', 'gateway 198.18.0.1 not in network fd00::/64'],
  ])('%j: field %s refused, code 7: %s', (range, field, msg) => {
    const e = fails(net({ ranges: [[{ subnet: '198.18.99.0/24' }, range]] }));
    expect(e.code).toBe(7);
    expect(e.message).toContain(`field "ipam.ranges[0][1].${field}" = ${JSON.stringify((range as Record<string, string>)[field])}: invalid range set 0: ${msg}`);
    expect(e.message).not.toMatch(ENGINE_TEXT);
  });

  test('the legacy range and runtimeConfig.ipRanges are checked by the same rules, named by their own paths', () => {
    const legacy = fails(net({ subnet: '198.18.0.0/24', rangeStart: '198.18.0.30', rangeEnd: '198.18.0.20' }));
    expect([legacy.code, legacy.message]).toEqual([7, expect.stringContaining('field "ipam.rangeStart" = "198.18.0.30"')]);
    const rt = fails(net({ ranges: [[{ subnet: 'fd00::/64' }]] }, { runtimeConfig: { ipRanges: [[{ subnet: '198.18.0.0/24', gateway: '198.18.5.5' }]] } }));
    expect([rt.code, rt.message]).toEqual([7, expect.stringContaining('field "runtimeConfig.ipRanges[0][0].gateway" = "198.18.5.5"')]);
  });

  test.each([
    [{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.7', rangeEnd: '198.18.0.7' }, '198.18.0.7', '198.18.0.7'],
    [{ subnet: '198.18.0.0/30', rangeStart: '198.18.0.1', rangeEnd: '198.18.0.2' }, '198.18.0.1', '198.18.0.2'],
    [{ subnet: 'fd00::/126', rangeEnd: 'fd00::3' }, 'fd00::1', 'fd00::3'], // IPv6 has no broadcast address
    [{ subnet: '255.255.255.252/30', gateway: '255.255.255.254' }, '255.255.255.253', '255.255.255.254'],
  ])('accepted at the edges: %j → %s-%s', (range, start, end) => {
    const r = loadIPAMConfig(net({ ranges: [[range]] }), '').ranges[0]![0]!;
    expect([formatIP(r.rangeStart), formatIP(r.rangeEnd)]).toEqual([start, end]);
  });
});

/** n disjoint /30s from 10.0.0.0 (n ≤ 2^22). */
const smallRanges = (n: number, base = 0) =>
  Array.from({ length: n }, (_, i) => ({ subnet: `10.${((base + i) >> 14) & 255}.${((base + i) >> 6) & 255}.${((base + i) & 63) * 4}/30` }));

function timed<T>(fn: () => T): [T, number] {
  const t0 = performance.now();
  const out = fn();
  return [out, performance.now() - t0];
}

describe('validation cost: sort-based overlap checks and bounds on what a config may ask for (issue 10)', () => {
  test('4,096 small ranges in one set (the bound) validate in well under a second', () => {
    const [c, ms] = timed(() => loadIPAMConfig(net({ ranges: [smallRanges(4096)] }), ''));
    expect(c.ranges[0]).toHaveLength(4096);
    expect(ms).toBeLessThan(1000);
  });

  test('5,000 small ranges in one set: code 7 naming the set and the bound, fast', () => {
    const [e, ms] = timed(() => fails(net({ ranges: [smallRanges(5000)] })));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid config: field "ipam.ranges[0]" has 5000 ranges: at most 4096 ranges in all range sets');
    expect(ms).toBeLessThan(1000);
  });

  test('the range bound counts every set together, runtimeConfig.ipRanges included', () => {
    const e = fails(net({ ranges: [smallRanges(3000), smallRanges(1000, 3000)] }, { runtimeConfig: { ipRanges: [smallRanges(100, 5000)] } }));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid config: field "ipam.ranges[1]" has 1000 ranges, 4100 in all: at most 4096 ranges in all range sets');
  });

  test('more than 256 range sets: code 7 naming the field and the bound', () => {
    const sets = smallRanges(257).map((r) => [r]);
    const e = fails(net({ ranges: sets }));
    expect([e.code, e.message]).toEqual([7, 'invalid config: field "ipam.ranges" has 257 range sets: at most 256 range sets in all']);
    expect(loadIPAMConfig(net({ ranges: sets.slice(0, 256) }), '').ranges).toHaveLength(256);
  });

  test('an overlap between the first and the last of 4,096 ranges is found, fast, naming the later range', () => {
    const rs = smallRanges(4096);
    rs[4095] = { subnet: '10.0.0.0/29' }; // covers the first /30
    const [e, ms] = timed(() => fails(net({ ranges: [rs] })));
    expect(e.message).toBe(
      'invalid config: field "ipam.ranges[0][4095].subnet" = "10.0.0.0/29": invalid range set 0: subnets 10.0.0.1-10.0.0.2 and 10.0.0.1-10.0.0.6 overlap',
    );
    expect(ms).toBeLessThan(1000);
  });

  test('an overlap across two sets of 2,048 ranges is found, fast, naming the range in the later set', () => {
    const a = smallRanges(2048);
    const b = smallRanges(2048, 2048);
    b[2047] = { subnet: '10.0.0.0/30' }; // the same as a[0]
    const [e, ms] = timed(() => fails(net({ ranges: [a, b] })));
    expect(e.message).toBe(
      'invalid config: field "ipam.ranges[1][2047]" = {"subnet":"10.0.0.0/30"}: range set 0 overlaps with 1: 10.0.0.1-10.0.0.2 and 10.0.0.1-10.0.0.2',
    );
    expect(ms).toBeLessThan(1000);
  });

  test('ranges that share a subnet but not addresses do not overlap (the reference compares start-end, not subnets)', () => {
    const c = loadIPAMConfig(
      net({ ranges: [[{ subnet: '198.18.0.0/24', rangeEnd: '198.18.0.100' }, { subnet: '198.18.0.0/24', rangeStart: '198.18.0.101' }], [{ subnet: '198.18.1.0/24' }]] }),
      '',
    );
    expect(c.ranges[0]).toHaveLength(2);
  });

  test('100,000 args.cni.ips: code 7 naming the field and the bound, fast', () => {
    const ips = Array.from({ length: 100_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const [e, ms] = timed(() => fails(net({ subnet: '10.0.0.0/8' }, { args: { cni: { ips } } })));
    expect([e.code, e.message]).toEqual([7, 'invalid config: field "args.cni.ips" has 100000 entries: at most 1024 requested IPs in all']);
    expect(ms).toBeLessThan(1000);
  });

  test('the requested-IP bound counts CNI_ARGS IP, args.cni.ips and runtimeConfig.ips together; 1,024 entries are accepted', () => {
    const ips = (n: number, base = 0) => Array.from({ length: n }, (_, i) => `10.0.${(base + i) >> 8}.${(base + i) & 255}`);
    const e = fails(net({ subnet: '10.0.0.0/16' }, { args: { cni: { ips: ips(600) } }, runtimeConfig: { ips: ips(424, 600) } }), 'IP=10.0.9.9');
    expect([e.code, e.message]).toEqual([7, 'invalid config: field "runtimeConfig.ips" has 424 entries, 1025 in all: at most 1024 requested IPs in all']);
    const [c, ms] = timed(() => loadIPAMConfig(net({ subnet: '10.0.0.0/16' }, { args: { cni: { ips: ips(512) } }, runtimeConfig: { ips: ips(512) } }), ''));
    expect(c.requestedIPs).toHaveLength(512); // the same 512 twice: deduplicated
    expect(ms).toBeLessThan(1000);
  });

});

describe('seeded fuzz of range fields near the edges: code 7 or a range that satisfies every rule', () => {
  // mulberry32: a small seeded PRNG, so a failure reproduces.
  let seed = 0x5eed10;
  const rnd = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const V4 = ['0.0.0.0', '198.18.12.0', '255.255.255.0', '255.255.255.252'];
  const V6 = ['::', 'fd00::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00'];
  const text = (f: 4 | 6, v: bigint): string => formatIP({ family: f, value: v });

  function randomRange(): Record<string, string> {
    const f: 4 | 6 = rnd() < 0.6 ? 4 : 6;
    const bitsN = f === 4 ? 32 : 128;
    const max = (1n << BigInt(bitsN)) - 1n;
    const base = parseIP(pick(f === 4 ? V4 : V6))!.value;
    const prefix = bitsN - Math.floor(rnd() * 9); // /24../32 or /120../128
    const size = 1n << BigInt(bitsN - prefix);
    const net = base & ~(size - 1n) & max;
    const near = (): string => {
      if (rnd() < 0.05) return f === 4 ? 'fd00::1' : '198.18.0.1'; // the other family
      const off = BigInt(Math.floor(rnd() * (Number(size) + 4))) - 2n; // from 2 before to 2 after the subnet
      const v = net + off;
      return text(f, v < 0n ? 0n : v > max ? max : v);
    };
    const r: Record<string, string> = { subnet: `${text(f, rnd() < 0.1 ? net + 1n : net)}/${prefix}` };
    if (rnd() < 0.6) r.rangeStart = near();
    if (rnd() < 0.6) r.rangeEnd = near();
    if (rnd() < 0.4) r.gateway = near();
    return r;
  }

  test('3,000 random ranges: each is refused with code 7 naming a field of it, or canonical and walked inside its bounds', () => {
    let accepted = 0;
    const bad: unknown[] = []; // collected, so one expect reports every counterexample
    const FIELD = /^invalid config: field "ipam\.ranges\[0\]\[0\]\.(subnet|rangeStart|rangeEnd|gateway)" = "[^"]+": /;
    for (let i = 0; i < 3000; i++) {
      const range = randomRange();
      let sets: RangeSet[];
      try {
        sets = loadIPAMConfig(net({ ranges: [[range]] }), '').ranges;
      } catch (e) {
        const m = e instanceof CniError ? e.message : String(e);
        if (!(e instanceof CniError) || e.code !== 7 || !FIELD.test(m) || ENGINE_TEXT.test(m)) bad.push({ range, error: m });
        continue;
      }
      accepted++;
      const r = sets[0]![0]!;
      const f = r.subnet.ip.family;
      const size = 1n << BigInt((f === 4 ? 32 : 128) - r.subnet.prefix);
      const network = r.subnet.ip.value;
      const lastUsable = network + size - (f === 4 ? 2n : 1n);
      const ordered = network < r.rangeStart.value && r.rangeStart.value <= r.rangeEnd.value && r.rangeEnd.value <= lastUsable;
      const gwIn = r.gateway.family === f && r.gateway.value >= network && r.gateway.value < network + size;
      const walked = [...iterate(sets[0]!, null)];
      const inside = walked.every(({ ip }) => ip.family === f && ip.value >= r.rangeStart.value && ip.value <= r.rangeEnd.value);
      if (!ordered || !gwIn || !inside || BigInt(walked.length) !== rangeCapacity(r)) bad.push({ range, ordered, gwIn, inside, walked: walked.length });
    }
    expect(bad).toEqual([]);
    expect(accepted).toBeGreaterThan(300); // the generator reaches both outcomes
    expect(accepted).toBeLessThan(2700);
  });

});
