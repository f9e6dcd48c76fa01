// Result types for every spec version and conversion between them (shared/types.ts), checked against
// ground truth from the reference Go library (core-go-conversions.json, made by core-go-conversions.go.txt).
import { convertResult, formatResult, parseResult, resultVersion, type Result } from '../../shared/cni/types';
import { CniError } from '../../shared/cni/errors';
import { SUPPORTED_VERSIONS } from '../../shared/cni/version';
import fixtures from './core-go-conversions.json';

type Json = Record<string, unknown>;
interface Conversion {
  name: string;
  from: string;
  to: string;
  out?: Json;
  error?: string;
}
const VERSIONS = [...SUPPORTED_VERSIONS];
const ROUTE_EXTRAS = ['mtu', 'advmss', 'priority', 'table', 'scope'];
const IFACE_EXTRAS = ['mtu', 'socketPath', 'pciID'];

/**
 * Our one deliberate difference from the Go library: the 1.1.0-only fields (interface mtu/socketPath/
 * pciID, route mtu/advmss/priority/table/scope) are printed only for 1.1.0, as the spec defines them.
 * Go shares one Route type from 0.3.0 up and one Interface type for 1.0.0/1.1.0, so it leaks them.
 */
function withoutNewerFields(out: Json, to: string): Json {
  if (to === '1.1.0') return out;
  const o = structuredClone(out) as { routes?: Json[]; interfaces?: Json[] };
  for (const r of o.routes ?? []) for (const k of ROUTE_EXTRAS) delete r[k];
  for (const i of o.interfaces ?? []) for (const k of IFACE_EXTRAS) delete i[k];
  return o as Json;
}

function sample(name: string): Json {
  return fixtures.samples.find((s) => s.name === name)!.result as Json;
}

describe('conversions match the Go library', () => {
  const rows = (fixtures.conversions as Conversion[]).map((c) => [c.name, c.to, c] as const);
  test.each(rows)('%s → %s', (_n, _t, c) => {
    const from = sample(c.name);
    if (c.error) {
      expect(() => convertResult(from, c.from, c.to)).toThrow(c.error);
      try {
        convertResult(from, c.from, c.to);
      } catch (e) {
        expect(e).toBeInstanceOf(CniError);
        expect((e as CniError).code).toBe(999);
      }
      return;
    }
    expect(convertResult(from, c.from, c.to)).toEqual(withoutNewerFields(c.out!, c.to));
  });

  test('the fixtures cover every version pair and the error case', () => {
    const c = fixtures.conversions as Conversion[];
    expect(new Set(c.map((x) => x.from))).toEqual(new Set(VERSIONS));
    expect(new Set(c.map((x) => x.to))).toEqual(new Set(VERSIONS));
    expect(c.filter((x) => x.error === 'cannot convert: no valid IP addresses').map((x) => x.to)).toEqual(['0.1.0', '0.2.0']);
  });
});

const FULL: Result = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'br0', mac: '0a:58:c6:12:00:01', mtu: 9000 },
    { name: 'eth0', mac: '0a:58:c6:12:00:05', mtu: 1400, sandbox: '/var/run/netns/x', socketPath: '/run/s.sock', pciID: '0000:00:1f.6' },
  ],
  ips: [
    { interface: 1, address: '198.18.0.5/24', gateway: '198.18.0.1' },
    { interface: 1, address: 'fd00:1::5/64', gateway: 'fd00:1::1' },
    { interface: 1, address: '198.18.1.6/24' },
    { interface: 1, address: 'fd00:2::6/64' },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '198.18.0.1' },
    { dst: 'fd00:9::/64', gw: 'fd00:1::1', mtu: 1300, advmss: 1240, priority: 5, table: 100, scope: 0 },
    { dst: '198.19.0.0/16', scope: 253, table: 0 },
  ],
  dns: { nameservers: ['198.18.0.53'], domain: 'x.test', search: ['a.test'], options: ['ndots:5'] },
};

