// The overlay's pure parts: etcd key layout and definitions, host-subnet arithmetic, endpoint
// parsing, the host lease file, and the netlink messages the data plane sends (vxlan link,
// neighbour, FDB entry, onlink route), decoded field by field.
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { castGrpcError } from 'etcd3';
import { EndpointPassedOver, PASS_OVER_MS, isUnreachable, parseEndpoints, passOverFailedEndpoints, retryOncePerEndpoint } from '../../overlay/etcd';
import { encodeLease, readLease, writeLease, type HostLease } from '../../overlay/lease-file';
import { decodeDef, decodeHost, encodeDef, hostSubnetAt, hostSubnetCount, overlaps, subnetFromKey, subnetKey, vtepAddress } from '../../overlay/network';
import { buildAddVxlan, decodeLink } from '../../shared/linux/netlink/link';
import { buildDeleteFdb, buildReplaceFdb, buildReplaceNeighbour, decodeNdmsg, NDMSG_LEN } from '../../shared/linux/netlink/neigh';
import { buildRoute } from '../../shared/linux/netlink/route';
import { IFINFOMSG_LEN, RTMSG_LEN, decodeRtmsg, parseAttrs, parseMessages } from '../../shared/linux/netlink/message';
import { formatCIDR, formatIP, parseCIDR, parseIP, type IP, type IPNet } from '../../shared/ip';

const net = (s: string): IPNet => parseCIDR(s)!;
const ip = (s: string): IP => parseIP(s)!;

describe('network definitions and host subnets', () => {
  const def = decodeDef('multi', encodeDef({ subnet: net('198.18.128.0/17'), hostPrefix: 24, vni: 42 }));

  test('a /17 with host-prefix 24 has 128 host subnets, the i-th at i × 256', () => {
    expect(hostSubnetCount(def)).toBe(128);
    expect(formatCIDR(hostSubnetAt(def, 0))).toBe('198.18.128.0/24');
    expect(formatCIDR(hostSubnetAt(def, 127))).toBe('198.18.255.0/24');
    expect(formatIP(vtepAddress(hostSubnetAt(def, 3)))).toBe('198.18.131.0');
  });

  test('subnet keys round-trip; a key outside the network, of another size or with host bits is not a host subnet', () => {
    const k = subnetKey('/p/', 'multi', net('198.18.129.0/24'));
    expect(k).toBe('/p/subnets/multi/198.18.129.0-24');
    expect(formatCIDR(subnetFromKey(def, '198.18.129.0-24')!)).toBe('198.18.129.0/24');
    for (const bad of ['198.19.0.0-24', '198.18.129.0-25', '198.18.129.7-24', 'junk']) expect(subnetFromKey(def, bad)).toBeNull();
  });

  test('bad definitions are refused naming the network and the value', () => {
    expect(() => decodeDef('n', '{')).toThrow('network n: definition is not JSON');
    expect(() => decodeDef('n', '{"subnet":"x","vni":1}')).toThrow('network n: definition has no valid "subnet" ("x")');
    expect(() => decodeDef('n', '{"subnet":"198.18.0.0/16","hostPrefix":8,"vni":1}')).toThrow('host-prefix 8: must be between the subnet\'s prefix 16 and 30');
    expect(() => decodeDef('n', '{"subnet":"198.18.0.0/16","vni":0}')).toThrow('vni 0: must be 1..16777215');
    expect(() => decodeDef('n', '{"subnet":"fd00::/48","vni":1}')).toThrow('only IPv4 overlays are supported');
  });

  test('host records: a damaged or foreign value is null, never a peer', () => {
    expect(decodeHost('{"host":"h1","underlay":"198.19.0.11","mac":"0E:00:00:00:00:01"}')).toEqual({ host: 'h1', underlay: ip('198.19.0.11'), mac: '0e:00:00:00:00:01' });
    for (const bad of ['', '{}', '{"host":"h","underlay":"x","mac":"0e:00:00:00:00:01"}', '{"host":"h","underlay":"198.19.0.1","mac":"zz"}', '{"host":"h","underlay":"fd00::1","mac":"0e:00:00:00:00:01"}'])
      expect(decodeHost(bad)).toBeNull();
  });

  test('overlaps: containment either way and partial overlap; disjoint and other families do not', () => {
    expect(overlaps(net('198.19.0.0/16'), net('198.19.0.0/24'))).toBe(true);
    expect(overlaps(net('198.19.0.0/24'), net('198.19.0.0/16'))).toBe(true);
    expect(overlaps(net('198.18.128.0/17'), net('198.19.0.0/24'))).toBe(false);
    expect(overlaps(net('198.18.0.0/16'), net('fd00::/8'))).toBe(false);
  });
});

