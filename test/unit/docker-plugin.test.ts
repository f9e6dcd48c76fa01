// The Docker plugin's pure parts: request checks (IDs, port bindings, options), a network's chain
// (cni.network lookup and range check, the generated bridge conflist), an endpoint's ADD inputs
// (Docker's address as `ips` or CNI_ARGS IP, this driver's as static IPAM), what Join answers from a
// result, and the per-network queue.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endpointArgs, networkChain, bridgeModel } from '../../cnm/docker/chain';
import { handOver, KeyedQueue } from '../../cnm/docker/driver';
import { bodyObject, genericOptions, idField, ipamDataField, portMappings, ProtocolError } from '../../cnm/docker/protocol';
import type { Result } from '../../shared/cni/types';

const NID = 'c4515c30'.padEnd(64, '0');

describe('request checks', () => {
  test('an empty body (Activate, GetCapabilities) is {}; a body that is not a JSON object is refused naming it', () => {
    expect(bodyObject('')).toEqual({});
    expect(() => bodyObject('[1]')).toThrow(/not a JSON object/);
    expect(() => bodyObject('{"a":')).toThrow(/request body is not JSON/);
  });

  test('IDs must be 64 lower-case hex digits before they touch a path', () => {
    expect(idField({ NetworkID: NID }, 'NetworkID')).toBe(NID);
    for (const bad of ['../../etc', NID.toUpperCase(), NID.slice(1), 7, null]) expect(() => idField({ NetworkID: bad }, 'NetworkID')).toThrow(ProtocolError);
    expect(() => idField({ EndpointID: 'x/y' }, 'EndpointID')).toThrow(/EndpointID "x\/y" is not a 64-hex-digit ID/);
  });

  test('-p bindings become portMappings (a range expanded, protocols by number); host port 0 and unknown protocols are refused naming the binding', () => {
    const pm = (b: unknown) => portMappings({ 'com.docker.network.portmap': b });
    expect(pm([{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }])).toEqual([{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
    expect(pm([{ Proto: 17, Port: 53, HostIP: '198.18.0.1', HostPort: 5300, HostPortEnd: 5302 }])).toEqual([5300, 5301, 5302].map((h) => ({ hostPort: h, containerPort: 53, protocol: 'udp', hostIP: '198.18.0.1' })));
    expect(pm([{ Proto: 132, Port: 9, HostPort: 9 }])[0]!.protocol).toBe('sctp');
    expect(() => pm([{ Proto: 6, Port: 80, HostPort: 0, HostPortEnd: 0 }])).toThrow(/portmap"\]\[0\]: host port 0/);
    expect(() => pm([{ Proto: 1, Port: 80, HostPort: 80 }])).toThrow(/Proto 1 is not 6 \(tcp\)/);
    expect(() => pm([{ Proto: 6, Port: 70000, HostPort: 80 }])).toThrow(/Port 70000 is not a port number/);
    expect(portMappings({})).toEqual([]);
  });

  test('-o options come from com.docker.network.generic; IPAM data keeps CIDRs as sent', () => {
    expect(genericOptions({ 'com.docker.network.generic': { k1: 'v1' } })).toEqual({ k1: 'v1' });
    expect(genericOptions({})).toEqual({});
    expect(ipamDataField({ IPv4Data: [{ AddressSpace: 'probe-local', AuxAddresses: { a1: '10.97.0.5/24' }, Gateway: '10.97.0.1/24', Pool: '10.97.0.0/24' }] }, 'IPv4Data')).toEqual([
      { AddressSpace: 'probe-local', AuxAddresses: { a1: '10.97.0.5/24' }, Gateway: '10.97.0.1/24', Pool: '10.97.0.0/24' },
    ]);
    expect(ipamDataField({ IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0' }] }, 'IPv4Data')[0]!.Gateway).toBe('');
  });
});

describe('a network\'s chain', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dp-unit-'));
    writeFileSync(join(dir, 'a.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'mynet', plugins: [{ type: 'bridge', ipam: { type: 'host-local', ranges: [[{ subnet: '198.18.96.0/22' }]] } }] }));
    writeFileSync(join(dir, 'b.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'plain', plugins: [{ type: 'ptp', ipam: { type: 'host-local', subnet: '198.18.50.0/24' } }] }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const input = (options: Record<string, string>, pool = '198.18.97.0/24', extra = {}) => ({
    id: NID,
    options,
    ipv4: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: pool.replace(/0\/\d+$/, '1/24'), AuxAddresses: {} }],
    ipv6: [],
    internal: false,
    confDir: dir,
    cniPath: [dir],
    ipamDir: '/var/lib/x/ipam',
    ...extra,
  });

  test('cni.network=X is conflist X, kept as read; a --subnet must lie in its IPAM ranges (legacy ipam.subnet too); 0.0.0.0/0 (null IPAM) passes', () => {
    const c = networkChain(input({ 'cni.network': 'mynet' }));
    expect(c.generated).toBe(false);
    expect(JSON.parse(c.conflist).name).toBe('mynet');
    expect(() => networkChain(input({ 'cni.network': 'mynet' }, '198.18.100.0/24'))).toThrow(/subnet 198\.18\.100\.0\/24 is not inside the IPAM ranges of CNI network "mynet" \(198\.18\.96\.0\/22\)/);
    expect(networkChain(input({ 'cni.network': 'plain' }, '198.18.50.0/25')).generated).toBe(false);
    expect(networkChain(input({ 'cni.network': 'mynet' }, '0.0.0.0/0')).generated).toBe(false);
  });

  test('an unknown cni.network is refused naming it', () => {
    expect(() => networkChain(input({ 'cni.network': 'nosuch' }))).toThrow(/-o cni\.network=nosuch: .*nosuch/);
  });

  test('without cni.network the chain is the library\'s bridge network on host-local (ips and mac capabilities), named after the network ID', () => {
    const c = networkChain(input({}));
    const list = JSON.parse(c.conflist);
    expect(c.generated).toBe(true);
    expect(list.name).toBe(`docker-${NID.slice(0, 12)}`);
    expect(list.plugins[0]).toMatchObject({ type: 'bridge', bridge: `br-${NID.slice(0, 12)}`, isGateway: true, ipMasq: true, capabilities: { ips: true, mac: true } });
    expect(list.plugins[0].ipam).toMatchObject({ type: 'host-local', dataDir: '/var/lib/x/ipam', ranges: [[{ subnet: '198.18.97.0/24', gateway: '198.18.97.1' }]] });
    expect(c.model).toMatchObject({ id: NID, driver: 'bridge', ipam: { config: [{ subnet: '198.18.97.0/24', gateway: '198.18.97.1' }] } });
  });

  test('a generated network needs a subnet (null IPAM sends none), and unknown -o keys are refused naming them', () => {
    expect(() => bridgeModel(input({}, '0.0.0.0/0'))).toThrow(/needs a subnet/);
    expect(() => networkChain(input({ k1: 'v1' }))).toThrow(/unsupported option "k1"/);
  });
});

describe('an endpoint\'s ADD inputs', () => {
  const withIps = JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge', capabilities: { ips: true }, ipam: { type: 'host-local', subnet: '198.18.0.0/24' } }] });
  const withoutIps = JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge', ipam: { type: 'host-local', subnet: '198.18.0.0/24' }, routes: [] }] });
  const iface = { Address: '198.18.0.7/24', AddressIPv6: 'fd00:18::7/64', MacAddress: '02:42:c6:12:00:07' };

  test('Docker\'s addresses go as runtimeConfig.ips (CIDRs) when a plugin declares ips, else the first as CNI_ARGS IP= (with IgnoreUnknown)', () => {
    const a = endpointArgs(withIps, iface, [], null);
    expect(a.capabilityArgs).toEqual({ mac: '02:42:c6:12:00:07', ips: ['198.18.0.7/24', 'fd00:18::7/64'] });
    expect(a.args).toEqual([]);
    const b = endpointArgs(withoutIps, iface, [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], null);
    expect(b.args).toEqual([
      ['IgnoreUnknown', '1'],
      ['IP', '198.18.0.7/24'],
    ]);
    expect(b.capabilityArgs).toEqual({ mac: '02:42:c6:12:00:07', portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] });
  });

  test('with no address from Docker (null IPAM) the chain\'s IPAM picks: neither ips nor IP=', () => {
    const a = endpointArgs(withIps, { Address: '', AddressIPv6: '', MacAddress: '' }, [], null);
    expect(a).toMatchObject({ capabilityArgs: {}, args: [] });
  });

  test('with this driver\'s IPAM the first plugin\'s IPAM becomes static with the leased address and the pool\'s gateway (routes and dns kept)', () => {
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge', ipam: { type: 'host-local', subnet: '198.18.0.0/24', routes: [{ dst: '0.0.0.0/0' }] } }, { type: 'portmap', capabilities: { portMappings: true } }] });
    const a = endpointArgs(conf, { Address: '198.18.0.9/24', AddressIPv6: '', MacAddress: '' }, [], { gateway4: '198.18.0.1/24', gateway6: '', cniPath: [] });
    expect(a.list.plugins[0]!.raw.ipam).toEqual({ type: 'static', addresses: [{ address: '198.18.0.9/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
    expect(a.list.plugins.map((p) => p.type)).toEqual(['bridge', 'portmap']);
    expect(a.capabilityArgs).toEqual({});
  });
});

describe('what Join answers', () => {
  const result = (over: Partial<Result>): Result => ({
    cniVersion: '1.1.0',
    interfaces: [{ name: 'br0' }, { name: 'veth1' }, { name: 'cniabc', mac: '0a:58:c6:12:00:07', sandbox: '/run/netns/s' }],
    ips: [{ interface: 2, address: '198.18.0.7/24', gateway: '198.18.0.1' }],
    ...over,
  });

  test('the default route\'s gw is the Gateway; the subnet route is left to libnetwork; other routes become NEXTHOP or CONNECTED routes', () => {
    const h = handOver(result({ routes: [{ dst: '0.0.0.0/0', gw: '198.18.0.1' }, { dst: '198.18.0.0/24' }, { dst: '198.19.0.0/16', gw: '198.18.0.254' }] }), 'cniabc', '/run/netns/s');
    expect(h.mac).toBe('0a:58:c6:12:00:07');
    expect(h.v4?.address).toBe('198.18.0.7/24');
    expect(h.join).toEqual({ gateway: '198.18.0.1', gatewayIPv6: '', staticRoutes: [{ Destination: '198.19.0.0/16', RouteType: 0, NextHop: '198.18.0.254' }] });
  });

  test('a route without gw goes via its family\'s address gateway (the reference\'s ConfigureIface); without one it is CONNECTED', () => {
    const h = handOver(result({ routes: [{ dst: '0.0.0.0/0' }, { dst: '198.20.0.0/16' }] }), 'cniabc', '/run/netns/s');
    expect(h.join.gateway).toBe('198.18.0.1');
    expect(h.join.staticRoutes).toEqual([{ Destination: '198.20.0.0/16', RouteType: 0, NextHop: '198.18.0.1' }]);
    const noGw = handOver(result({ ips: [{ interface: 2, address: '198.18.0.7/24' }], routes: [{ dst: '198.20.0.0/16' }] }), 'cniabc', '/run/netns/s');
    expect(noGw.join).toEqual({ gateway: '', gatewayIPv6: '', staticRoutes: [{ Destination: '198.20.0.0/16', RouteType: 1 }] });
  });

  test('no default route (an --internal network): no Gateway, so libnetwork adds none', () => {
    expect(handOver(result({ routes: [] }), 'cniabc', '/run/netns/s').join).toEqual({ gateway: '', gatewayIPv6: '', staticRoutes: [] });
  });

  test('a gateway outside the address\'s prefix (a /32 address) gets a CONNECTED host route, without which libnetwork cannot add the default route', () => {
    const h = handOver(result({ ips: [{ interface: 2, address: '198.18.0.7/32' }], routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }] }), 'cniabc', '/run/netns/s');
    expect(h.join).toEqual({ gateway: '169.254.1.1', gatewayIPv6: '', staticRoutes: [{ Destination: '169.254.1.1/32', RouteType: 1 }] });
  });

  test('IPv6: the first v6 address and the ::/0 gateway', () => {
    const h = handOver(result({ ips: [{ interface: 2, address: '198.18.0.7/24', gateway: '198.18.0.1' }, { interface: 2, address: 'fd00:18::7/64', gateway: 'fd00:18::1' }], routes: [{ dst: '::/0' }] }), 'cniabc', '/run/netns/s');
    expect(h.v6?.address).toBe('fd00:18::7/64');
    expect(h.join.gatewayIPv6).toBe('fd00:18::1');
  });
});

test('KeyedQueue runs work one at a time per key, keys in parallel, and goes on after a failure', async () => {
  const q = new KeyedQueue();
  const log: string[] = [];
  const step = (key: string, name: string, ms: number, fail = false) =>
    q.run(key, async () => {
      log.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`${name}-`);
      if (fail) throw new Error(name);
      return name;
    });
  const all = await Promise.allSettled([step('a', 'a1', 20, true), step('a', 'a2', 1), step('b', 'b1', 5)]);
  expect(all.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled']);
  expect(log.indexOf('a2+')).toBeGreaterThan(log.indexOf('a1-'));
  expect(log.indexOf('b1+')).toBeLessThan(log.indexOf('a1-'));
});