describe('formatResult per version', () => {
  test.each(['0.1.0', '0.2.0'])('%s: first IPv4 and first IPv6 only, routes split by family, only dst/gw', (v) => {
    expect(formatResult(FULL, v)).toEqual({
      cniVersion: v,
      ip4: { ip: '198.18.0.5/24', gateway: '198.18.0.1', routes: [{ dst: '0.0.0.0/0', gw: '198.18.0.1' }, { dst: '198.19.0.0/16' }] },
      ip6: { ip: 'fd00:1::5/64', gateway: 'fd00:1::1', routes: [{ dst: 'fd00:9::/64', gw: 'fd00:1::1' }] },
      dns: FULL.dns,
    });
  });
  test.each(['0.1.0', '0.2.0'])('%s: a family without an IP loses its routes; dns always printed', (v) => {
    const r: Result = { cniVersion: '1.1.0', ips: [{ address: '198.18.0.5/24' }], routes: [{ dst: '::/0', gw: 'fd00::1' }] };
    expect(formatResult(r, v)).toEqual({ cniVersion: v, ip4: { ip: '198.18.0.5/24' }, dns: {} });
  });
  test.each(['0.1.0', '0.2.0'])('%s: no IP at all → code 999 "cannot convert: no valid IP addresses"', (v) => {
    for (const r of [{ cniVersion: '1.1.0' }, { cniVersion: '1.1.0', interfaces: [{ name: 'br0' }], routes: [{ dst: '0.0.0.0/0' }] }]) {
      expect(() => formatResult(r, v)).toThrow(new CniError(999, 'cannot convert: no valid IP addresses'));
    }
  });
  test.each(['0.3.0', '0.3.1', '0.4.0'])('%s: version per IP from its family, no 1.1 fields, "dns":{} when empty', (v) => {
    const out = formatResult(FULL, v);
    expect(out).toEqual({
      cniVersion: v,
      interfaces: [{ name: 'br0', mac: '0a:58:c6:12:00:01' }, { name: 'eth0', mac: '0a:58:c6:12:00:05', sandbox: '/var/run/netns/x' }],
      ips: [
        { version: '4', interface: 1, address: '198.18.0.5/24', gateway: '198.18.0.1' },
        { version: '6', interface: 1, address: 'fd00:1::5/64', gateway: 'fd00:1::1' },
        { version: '4', interface: 1, address: '198.18.1.6/24' },
        { version: '6', interface: 1, address: 'fd00:2::6/64' },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '198.18.0.1' }, { dst: 'fd00:9::/64', gw: 'fd00:1::1' }, { dst: '198.19.0.0/16' }],
      dns: FULL.dns,
    });
    expect(formatResult({ cniVersion: '1.1.0', ips: [{ address: '198.18.0.5/24' }] }, v)).toEqual({ cniVersion: v, ips: [{ version: '4', address: '198.18.0.5/24' }], dns: {} });
  });
  test('1.0.0: no version in ips, no 1.1 fields, empty dns omitted', () => {
    const out = formatResult(FULL, '1.0.0') as { interfaces: Json[]; ips: Json[]; routes: Json[] };
    expect(out.interfaces[1]).toEqual({ name: 'eth0', mac: '0a:58:c6:12:00:05', sandbox: '/var/run/netns/x' });
    expect(out.ips[0]).toEqual({ interface: 1, address: '198.18.0.5/24', gateway: '198.18.0.1' });
    expect(out.routes[1]).toEqual({ dst: 'fd00:9::/64', gw: 'fd00:1::1' });
    expect(formatResult({ cniVersion: '1.1.0', ips: [{ address: '198.18.0.5/24' }], dns: {} }, '1.0.0')).toEqual({ cniVersion: '1.0.0', ips: [{ address: '198.18.0.5/24' }] });
  });
  test('1.1.0: everything, including zero table/scope (pointers in Go) ', () => {
    expect(formatResult(FULL, '1.1.0')).toEqual({ ...FULL });
  });
  test('field order is the Go struct order (cniVersion first, dns last)', () => {
    expect(Object.keys(formatResult(FULL, '0.4.0'))).toEqual(['cniVersion', 'interfaces', 'ips', 'routes', 'dns']);
    expect(Object.keys((formatResult(FULL, '0.4.0') as { ips: Json[] }).ips[0]!)).toEqual(['version', 'interface', 'address', 'gateway']);
  });
  test.each(['0.5.0', '2.0.0', ''])('unsupported target %j → code 1', (v) => {
    expect(() => formatResult(FULL, v)).toThrow(expect.objectContaining({ code: 1 }));
  });
});