describe('etcd endpoints', () => {
  test('http, https and etcd:// (as http) with host and port, comma-separated', () => {
    expect(parseEndpoints('--etcd', 'http://198.19.0.1:2379, https://e2:2379,etcd://198.19.0.3:2379')).toEqual(['http://198.19.0.1:2379', 'https://e2:2379', 'http://198.19.0.3:2379']);
  });
  test('a port that is its scheme\'s default (http://h:80, https://h:443) is an explicit port, kept', () => {
    expect(parseEndpoints('--etcd', 'http://198.19.0.1:80,https://e2:443,etcd://[fd00::1]:80')).toEqual(['http://198.19.0.1:80', 'https://e2:443', 'http://[fd00::1]:80']);
  });
  test.each([
    ['ftp://x:1', 'scheme ftp is not http or https'],
    ['http://198.19.0.1', 'no port'],
    ['198.19.0.1:2379', 'not a URL (expected http://IP:PORT'],
    ['http://h:2379/v3', 'an endpoint is scheme://host:port and nothing else'],
    ['http://a:1,,http://b:2', 'empty endpoint'],
    ['not a url', 'not a URL'],
    ['http://h:0', 'port 0 is not 1..65535'],
    ['http://h:99999', 'port 99999 is not 1..65535'],
    ['http://[fd00::1]:70000', 'port 70000 is not 1..65535'],
    ['http://h:', 'no port'],
  ])('%s is refused: %s', (v, why) => {
    expect(() => parseEndpoints('--etcd', v)).toThrow(why);
  });
});

