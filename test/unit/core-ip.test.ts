// IP math (shared/ip.ts) against Go's net package: parsing, formatting (net.IP.String), CIDRs.
import { addTo, addressAt, compareIP, contains, formatCIDR, formatIP, familyOf, ipEqual, ipNetEqual, lastAddress, networkOf, parseCIDR, parseIP, prefixToMask4, spanAt, spanSize } from '../../shared/ip';

// [input, Go net.ParseIP(input).String() or null, family by To4()] — generated with Go 1.19.
const GO_PARSE_IP: Array<[string, string | null, number | null]> = [
  ["198.18.0.1", "198.18.0.1", 4],
  ["0.0.0.0", "0.0.0.0", 4],
  ["255.255.255.255", "255.255.255.255", 4],
  ["010.0.0.1", null, null],
  ["1.2.3", null, null],
  ["1.2.3.4.5", null, null],
  ["256.1.1.1", null, null],
  [" 1.2.3.4", null, null],
  ["1.2.3.4 ", null, null],
  ["", null, null],
  ["::", "::", 6],
  ["::1", "::1", 6],
  ["fd00::", "fd00::", 6],
  ["fd00:0:0:0:0:0:0:1", "fd00::1", 6],
  ["FD00::ABCD", "fd00::abcd", 6],
  ["fd00:0:0:1:0:0:0:1", "fd00:0:0:1::1", 6],
  ["fd00:1:0:0:1:0:0:1", "fd00:1::1:0:0:1", 6],
  ["1:0:0:0:0:0:0:0", "1::", 6],
  ["0:0:0:0:0:0:0:1", "::1", 6],
  ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8", 6],
  ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", 6],
  ["::ffff:198.18.0.1", "198.18.0.1", 4],
  ["::198.18.0.1", "::c612:1", 6],
  ["64:ff9b::198.18.0.1", "64:ff9b::c612:1", 6],
  ["fd00::1::2", null, null],
  ["fd00:::1", null, null],
  ["12345::", null, null],
  ["g::1", null, null],
  ["fd00::1%eth0", null, null],
  ["fd00:0:0:0:0:0:0:0:1", null, null],
  ["1:0:1:0:0:1:0:0", "1:0:1::1:0:0", 6],
  ["fd00:0000::0001", "fd00::1", 6],
  ["::ffff:1.2.3", null, null],
  ["1::2:3:4:5:6:7", "1:0:2:3:4:5:6:7", 6],
];

// [input, Go's ParseCIDR ip/prefix, Go's network] — generated with Go 1.19.
const GO_PARSE_CIDR: Array<[string, string | null, string | null]> = [
  ["198.18.0.5/24", "198.18.0.5/24", "198.18.0.0/24"],
  ["198.18.0.5/32", "198.18.0.5/32", "198.18.0.5/32"],
  ["198.18.0.5/33", null, null],
  ["198.18.0.5/", null, null],
  ["198.18.0.5", null, null],
  ["fd00::5/64", "fd00::5/64", "fd00::/64"],
  ["fd00::5/128", "fd00::5/128", "fd00::5/128"],
  ["fd00::5/129", null, null],
  ["0.0.0.0/0", "0.0.0.0/0", "0.0.0.0/0"],
  ["::/0", "::/0", "::/0"],
  ["198.18.0.5/-1", null, null],
  ["fd00:1:2:3:4:5:6:7/48", "fd00:1:2:3:4:5:6:7/48", "fd00:1:2::/48"],
  ["198.18.0.255/23", "198.18.0.255/23", "198.18.0.0/23"],
  ["garbage/24", null, null],
  ["198.18.0.5/24/1", null, null],
  ["fd00::5/64 ", null, null],
];

describe('parseIP/formatIP match net.ParseIP/net.IP.String', () => {
  test.each(GO_PARSE_IP)('%j → %j', (input, go, fam) => {
    const ip = parseIP(input);
    if (go === null) {
      expect(ip).toBeNull();
      return;
    }
    expect(ip).not.toBeNull();
    expect(formatIP(ip!)).toBe(go);
    expect(ip!.family).toBe(fam);
    expect(familyOf(input)).toBe(fam);
  });
});

describe('parseCIDR matches net.ParseCIDR', () => {
  test.each(GO_PARSE_CIDR)('%j → %j (network %j)', (input, go, net) => {
    const n = parseCIDR(input);
    if (go === null) {
      expect(n).toBeNull();
      return;
    }
    expect(formatCIDR(n!)).toBe(go);
    expect(formatCIDR(networkOf(n!))).toBe(net);
  });
  test('an IPv4-mapped IPv6 CIDR is refused (prefix counted over 128 bits: ambiguous; Go turns ::ffff:1.2.3.4/120 into 1.2.3.4/24)', () => {
    expect(parseCIDR('::ffff:1.2.3.4/120')).toBeNull();
  });
  test.each([[null], [undefined], [42]])('a non-string %j is not an address', (v) => {
    expect(parseIP(v as unknown as string)).toBeNull();
    expect(parseCIDR(v as unknown as string)).toBeNull();
  });
});