describe('parseResult per version (IPAM answers and prevResult) → the current shape', () => {
  test.each(VERSIONS)('round trip of the current result through %s keeps all that version can hold', (v) => {
    if (v === '0.1.0' || v === '0.2.0') {
      // only the first IP of each family and their dst/gw routes survive
      expect(parseResult(formatResult(FULL, v), v)).toEqual({
        cniVersion: '1.1.0',
        ips: [{ address: '198.18.0.5/24', gateway: '198.18.0.1' }, { address: 'fd00:1::5/64', gateway: 'fd00:1::1' }],
        routes: [{ dst: '0.0.0.0/0', gw: '198.18.0.1' }, { dst: '198.19.0.0/16' }, { dst: 'fd00:9::/64', gw: 'fd00:1::1' }],
        dns: FULL.dns,
      });
      return;
    }
    const back = parseResult(formatResult(FULL, v), v);
    if (v === '1.1.0') expect(back).toEqual(FULL);
    else expect(back).toEqual(withoutNewerFields(FULL as unknown as Json, v));
  });

  test('an 0.4.0 prevResult is parsed in the config version and upconverted (version dropped)', () => {
    const prev = { cniVersion: '0.4.0', interfaces: [{ name: 'eth0', sandbox: '/n' }], ips: [{ version: '4', interface: 0, address: '198.18.0.2/24' }], dns: {} };
    expect(parseResult(prev, '0.4.0')).toEqual({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0', sandbox: '/n' }], ips: [{ interface: 0, address: '198.18.0.2/24' }] });
  });
  test('an 0.2.0 result flattens ip4/ip6 routes in order', () => {
    const r = parseResult(sample('dual-0.2.0'), '0.2.0');
    expect(r.ips).toEqual([{ address: '198.18.4.4/24', gateway: '198.18.4.1' }, { address: 'fd00:4::4/64' }]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0', gw: '198.18.4.1' }, { dst: '198.19.0.0/16' }, { dst: '::/0', gw: 'fd00:4::1' }]);
    expect(r.interfaces).toBeUndefined();
  });
  test('empty strings and empty lists are absent, as Go omitempty prints them', () => {
    expect(parseResult({ cniVersion: '1.0.0', interfaces: [], ips: [{ address: '198.18.0.1/24', gateway: '' }], routes: null, dns: { domain: '', nameservers: [] } }, '1.0.0')).toEqual({
      cniVersion: '1.1.0',
      ips: [{ address: '198.18.0.1/24' }],
    });
  });

  const BAD: Array<[string, string, unknown, string]> = [
    ['not an object', '1.0.0', [], 'failed to parse result: result must be an object, got []'],
    ['ips not a list', '1.0.0', { ips: {} }, 'failed to parse result: ips must be a list, got {}'],
    ['ip entry not an object', '0.4.0', { ips: ['198.18.0.1/24'] }, 'failed to parse result: ips[0] must be an object, got "198.18.0.1/24"'],
    ['address missing', '1.0.0', { ips: [{ gateway: '198.18.0.1' }] }, 'failed to parse result: ips[0].address is required, got undefined'],
    ['address not a CIDR', '1.0.0', { ips: [{ address: '198.18.0.1' }] }, 'failed to parse result: ips[0].address must be an address with a prefix length, got "198.18.0.1"'],
    ['address garbage', '0.3.1', { ips: [{ version: '4', address: 'garbage/24' }] }, 'failed to parse result: ips[0].address must be an address with a prefix length, got "garbage/24"'],
    ['gateway garbage', '1.1.0', { ips: [{ address: '198.18.0.2/24', gateway: '198.18.0.256' }] }, 'failed to parse result: ips[0].gateway must be an IP address, got "198.18.0.256"'],
    ['interface index not an integer', '1.0.0', { ips: [{ address: '198.18.0.2/24', interface: '0' }] }, 'failed to parse result: ips[0].interface must be an integer, got "0"'],
    ['interface without a name', '1.0.0', { interfaces: [{ mac: 'x' }] }, 'failed to parse result: interfaces[0].name is required, got undefined'],
    ['route dst garbage', '1.0.0', { routes: [{ dst: 'default' }] }, 'failed to parse result: routes[0].dst must be an address with a prefix length, got "default"'],
    ['route gw garbage', '0.4.0', { routes: [{ dst: '0.0.0.0/0', gw: 'router' }] }, 'failed to parse result: routes[0].gw must be an IP address, got "router"'],
    ['route mtu not a number', '1.1.0', { routes: [{ dst: '0.0.0.0/0', mtu: '1500' }] }, 'failed to parse result: routes[0].mtu must be an integer, got "1500"'],
    ['0.2.0 ip4 not a CIDR', '0.2.0', { ip4: { ip: '198.18.0.1' } }, 'failed to parse result: ip4.ip must be an address with a prefix length, got "198.18.0.1"'],
    ['0.1.0 ip6 route garbage', '0.1.0', { ip6: { ip: 'fd00::1/64', routes: [{ dst: 'x' }] } }, 'failed to parse result: ip6.routes[0].dst must be an address with a prefix length, got "x"'],
    ['dns not an object', '1.0.0', { dns: 'x' }, 'failed to parse result: dns must be an object, got "x"'],
    ['dns nameservers not strings', '1.0.0', { dns: { nameservers: [1] } }, 'failed to parse result: dns.nameservers must be a list of strings, got [1]'],
  ];
  test.each(BAD)('%s → code 6 naming the field and value', (_l, v, raw, msg) => {
    expect(() => parseResult(raw, v)).toThrow(new CniError(6, msg));
    try {
      parseResult(raw, v);
    } catch (e) {
      expect((e as CniError).code).toBe(6);
    }
  });
  test('an unsupported version → code 1', () => {
    expect(() => parseResult({}, '0.9.0')).toThrow(expect.objectContaining({ code: 1, message: 'incompatible CNI versions' }));
  });
});

describe('resultVersion: which version a printed result is in', () => {
  test.each([
    [{ cniVersion: '0.4.0', ips: [] }, '1.0.0', '0.4.0'],
    [{ cniVersion: '', ips: [] }, '1.0.0', '1.0.0'],
    [{ ips: [] }, '0.2.0', '0.2.0'],
    [{ cniVersion: 4 }, '1.1.0', '1.1.0'],
    ['not an object', '1.0.0', '1.0.0'],
  ])('%j answering a %s config is read as %s', (raw, fallback, want) => {
    expect(resultVersion(raw, fallback)).toBe(want);
  });
});
