// The CNM library's pure parts: Docker's IPAM flags resolved into pools, allocation on host-local's
// store with Docker's rules (gateway and aux addresses never handed out, --ip-range, requested
// addresses, all or nothing), and a bridge network's spec turned into a CNI network list.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bridgeConflist, bridgeSettings, type BridgeNetworkSpec } from '../../cnm/bridge-conflist';
import { CnmError } from '../../cnm/errors';
import { AUX_LEASE_IFNAME, DEFAULT_ADDRESS_POOLS, ENDPOINT_LEASE_IFNAME, hostLocalRanges, NetworkIpam, overlappingSubnets, parseAddressPool, pickSubnet, resolveIpamConfig, type IpamRequest } from '../../cnm/ipam';
import { parseCIDR } from '../../shared/ip';
import { keyValues, validateName } from '../../cnm/model';
import type { Flocker } from '../../shared/linux/lock';

const noLock: Flocker = { flock: () => 0, LOCK_EX: 2, LOCK_NB: 4, LOCK_UN: 8 };
const req = (r: Partial<IpamRequest>): IpamRequest => ({ subnets: [], ipRanges: [], gateways: [], auxAddresses: {}, ipv6: false, ...r });
const err = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CnmError);
    return (e as Error).message;
  }
  throw new Error('did not throw');
};

describe('resolveIpamConfig (docker network create flags)', () => {
  test('without --gateway the gateway is the first usable address; ranges, gateways and aux addresses go to the subnet containing them', () => {
    expect(
      resolveIpamConfig(
        req({ subnets: ['198.18.0.0/24', 'fd00:18::/64', '198.18.1.0/24'], ipRanges: ['198.18.1.128/25'], gateways: ['198.18.1.254'], auxAddresses: { r: '198.18.0.5', r6: 'fd00:18::5' }, ipv6: true }),
      ),
    ).toEqual([
      { subnet: '198.18.0.0/24', gateway: '198.18.0.1', auxAddresses: { r: '198.18.0.5' } },
      { subnet: 'fd00:18::/64', gateway: 'fd00:18::1', auxAddresses: { r6: 'fd00:18::5' } },
      { subnet: '198.18.1.0/24', ipRange: '198.18.1.128/25', gateway: '198.18.1.254' },
    ]);
  });

  test.each([
    [{ subnets: ['198.18.0.0/33'] }, 'invalid --subnet "198.18.0.0/33": not a CIDR'],
    [{ subnets: ['198.18.0.1/24'] }, 'invalid --subnet 198.18.0.1/24: host bits set (the network is 198.18.0.0/24)'],
    [{ subnets: ['fd00::/64'] }, '--subnet fd00::/64 is IPv6: add --ipv6'],
    [{ subnets: ['198.18.0.0/24'], ipv6: true }, '--ipv6 needs an IPv6 --subnet'],
    [{ subnets: ['198.18.0.0/24', '198.18.0.128/25'] }, '--subnet 198.18.0.0/24 overlaps --subnet 198.18.0.128/25'],
    [{ subnets: ['198.18.0.0/24'], gateways: ['198.18.1.1'] }, '--gateway 198.18.1.1 is in no --subnet'],
    [{ subnets: ['198.18.0.0/24'], gateways: ['198.18.0.1', '198.18.0.2'] }, '--gateway 198.18.0.2: --subnet 198.18.0.0/24 already has --gateway 198.18.0.1'],
    [{ subnets: ['198.18.0.0/24'], gateways: ['198.18.0.255'] }, '--gateway 198.18.0.255 is the network or broadcast address of 198.18.0.0/24'],
    [{ subnets: ['198.18.0.0/24'], ipRanges: ['198.18.0.128/23'] }, '--ip-range 198.18.0.128/23 is not inside --subnet 198.18.0.0/24'],
    [{ subnets: ['198.18.0.0/24'], auxAddresses: { gw: '198.18.0.1' } }, '--aux-address gw=198.18.0.1 is the gateway of --subnet 198.18.0.0/24'],
    [{ subnets: ['198.18.0.0/24'], auxAddresses: { x: 'nope' } }, 'invalid --aux-address x "nope": not an IP address'],
  ])('refuses %j naming the flag and value', (r, msg) => {
    expect(err(() => resolveIpamConfig(req(r)))).toBe(msg);
  });

  test('overlappingSubnets finds a pair in either direction and ignores other families', () => {
    const a = resolveIpamConfig(req({ subnets: ['198.18.0.0/24', 'fd00::/64'], ipv6: true }));
    expect(overlappingSubnets(a, resolveIpamConfig(req({ subnets: ['198.18.0.0/16'] })))).toEqual(['198.18.0.0/24', '198.18.0.0/16']);
    expect(overlappingSubnets(a, resolveIpamConfig(req({ subnets: ['198.18.0.128/25'] })))).toEqual(['198.18.0.0/24', '198.18.0.128/25']);
    expect(overlappingSubnets(a, resolveIpamConfig(req({ subnets: ['198.18.1.0/24'] })))).toBeNull();
  });
});

