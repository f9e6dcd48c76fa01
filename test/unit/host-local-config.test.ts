// host-local config: the reference's LoadIPAMConfig / Canonicalize rules and messages
// (backend/allocator/config_test.go, range_test.go, range_set_test.go), as code 7 naming field and value.
import { loadIPAMConfig } from '../../ipam/host-local/config';
import { formatIP } from '../../shared/ip';
import { CniError } from '../../shared/cni/errors';
import type { RangeSet } from '../../ipam/host-local/range-set';

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
    [{ ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: '198.18.0.0/26' }]] }, 'ipam.ranges[1]', 'range set 0 overlaps with 1'],
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