describe('etcd endpoint choice (passOverFailedEndpoints, retryOncePerEndpoint, isUnreachable)', () => {
  class Down extends Error {}
  let clock = 0;
  type Policy = { execute<T>(fn: () => T | Promise<T>): Promise<T> };
  const policies = (hosts: string[]): Record<string, Policy> => {
    const make = passOverFailedEndpoints(hosts, (e) => e instanceof Down, () => clock);
    return Object.fromEntries(hosts.map((h) => [h, make(h) as unknown as Policy]));
  };
  const fail = (): never => {
    throw new Down('UNAVAILABLE');
  };
  beforeEach(() => (clock = 1000));

  test('an endpoint that did not answer is passed over while another has not failed, and tried again PASS_OVER_MS later', async () => {
    const p = policies(['a', 'b', 'c']);
    await expect(p.a!.execute(fail)).rejects.toBeInstanceOf(Down);
    const called = jest.fn(() => 'answer');
    clock += PASS_OVER_MS - 1;
    await expect(p.a!.execute(called)).rejects.toBeInstanceOf(EndpointPassedOver);
    expect(called).not.toHaveBeenCalled();
    await expect(p.b!.execute(called)).resolves.toBe('answer');
    clock += 1;
    await expect(p.a!.execute(called)).resolves.toBe('answer');
  });

  test('when every endpoint failed, calls go through (a restarted single etcd is not kept away)', async () => {
    const one = policies(['only']);
    await expect(one.only!.execute(fail)).rejects.toBeInstanceOf(Down);
    await expect(one.only!.execute(() => 'back')).resolves.toBe('back');
    const two = policies(['a', 'b']);
    await expect(two.a!.execute(fail)).rejects.toBeInstanceOf(Down);
    await expect(two.b!.execute(fail)).rejects.toBeInstanceOf(Down);
    await expect(two.a!.execute(() => 'a is back')).resolves.toBe('a is back');
    // a answered: b, still failed, is passed over again
    await expect(two.b!.execute(() => 'b')).rejects.toBeInstanceOf(EndpointPassedOver);
  });

  test('an error that isFailure rejects (etcd answered) leaves the endpoint in use', async () => {
    const p = policies(['a', 'b']);
    await expect(
      p.a!.execute(() => {
        throw new Error('etcdserver: mvcc: required revision has been compacted');
      }),
    ).rejects.toThrow('compacted');
    await expect(p.a!.execute(() => 'ok')).resolves.toBe('ok');
  });

  test('a stream counts for its endpoint when the endpoint sends its headers, against it when it fails; opening it proves nothing', async () => {
    const p = policies(['a', 'b']);
    await expect(p.a!.execute(fail)).rejects.toBeInstanceOf(Down);
    await expect(p.b!.execute(fail)).rejects.toBeInstanceOf(Down);
    // every endpoint failed: a stream is opened on a, which is still marked until it answers
    const stream = new EventEmitter();
    stream.on('error', () => {}); // the library's own listener
    await expect(p.a!.execute(() => stream)).resolves.toBe(stream);
    await expect(p.b!.execute(() => 'b')).resolves.toBe('b'); // b cleared by its answer
    await expect(p.a!.execute(() => 'x')).rejects.toBeInstanceOf(EndpointPassedOver);
    stream.emit('metadata');
    await expect(p.a!.execute(() => 'a')).resolves.toBe('a');
    stream.emit('error', new Down('Connection dropped'));
    await expect(p.a!.execute(() => 'x')).rejects.toBeInstanceOf(EndpointPassedOver);
  });

  test('retryOncePerEndpoint: a try that met only passed-over endpoints is not counted; the call fails with the last real error', async () => {
    const recoverable = (e: Error) => e instanceof Down;
    const policy = retryOncePerEndpoint(['a', 'b', 'c'], recoverable) as unknown as Policy;
    // the pool's shuffled picks met passed-over endpoints twice, then a live one answered
    const tries = [() => fail(), () => { throw new EndpointPassedOver('a'); }, () => { throw new EndpointPassedOver('c'); }, () => 'answer'];
    let i = 0;
    await expect(policy.execute(() => tries[i++]!())).resolves.toBe('answer');
    expect(i).toBe(4);
    // only passed-over endpoints, after one real failure: that failure, after hosts.length skips
    i = 0;
    const calls = jest.fn(() => (i++ === 0 ? fail() : (() => { throw new EndpointPassedOver('x'); })()));
    await expect(policy.execute(calls)).rejects.toBeInstanceOf(Down);
    expect(calls).toHaveBeenCalledTimes(1 + 3 + 1);
    // each endpoint once for recoverable errors; an unrecoverable one at once
    const down = jest.fn(fail);
    await expect(policy.execute(down)).rejects.toBeInstanceOf(Down);
    expect(down).toHaveBeenCalledTimes(3);
    const refused = jest.fn(() => {
      throw new Error('etcdserver: permission denied');
    });
    await expect(policy.execute(refused)).rejects.toThrow('permission denied');
    expect(refused).toHaveBeenCalledTimes(1);
  });

  test.each([
    ['a stream dropped (grpc-js error, code 14)', true, Object.assign(new Error('14 UNAVAILABLE: Connection dropped'), { code: 14 })],
    ['no connection (as etcd3 rethrows it)', true, castGrpcError(Object.assign(new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 198.19.0.101:2379'), { code: 14 }))],
    ['a call past its deadline', true, castGrpcError(Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded'), { code: 4 }))],
    ['a live member while electing: no leader', false, castGrpcError(Object.assign(new Error('14 UNAVAILABLE: etcdserver: no leader'), { code: 14 }))],
    ['a live member while electing: request timed out', false, Object.assign(new Error('14 UNAVAILABLE: etcdserver: request timed out'), { code: 14 })],
    ['our own cancel of a stream', false, Object.assign(new Error('1 CANCELLED: Cancelled on client'), { code: 1 })],
    ['an etcd answer', false, castGrpcError(new Error('etcdserver: mvcc: required revision has been compacted'))],
    ['not an error', false, '14 UNAVAILABLE: x'],
  ])('isUnreachable: %s: %s', (_what, want, e) => {
    expect(isUnreachable(e)).toBe(want);
  });
});

test('every name the code takes from etcd3 at run time is one the build re-exports (a missing one is undefined in the executable, not an error)', () => {
  const root = join(__dirname, '..', '..');
  const build = readFileSync(join(root, 'build.mjs'), 'utf8');
  const exported = new Set(/export \{([^}]*)\} from 'etcd3'/.exec(build)![1]!.split(',').map((n) => n.trim()));
  const taken = [...readFileSync(join(root, 'overlay/etcd.ts'), 'utf8').matchAll(/const \{([^}]*)\} = await import\('etcd3'\)/g)].flatMap((m) => m[1]!.split(',').map((n) => n.trim()));
  expect(taken.length).toBeGreaterThan(0);
  expect(taken.filter((n) => !exported.has(n))).toEqual([]);
  const etcd3 = require('etcd3') as Record<string, unknown>; // eslint-disable-line @typescript-eslint/no-require-imports
  expect([...exported].filter((n) => etcd3[n] === undefined)).toEqual([]);
});

describe('host lease file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'ovl-lease-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const lease: HostLease = { network: 'multi', subnet: net('198.18.128.0/17'), hostSubnet: net('198.18.129.0/24'), vni: 42, mtu: 1450, bridge: 'ovlbr.42', host: 'h1' };

  test('written 0600 in a 0700 directory, read back equal; none is null', () => {
    const sd = join(dir, 'state');
    expect(readLease(sd, 'multi')).toBeNull();
    writeLease(sd, lease);
    expect(statSync(sd).mode & 0o777).toBe(0o700);
    expect(statSync(join(sd, 'multi.json')).mode & 0o777).toBe(0o600);
    expect(readLease(sd, 'multi')).toEqual(lease);
    expect(JSON.parse(readFileSync(join(sd, 'multi.json'), 'utf8')).hostSubnet).toBe('198.18.129.0/24');
  });

  test('a symlink in its place, a file for another network and a bad name are refused', () => {
    writeFileSync(join(dir, 'elsewhere.json'), encodeLease(lease));
    symlinkSync(join(dir, 'elsewhere.json'), join(dir, 'multi.json'));
    expect(() => readLease(dir, 'multi')).toThrow(/symbolic link/);
    writeFileSync(join(dir, 'other.json'), encodeLease(lease));
    expect(() => readLease(dir, 'other')).toThrow(`${dir}/other.json is not an overlay lease`);
    expect(() => readLease(dir, '../x')).toThrow('invalid overlay network name "../x"');
  });
});

describe('netlink messages of the data plane', () => {
  test('vxlan link: kind vxlan, VNI, underlay link, local VTEP, learning off, port 4789 (network order), MTU', () => {
    const [m] = parseMessages(buildAddVxlan({ name: 'ovl.42', vni: 42, local: ip('198.19.0.11'), link: 3, port: 4789, mtu: 1450 }));
    // decodeLink reads what the kernel reports back in the same layout
    const l = decodeLink(m!);
    expect(l).toMatchObject({ name: 'ovl.42', kind: 'vxlan', mtu: 1450, vxlan: { vni: 42, link: 3, port: 4789, learning: false } });
    expect(formatIP(l.vxlan!.local!)).toBe('198.19.0.11');
    const a = parseAttrs(m!.payload, IFINFOMSG_LEN);
    expect(a.has(4)).toBe(true); // IFLA_MTU
  });

  test('neighbour: AF_INET, permanent, NDA_DST the VTEP address, NDA_LLADDR the MAC; replace semantics', () => {
    const [m] = parseMessages(buildReplaceNeighbour({ index: 7, ip: ip('198.18.129.0'), mac: '0e:00:00:00:00:01' }));
    expect(m!.type).toBe(28); // RTM_NEWNEIGH
    expect(m!.flags & 0x500).toBe(0x500); // NLM_F_CREATE | NLM_F_REPLACE
    expect(decodeNdmsg(m!.payload)).toMatchObject({ family: 2, index: 7, state: 0x80 });
    const a = parseAttrs(m!.payload, NDMSG_LEN);
    expect([...a.get(1)!]).toEqual([198, 18, 129, 0]);
    expect([...a.get(2)!]).toEqual([0x0e, 0, 0, 0, 0, 1]);
  });

  test('FDB entry: AF_BRIDGE, NTF_SELF, permanent, the MAC and the remote VTEP; delete names the same entry', () => {
    const [m] = parseMessages(buildReplaceFdb({ index: 7, mac: '0e:00:00:00:00:01', dst: ip('198.19.0.12') }));
    expect(decodeNdmsg(m!.payload)).toMatchObject({ family: 7, index: 7, state: 0x80, flags: 0x02 });
    const a = parseAttrs(m!.payload, NDMSG_LEN);
    expect([...a.get(2)!]).toEqual([0x0e, 0, 0, 0, 0, 1]);
    expect([...a.get(1)!]).toEqual([198, 19, 0, 12]);
    const [d] = parseMessages(buildDeleteFdb({ index: 7, mac: '0e:00:00:00:00:01', dst: ip('198.19.0.12') }));
    expect(d!.type).toBe(29); // RTM_DELNEIGH
    expect([...parseAttrs(d!.payload, NDMSG_LEN).get(1)!]).toEqual([198, 19, 0, 12]);
  });

  test('onlink route: RTNH_F_ONLINK in rtm_flags, gateway the remote VTEP address', () => {
    const [m] = parseMessages(buildRoute('replace', { dst: net('198.18.129.0/24'), gw: ip('198.18.129.0'), oif: 7, onlink: true }));
    expect(decodeRtmsg(m!.payload).flags).toBe(4);
    expect([...parseAttrs(m!.payload, RTMSG_LEN).get(5)!]).toEqual([198, 18, 129, 0]); // RTA_GATEWAY
    const [plain] = parseMessages(buildRoute('replace', { dst: net('198.18.129.0/24'), gw: ip('198.19.0.12'), oif: 7 }));
    expect(decodeRtmsg(plain!.payload).flags).toBe(0);
  });
});