describe('arithmetic', () => {
  const n = (s: string) => parseCIDR(s)!;
  const ip = (s: string) => parseIP(s)!;
  test.each([
    ['198.18.0.5/24', '198.18.0.255'],
    ['198.18.0.5/32', '198.18.0.5'],
    ['198.18.0.0/15', '198.19.255.255'],
    ['0.0.0.0/0', '255.255.255.255'],
    ['fd00::5/64', 'fd00::ffff:ffff:ffff:ffff'],
    ['fd00::/8', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['fd00::5/128', 'fd00::5'],
  ])('lastAddress(%s) = %s', (c, last) => expect(formatIP(lastAddress(n(c)))).toBe(last));

  test.each([
    ['198.18.0.0/15', '198.19.255.255', true],
    ['198.18.0.0/15', '198.20.0.0', false],
    ['198.18.0.0/24', 'fd00::1', false],
    ['fd00::/8', 'fdff::1', true],
    ['fd00::/8', 'fe00::1', false],
    ['0.0.0.0/0', '203.0.113.1', true],
    ['::/0', '198.18.0.1', false], // families never mix
  ])('contains(%s, %s) = %s', (c, a, want) => expect(contains(n(c), ip(a))).toBe(want));

  test.each([
    ['198.18.0.255', 1n, '198.18.1.0'],
    ['198.18.1.0', -1n, '198.18.0.255'],
    ['255.255.255.255', 1n, null],
    ['0.0.0.0', -1n, null],
    ['fd00::ffff', 1n, 'fd00::1:0'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 1n, null],
    ['fd00::', 1n << 64n, 'fd00:0:0:1::'],
  ])('addTo(%s, %s) = %s', (a, d, want) => {
    const r = addTo(ip(a), d);
    expect(r === null ? null : formatIP(r)).toBe(want);
  });

  test('compareIP / ipEqual', () => {
    expect(compareIP(ip('198.18.0.2'), ip('198.18.0.10'))).toBeLessThan(0);
    expect(compareIP(ip('fd00::10'), ip('fd00::2'))).toBeGreaterThan(0);
    expect(compareIP(ip('198.18.0.2'), ip('::ffff:198.18.0.2'))).toBe(0);
    expect(ipEqual(ip('198.18.0.2'), ip('::ffff:198.18.0.2'))).toBe(true);
    expect(ipEqual(ip('0.0.0.1'), ip('::1'))).toBe(false); // same value, different family
  });

  test.each([
    [0, '0.0.0.0'],
    [8, '255.0.0.0'],
    [15, '255.254.0.0'],
    [24, '255.255.255.0'],
    [31, '255.255.255.254'],
    [32, '255.255.255.255'],
  ])('prefixToMask4(%i) = %s', (p, m) => expect(prefixToMask4(p)).toBe(m));
});

test('ipNetEqual: same address and prefix; host bits and family count', () => {
  const n = (s: string) => parseCIDR(s)!;
  expect(ipNetEqual(n('fd00:0::5/64'), n('fd00::5/64'))).toBe(true);
  expect(ipNetEqual(n('198.18.0.5/24'), n('198.18.0.0/24'))).toBe(false);
  expect(ipNetEqual(n('198.18.0.5/24'), n('198.18.0.5/25'))).toBe(false);
  expect(ipNetEqual(n('0.0.0.0/0'), n('::/0'))).toBe(false);
});

test('an IPv6 value holding an IPv4-mapped address (from netlink bytes) prints as ::ffff:a.b.c.d', () => {
  expect(formatIP({ family: 6, value: 0xffffc6120001n })).toBe('::ffff:198.18.0.1');
  expect(formatIP({ family: 6, value: 0xc6120001n })).toBe('::c612:1'); // IPv4-compatible is not mapped
});

describe('arithmetic that cannot yield null: addressAt, spanSize, spanAt', () => {
  const ip = (s: string) => parseIP(s)!;
  const net = (s: string) => parseCIDR(s)!;

  test.each([
    ['198.18.0.0/24', 0n, '198.18.0.0'],
    ['198.18.0.0/24', 1n, '198.18.0.1'],
    ['198.18.0.0/24', -1n, '198.18.0.255'],
    ['198.18.0.0/24', -2n, '198.18.0.254'],
    ['255.255.255.252/30', -1n, '255.255.255.255'],
    ['fd00::/64', -1n, 'fd00::ffff:ffff:ffff:ffff'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126', 3n, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ])('addressAt(%s, %s) = %s', (n, i, want) => expect(formatIP(addressAt(net(n), i))).toBe(want));

  test('addressAt outside the network throws RangeError, never returns null', () => {
    expect(() => addressAt(net('255.255.255.252/30'), 4n)).toThrow(RangeError);
    expect(() => addressAt(net('198.18.0.0/24'), -257n)).toThrow(RangeError);
  });

  test('spanSize: inclusive, 0 when out of order or across families', () => {
    expect(spanSize(ip('198.18.0.10'), ip('198.18.0.20'))).toBe(11n);
    expect(spanSize(ip('198.18.0.10'), ip('198.18.0.10'))).toBe(1n);
    expect(spanSize(ip('198.18.0.20'), ip('198.18.0.10'))).toBe(0n);
    expect(spanSize(ip('0.0.0.1'), ip('::2'))).toBe(0n);
    expect(spanSize(ip('::'), ip('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))).toBe(1n << 128n);
  });

  test('spanAt stays inside the span: the last offset is the end, one more throws', () => {
    expect(formatIP(spanAt(ip('255.255.255.254'), ip('255.255.255.255'), 1n))).toBe('255.255.255.255');
    expect(() => spanAt(ip('255.255.255.254'), ip('255.255.255.255'), 2n)).toThrow(RangeError);
    expect(() => spanAt(ip('198.18.0.1'), ip('198.18.0.9'), -1n)).toThrow(RangeError);
    expect(() => spanAt(ip('198.18.0.20'), ip('198.18.0.10'), 0n)).toThrow(RangeError);
  });
});