describe('NetworkIpam on host-local’s store', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'cnm-ipam-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const ID = (n: number): string => n.toString(16).padStart(64, '0');
  const open = (config: ReturnType<typeof resolveIpamConfig>) => new NetworkIpam(dir, 'web', config, { flocker: noLock, lockTimeoutMs: 100 });
  const leases = (): Record<string, string> =>
    Object.fromEntries(
      readdirSync(join(dir, 'web'))
        .filter((f) => /^[\d.]+$|:/.test(f))
        .map((f) => [f, readFileSync(join(dir, 'web', f), 'utf8')]),
    );

  test('dynamic addresses come from --ip-range, skip the gateway and aux addresses, one per family; leases are host-local files owned by the endpoint', () => {
    const config = resolveIpamConfig(req({ subnets: ['198.18.0.0/29', 'fd00:18::/125'], ipRanges: ['198.18.0.0/30'], auxAddresses: { r: '198.18.0.2' }, ipv6: true }));
    const ipam = open(config);
    ipam.reserveAux(ID(99));
    expect(ipam.allocate(ID(1))).toEqual({ ipv4: { address: '198.18.0.3/29', gateway: '198.18.0.1' }, ipv6: { address: 'fd00:18::2/125', gateway: 'fd00:18::1' } });
    expect(leases()).toEqual({
      '198.18.0.2': `${ID(99)}\r\n${AUX_LEASE_IFNAME}`,
      '198.18.0.3': `${ID(1)}\r\n${ENDPOINT_LEASE_IFNAME}`,
      'fd00:18::2': `${ID(1)}\r\n${ENDPOINT_LEASE_IFNAME}`,
    });
    // the range 198.18.0.0/30 has .1 (gateway), .2 (aux), .3 (taken): exhausted, and the v6 lease of this try goes back
    expect(err(() => ipam.allocate(ID(2)))).toMatch(/^network "web": no IP addresses available in range set: 198\.18\.0\.1-198\.18\.0\.3$/);
    expect(Object.keys(leases()).sort()).toEqual(['198.18.0.2', '198.18.0.3', 'fd00:18::2']);
    ipam.release(ID(1));
    expect(Object.keys(leases())).toEqual(['198.18.0.2']);
  });

  test('a requested --ip may lie outside --ip-range but not on the gateway, an aux address, a taken address or outside the subnets', () => {
    const ipam = open(resolveIpamConfig(req({ subnets: ['198.18.0.0/24'], ipRanges: ['198.18.0.0/28'], auxAddresses: { r: '198.18.0.200' } })));
    ipam.reserveAux(ID(99));
    expect(ipam.allocate(ID(1), { ipv4: '198.18.0.100' })).toEqual({ ipv4: { address: '198.18.0.100/24', gateway: '198.18.0.1' } });
    expect(err(() => ipam.allocate(ID(2), { ipv4: '198.18.0.100' }))).toBe('network "web": requested IP address 198.18.0.100 is not available in range set 198.18.0.1-198.18.0.254');
    expect(err(() => ipam.allocate(ID(2), { ipv4: '198.18.0.200' }))).toBe('network "web": requested IP address 198.18.0.200 is not available in range set 198.18.0.1-198.18.0.254');
    expect(err(() => ipam.allocate(ID(2), { ipv4: '198.18.0.1' }))).toBe('network "web": requested ip 198.18.0.1 is subnet\'s gateway');
    expect(err(() => ipam.allocate(ID(2), { ipv4: '198.18.1.1' }))).toBe('--ip 198.18.1.1 is in no subnet of network "web"');
    expect(err(() => ipam.allocate(ID(2), { ipv6: '198.18.0.9' }))).toBe('invalid --ip6 198.18.0.9: not an IPv6 address');
    expect(err(() => ipam.allocate(ID(2), { ipv6: 'fd00::9' }))).toBe('--ip6 fd00::9 is in no subnet of network "web"');
    expect(Object.keys(leases()).sort()).toEqual(['198.18.0.100', '198.18.0.200']);
  });

  test('the conflist ranges are the dynamic ranges, so host-local (cnitool) and the library allocate from one store without collisions', () => {
    const config = resolveIpamConfig(req({ subnets: ['198.18.0.0/24'], ipRanges: ['198.18.0.16/28'], gateways: ['198.18.0.254'] }));
    expect(hostLocalRanges(config)).toEqual([[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.16', rangeEnd: '198.18.0.31', gateway: '198.18.0.254' }]]);
  });
});

describe('bridgeConflist', () => {
  let cniDir: string;
  beforeEach(() => (cniDir = mkdtempSync(join(tmpdir(), 'cnm-cni-'))));
  afterEach(() => rmSync(cniDir, { recursive: true, force: true }));
  const spec = (o: Partial<BridgeNetworkSpec> = {}): BridgeNetworkSpec => ({
    id: 'ab'.repeat(32),
    name: 'web',
    ipam: resolveIpamConfig(req({ subnets: ['198.18.0.0/24', 'fd00:18::/64'], ipv6: true })),
    internal: false,
    options: {},
    ...o,
  });

  test('host-local flavour: bridge br-<id12> with masquerade and the default routes; portmap only when it is in the CNI path', () => {
    expect(bridgeConflist(spec(), { ipam: { type: 'host-local', dataDir: '/s/ipam' }, cniPath: [cniDir] })).toEqual({
      cniVersion: '1.1.0',
      name: 'web',
      plugins: [
        {
          type: 'bridge',
          bridge: 'br-abababababab',
          isGateway: true,
          ipMasq: true,
          capabilities: { mac: true, ips: true },
          ipam: {
            type: 'host-local',
            dataDir: '/s/ipam',
            reclaimStaleLeases: false,
            ranges: [
              [{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.1', rangeEnd: '198.18.0.254', gateway: '198.18.0.1' }],
              [{ subnet: 'fd00:18::/64', rangeStart: 'fd00:18::1', rangeEnd: 'fd00:18::ffff:ffff:ffff:ffff', gateway: 'fd00:18::1' }],
            ],
            routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
          },
        },
      ],
    });
    writeFileSync(join(cniDir, 'portmap'), '');
    chmodSync(join(cniDir, 'portmap'), 0o755);
    const plugins = bridgeConflist(spec(), { ipam: { type: 'host-local', dataDir: '/s' }, cniPath: [cniDir] }).plugins as unknown[];
    expect(plugins[1]).toEqual({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
  });

  test('static flavour: exactly the endpoint addresses; default routes via the gateways only for the route owner and never on --internal', () => {
    const addresses = { ipv4: { address: '198.18.0.7/24', gateway: '198.18.0.1' }, ipv6: { address: 'fd00:18::7/64', gateway: 'fd00:18::1' } };
    const ipamOf = (s: BridgeNetworkSpec, defaultRoute: boolean) =>
      ((bridgeConflist(s, { ipam: { type: 'static', addresses, defaultRoute }, cniPath: [] }).plugins as Array<Record<string, unknown>>)[0]!).ipam;
    expect(ipamOf(spec(), true)).toEqual({
      type: 'static',
      addresses: [
        { address: '198.18.0.7/24', gateway: '198.18.0.1' },
        { address: 'fd00:18::7/64', gateway: 'fd00:18::1' },
      ],
      routes: [
        { dst: '0.0.0.0/0', gw: '198.18.0.1' },
        { dst: '::/0', gw: 'fd00:18::1' },
      ],
    });
    expect(ipamOf(spec(), false)).not.toHaveProperty('routes');
    expect(ipamOf(spec({ internal: true }), true)).not.toHaveProperty('routes');
  });

  test('options: bridge name, masquerade, MTU; --internal turns masquerade off; unknown or bad options are refused by name', () => {
    const o = { 'com.docker.network.bridge.name': 'cnm0', 'com.docker.network.bridge.enable_ip_masquerade': 'false', 'com.docker.network.driver.mtu': '1400' };
    expect(bridgeSettings(spec({ options: o }))).toEqual({ bridge: 'cnm0', masquerade: false, mtu: 1400 });
    expect(bridgeSettings(spec({ internal: true }))).toEqual({ bridge: 'br-abababababab', masquerade: false });
    expect(err(() => bridgeSettings(spec({ options: { 'com.docker.network.bridge.host_binding_ipv4': '0.0.0.0' } })))).toMatch(/^unsupported option "com\.docker\.network\.bridge\.host_binding_ipv4" for the bridge driver/);
    expect(err(() => bridgeSettings(spec({ options: { 'com.docker.network.driver.mtu': '9x' } })))).toBe('invalid option com.docker.network.driver.mtu="9x": an MTU from 68 to 65535');
    expect(err(() => bridgeSettings(spec({ options: { 'com.docker.network.bridge.name': 'a-name-longer-than-15' } })))).toMatch(/^invalid option com\.docker\.network\.bridge\.name="a-name-longer-than-15": interface name is too long/);
    expect(err(() => bridgeSettings(spec({ options: { 'com.docker.network.bridge.enable_ip_masquerade': 'maybe' } })))).toBe('invalid option com.docker.network.bridge.enable_ip_masquerade="maybe": expected true or false');
  });
});

test('names are validated before they become paths; key=value flags are parsed', () => {
  expect(err(() => validateName('network', '../x'))).toMatch(/^invalid network name "\.\.\/x"/);
  expect(err(() => validateName('network', ''))).toMatch(/^invalid network name ""/);
  expect(keyValues('--opt', ['a=b=c', 'd='])).toEqual({ a: 'b=c', d: '' });
  expect(err(() => keyValues('--label', ['=x']))).toBe('invalid --label "=x": expected key=value');
});

test('without --subnet a network gets the first subnet of the default pools that overlaps no network and no host route', () => {
  const pools = [parseAddressPool('base=198.18.64.0/22,size=24'), parseAddressPool('base=198.19.0.0/16,size=20')];
  const n = (s: string) => parseCIDR(s)!;
  expect(pickSubnet(pools, [])).toBe('198.18.64.0/24');
  expect(pickSubnet(pools, [n('198.18.64.128/25'), n('198.18.65.7/32')])).toBe('198.18.66.0/24');
  expect(pickSubnet(pools, [n('198.18.64.0/22')])).toBe('198.19.0.0/20');
  expect(pickSubnet(pools, [n('198.18.0.0/15')])).toBeNull();
  expect(pickSubnet(DEFAULT_ADDRESS_POOLS, [n('172.17.0.0/16')])).toBe('172.18.0.0/16');
  expect(err(() => parseAddressPool('base=198.18.0.0/16,size=8'))).toBe('invalid --default-address-pool "base=198.18.0.0/16,size=8": expected base=CIDR,size=N with N from the base\'s prefix to 30');
  expect(err(() => parseAddressPool('198.18.0.0/16'))).toMatch(/^invalid --default-address-pool/);
});
