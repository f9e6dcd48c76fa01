// `cnm docker-plugin` at the protocol level, without Docker: the request bodies dockerd 20.10 sends
// (captured, shared/research/cnm-shim.md §1.3 and §2.1), in its call orders, including the calls
// it re-sends and its failure paths. The plugin runs in a scratch host netns with a private mount
// namespace (docker-plugin-harness.ts); what it leaves (links, scratch netns, leases, rules,
// records) is checked in that host after each step.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { binDir } from '../support/cni';
import { PluginDaemon, post, Scratch } from './docker-plugin-harness';

const hex = (prefix: string): string => prefix.padEnd(64, '0');
// IDs with the captured prefixes (the capture shows their first 8 to 12 digits).
const NID = hex('c4515c30');
const EID = hex('ba9c80b6');

// docker network create -d P --subnet 198.18.97.0/24 --gateway 198.18.97.1 --aux-address a1=198.18.97.5 [-o k1=v1] n1
// (Docker's default IPAM: AddressSpace "LocalDefault"; the captured body otherwise unchanged).
const createNetwork = (nid = NID, subnet = '198.18.97', generic: Record<string, string> = {}) => ({
  NetworkID: nid,
  Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic },
  IPv4Data: [{ AddressSpace: 'LocalDefault', AuxAddresses: { a1: `${subnet}.5/24` }, Gateway: `${subnet}.1/24`, Pool: `${subnet}.0/24` }],
  IPv6Data: [],
});
// docker run -p 8080:80 (captured).
const createEndpoint = (eid = EID, address = '198.18.97.11/24', nid = NID, mac = '02:42:e7:82:57:57') => ({
  NetworkID: nid,
  EndpointID: eid,
  Interface: { Address: address, AddressIPv6: '', MacAddress: mac },
  Options: {
    'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }],
    'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }],
  },
});
const join_ = (eid = EID, key = '/var/run/docker/netns/d02b63d01e9e', nid = NID) => ({
  NetworkID: nid,
  EndpointID: eid,
  SandboxKey: key,
  Options: { 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }], 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }] },
});
const ids = (eid = EID, nid = NID) => ({ NetworkID: nid, EndpointID: eid });

let s: Scratch;
let plugin: PluginDaemon;
let sock: string;
let stateDir: string;
let confDir: string;

const leases = (network: string): string[] => {
  const d = join(stateDir, 'ipam', network);
  return existsSync(d) ? readdirSync(d).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n) || /^[0-9a-f]*:[0-9a-f:]+$/.test(n)) : [];
};
const records = (kind: 'networks' | 'endpoints' | 'pools'): string[] => readdirSync(join(stateDir, 'docker', kind));

beforeAll(async () => {
  s = await Scratch.create('dpproto');
  stateDir = join(s.dir, 'state');
  confDir = join(s.dir, 'conf');
  mkdirSync(confDir);
  // A chain with its own IPAM range, for -o cni.network and --ipam-driver null.
  writeFileSync(
    join(confDir, '10-mynet.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'mynet',
      plugins: [{ type: 'bridge', bridge: 'mynet0', isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'host-local', dataDir: join(s.dir, 'mynet-ipam'), ranges: [[{ subnet: '198.18.98.0/24' }]] } }],
    }),
  );
  plugin = new PluginDaemon(s, 'cniproto', { stateDir, confDir, socketDir: join(s.dir, 'plugins') });
  sock = plugin.socket;
  await plugin.start();
});

afterAll(async () => {
  await plugin?.stop('SIGKILL');
  await s?.destroy();
});

describe('handshake (empty bodies, as dockerd sends them)', () => {
  test('Plugin.Activate implements NetworkDriver and IpamDriver; both GetCapabilities answer local scope and MAC-keyed IPAM', async () => {
    expect(await post(sock, 'Plugin.Activate', '')).toEqual({ status: 200, json: { Implements: ['NetworkDriver', 'IpamDriver'] } });
    expect(await post(sock, 'NetworkDriver.GetCapabilities', '')).toEqual({ status: 200, json: { Scope: 'local', ConnectivityScope: 'local' } });
    expect(await post(sock, 'IpamDriver.GetCapabilities', '')).toEqual({ status: 200, json: { RequiresMACAddress: true, RequiresRequestReplay: false } });
    expect((await post(sock, 'IpamDriver.GetDefaultAddressSpaces', '')).json).toEqual({ LocalDefaultAddressSpace: 'cnikit-local', GlobalDefaultAddressSpace: 'cnikit-local' });
  });

  test('the swarm-only calls of a local driver answer without doing anything', async () => {
    expect(await post(sock, 'NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: { Address: '198.18.0.1', BindAddress: '', Self: true } })).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'NetworkDriver.DiscoverDelete', { DiscoveryType: 1, DiscoveryData: {} })).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'NetworkDriver.AllocateNetwork', { NetworkID: NID, Options: {}, IPv4Data: [], IPv6Data: [] })).toEqual({ status: 200, json: { Options: {} } });
    expect(await post(sock, 'NetworkDriver.FreeNetwork', { NetworkID: NID })).toEqual({ status: 200, json: {} });
  });

  test('an unknown method is a 404 with Err (what dockerd tolerates only for the connectivity calls)', async () => {
    const r = await post(sock, 'NetworkDriver.Frobnicate', {});
    expect(r.status).toBe(404);
    expect(String(r.json.Err)).toMatch(/Frobnicate: not implemented/);
    const proto = await post(sock, '__proto__', {});
    expect(proto.status).toBe(404);
    expect(String(proto.json.Err)).toMatch(/__proto__: not implemented/);
  });

  test('the log has one line per request, naming the method and the IDs', () => {
    expect(plugin.logText()).toMatch(/^Plugin\.Activate -> ok \(/m);
    expect(plugin.logText()).toMatch(/^NetworkDriver\.Frobnicate -> 404 /m);
  });
});

describe('docker run -p 8080:80 on a generated bridge network, Docker IPAM', () => {
  test('CreateNetwork with the captured -o k1=v1 is refused naming the option (the bridge driver knows no such option); nothing is recorded', async () => {
    const r = await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(NID, '198.18.97', { k1: 'v1' }));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/unsupported option "k1"/);
    expect(records('networks')).toEqual([]);
  });

  test('CreateNetwork (captured body, sent twice) records the network once, its conflist in <state>/net.d for cnitool, and answers {}', async () => {
    expect(await post(sock, 'NetworkDriver.CreateNetwork', createNetwork())).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'NetworkDriver.CreateNetwork', createNetwork())).toEqual({ status: 200, json: {} });
    expect(records('networks')).toEqual([`${NID}.json`]);
    expect(existsSync(join(stateDir, 'net.d', `docker-${NID.slice(0, 12)}.conflist`))).toBe(true);
  });

  test('CreateEndpoint runs the chain, hands the link over to the host netns with Docker\'s MAC, and answers no field Docker already set', async () => {
    const r = await post(sock, 'NetworkDriver.CreateEndpoint', createEndpoint());
    expect(r).toEqual({ status: 200, json: { Interface: {} } });
    const link = await s.must('ip', ['-o', 'link', 'show', `cni${EID.slice(0, 12)}`]);
    expect(link).toContain('link/ether 02:42:e7:82:57:57');
    expect(await s.must('ip', ['-o', 'link', 'show', 'master', 'br-c4515c300000'])).toMatch(/veth/); // its peer is a port of the bridge
    expect(leases(`docker-${NID.slice(0, 12)}`)).toEqual(['198.18.97.11']);
    expect(await s.rules()).toMatch(/8080/); // portmap published the port
  });

  test('a re-sent CreateEndpoint answers the same and allocates nothing more', async () => {
    expect(await post(sock, 'NetworkDriver.CreateEndpoint', createEndpoint())).toEqual({ status: 200, json: { Interface: {} } });
    expect(leases(`docker-${NID.slice(0, 12)}`)).toEqual(['198.18.97.11']);
    expect((await s.links()).filter((l) => l.startsWith('cni'))).toEqual([`cni${EID.slice(0, 12)}`]);
  });

  test('Join names the link, the gateway from the chain\'s default route, and turns docker_gwbridge off; a re-sent Join answers the same', async () => {
    const want = { InterfaceName: { SrcName: `cni${EID.slice(0, 12)}`, DstPrefix: 'eth' }, Gateway: '198.18.97.1', DisableGatewayService: true };
    expect(await post(sock, 'NetworkDriver.Join', join_())).toEqual({ status: 200, json: want });
    expect(await post(sock, 'NetworkDriver.Join', join_())).toEqual({ status: 200, json: want });
  });

  test('ProgramExternalConnectivity and EndpointOperInfo (twice, as dockerd calls it) succeed', async () => {
    expect(await post(sock, 'NetworkDriver.ProgramExternalConnectivity', { ...ids(), Options: {} })).toEqual({ status: 200, json: {} });
    for (let i = 0; i < 2; i++) {
      const r = await post(sock, 'NetworkDriver.EndpointOperInfo', ids());
      expect(r.status).toBe(200);
      expect(r.json.Value).toMatchObject({ 'cni.ifname': `cni${EID.slice(0, 12)}`, address: '198.18.97.11/24', mac: '02:42:e7:82:57:57' });
    }
  });

  test('EndpointOperInfo never fails: an unknown endpoint and a malformed body answer an empty Value', async () => {
    expect(await post(sock, 'NetworkDriver.EndpointOperInfo', ids(hex('ffff')))).toEqual({ status: 200, json: { Value: {} } });
    expect(await post(sock, 'NetworkDriver.EndpointOperInfo', { EndpointID: '../../etc' })).toEqual({ status: 200, json: { Value: {} } });
    expect(await post(sock, 'NetworkDriver.EndpointOperInfo', '{"EndpointID":')).toEqual({ status: 200, json: { Value: {} } });
  });

  test('Revoke, Leave, DeleteEndpoint remove the link, the scratch netns, the lease, the port rule and the record; re-sent they answer {}; our chain\'s link is deleted in the host, not moved back', async () => {
    for (const m of ['RevokeExternalConnectivity', 'Leave', 'DeleteEndpoint', 'Leave', 'DeleteEndpoint']) expect(await post(sock, `NetworkDriver.${m}`, ids())).toEqual({ status: 200, json: {} });
    const deletes = plugin.logText().split('\n').filter((l) => l.startsWith('NetworkDriver.DeleteEndpoint ') && l.includes(' DEL '));
    expect(deletes).toHaveLength(1);
    expect(deletes[0]).toMatch(/delete-link/);
    expect(deletes[0]).not.toMatch(/take-back/);
    expect((await s.links()).filter((l) => l.startsWith('cni') || l.startsWith('veth'))).toEqual([]);
    expect(await s.netnsNames()).toEqual([]);
    expect(leases(`docker-${NID.slice(0, 12)}`)).toEqual([]);
    expect(await s.rules()).not.toMatch(/8080/);
    expect(records('endpoints')).toEqual([]);
  });
});

describe('failure paths', () => {
  test('a second network on the same -o com.docker.network.bridge.name is refused naming the bridge (one device per network)', async () => {
    const opt = { 'com.docker.network.bridge.name': 'dpshared0' };
    expect(await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(hex('b1'), '198.18.105', opt))).toEqual({ status: 200, json: {} });
    const r = await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(hex('b2'), '198.18.106', opt));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/bridge "dpshared0" is already used by network "docker-b10000000000"/);
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: hex('b1') })).toEqual({ status: 200, json: {} });
  });

  test('a CreateEndpoint the chain refuses (address outside the range) fails naming the cause and leaves nothing behind', async () => {
    const eid = hex('bad1');
    const r = await post(sock, 'NetworkDriver.CreateEndpoint', createEndpoint(eid, '198.18.99.7/24'));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/198\.18\.99\.7/);
    expect((await s.links()).filter((l) => l.startsWith('cni') || l.startsWith('veth'))).toEqual([]);
    expect(await s.netnsNames()).toEqual([]);
    expect(records('endpoints')).toEqual([]);
    expect(leases(`docker-${NID.slice(0, 12)}`)).toEqual([]);
  });

  test('-p with host port 0 is refused naming the binding; nothing is created', async () => {
    const body = createEndpoint(hex('bad2'));
    body.Options['com.docker.network.portmap'] = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 0, HostPortEnd: 0 }];
    const r = await post(sock, 'NetworkDriver.CreateEndpoint', body);
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/host port 0/);
    expect(await s.netnsNames()).toEqual([]);
  });

  test('Join of an unknown endpoint fails naming it; an ID that is not 64 hex digits is refused before it touches a path', async () => {
    const r = await post(sock, 'NetworkDriver.Join', join_(hex('abcdef')));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/endpoint abcdef000000 of network c4515c300000 does not exist/);
    const bad = await post(sock, 'NetworkDriver.DeleteEndpoint', { NetworkID: NID, EndpointID: '../../../etc/passwd' });
    expect(bad.status).toBe(500);
    expect(String(bad.json.Err)).toMatch(/EndpointID "..\/..\/..\/etc\/passwd" is not a 64-hex-digit ID/);
  });

  test('a body that is not JSON is an error naming it, not a crash', async () => {
    const r = await post(sock, 'NetworkDriver.CreateNetwork', '{"NetworkID":');
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/request body is not JSON/);
  });
});

describe('-o cni.network=X', () => {
  test('an unknown X fails CreateNetwork naming X', async () => {
    const r = await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(hex('d1'), '198.18.98', { 'cni.network': 'nosuchnet' }));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/cni\.network=nosuchnet/);
    expect(String(r.json.Err)).toMatch(/nosuchnet/);
  });

  test('a conflist naming a plugin that is not in --cni-path fails CreateNetwork naming the plugin', async () => {
    writeFileSync(join(confDir, '40-missing.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'missing', plugins: [{ type: 'bridge', ipam: { type: 'no-such-ipam', subnet: '198.18.108.0/24' } }] }));
    const r = await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(hex('d9'), '198.18.108', { 'cni.network': 'missing' }));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/CNI network "missing": failed to find plugin "no-such-ipam" in path/);
    expect(records('networks').filter((n) => n.startsWith('d9'))).toEqual([]);
  });

  test('a --subnet outside the conflist\'s IPAM range fails naming both', async () => {
    const r = await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(hex('d2'), '198.18.96', { 'cni.network': 'mynet' }));
    expect(r.status).toBe(500);
    expect(String(r.json.Err)).toMatch(/subnet 198\.18\.96\.0\/24 is not inside the IPAM ranges of CNI network "mynet" \(198\.18\.98\.0\/24\)/);
  });

  test('with --ipam-driver null (Pool 0.0.0.0/0, no address sent) the chain\'s IPAM picks the address and CreateEndpoint reports it with the MAC', async () => {
    const nid = hex('d3');
    const body = { NetworkID: nid, Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'cni.network': 'mynet' } }, IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0' }], IPv6Data: [] };
    expect(await post(sock, 'NetworkDriver.CreateNetwork', body)).toEqual({ status: 200, json: {} });
    const eid = hex('e3');
    const r = await post(sock, 'NetworkDriver.CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: '', AddressIPv6: '', MacAddress: '' }, Options: {} });
    expect(r.status).toBe(200);
    const iface = r.json.Interface as Record<string, string>;
    expect(iface.Address).toMatch(/^198\.18\.98\.\d+\/24$/);
    expect(iface.MacAddress).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect((await post(sock, 'NetworkDriver.Join', join_(eid, '/x', nid))).json).toMatchObject({ Gateway: '198.18.98.1' });
    expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(eid, nid))).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: nid })).toEqual({ status: 200, json: {} });
    // Not our network: its bridge stays (only generated networks' bridges are removed).
    expect(await s.links()).toContain('mynet0');
  });
});

test('a cni.network chain (1.1.0) shared with another runtime: DeleteNetwork and the start-up GC never release that runtime\'s lease', async () => {
  writeFileSync(
    join(confDir, '30-shared.conflist'),
    JSON.stringify({
      cniVersion: '1.1.0',
      name: 'shared110',
      plugins: [{ type: 'bridge', bridge: 'shared0', isGateway: true, ipam: { type: 'host-local', dataDir: join(s.dir, 'shared-ipam'), ranges: [[{ subnet: '198.18.102.0/24' }]] } }],
    }),
  );
  // Another runtime's attachment on the same conflist: its lease in host-local's store.
  mkdirSync(join(s.dir, 'shared-ipam', 'shared110'), { recursive: true });
  writeFileSync(join(s.dir, 'shared-ipam', 'shared110', '198.18.102.77'), 'other-runtime-ctr\r\neth0');
  const nid = hex('5a');
  const net = { NetworkID: nid, Options: { 'com.docker.network.generic': { 'cni.network': 'shared110' } }, IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: '198.18.102.1/24', Pool: '198.18.102.0/24' }], IPv6Data: [] };
  expect(await post(sock, 'NetworkDriver.CreateNetwork', net)).toEqual({ status: 200, json: {} });
  expect((await post(sock, 'NetworkDriver.CreateEndpoint', { NetworkID: nid, EndpointID: hex('5b'), Interface: { Address: '198.18.102.9/24', AddressIPv6: '', MacAddress: '' }, Options: {} })).status).toBe(200);
  await plugin.stop('SIGKILL');
  await plugin.start(); // start-up GC over this network
  expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(hex('5b'), nid))).toEqual({ status: 200, json: {} });
  expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: nid })).toEqual({ status: 200, json: {} });
  expect(readdirSync(join(s.dir, 'shared-ipam', 'shared110')).filter((f) => f.startsWith('198.'))).toEqual(['198.18.102.77']);
});

describe('--ipam-driver (this driver allocates)', () => {
  const pool = { AddressSpace: 'cnikit-local', Pool: '198.18.100.0/24', SubPool: '', Options: {}, V6: false };
  let poolId = '';
  let byMacAddress = '';

  test('RequestPool answers a pool ID and the subnet\'s first address as gateway; an overlapping pool is refused naming both', async () => {
    const r = await post(sock, 'IpamDriver.RequestPool', pool);
    expect(r.status).toBe(200);
    poolId = String(r.json.PoolID);
    expect(r.json).toEqual({ PoolID: poolId, Pool: '198.18.100.0/24', Data: { 'com.docker.network.gateway': '198.18.100.1/24' } });
    const o = await post(sock, 'IpamDriver.RequestPool', { ...pool, Pool: '198.18.100.128/25' });
    expect(o.status).toBe(500);
    expect(String(o.json.Err)).toMatch(/subnet 198\.18\.100\.128\/25 overlaps subnet 198\.18\.100\.0\/24/);
  });

  test('RequestAddress for --gateway (RequestAddressType gateway, as dockerd sends it) answers that address and leases nothing', async () => {
    const r = await post(sock, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '198.18.100.1', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    expect(r.json).toEqual({ Address: '198.18.100.1/24', Data: {} });
    expect(leases(`docker-pool-${poolId.slice(0, 16)}`)).toEqual([]);
  });

  test('RequestAddress: aux (Options null), by MAC (re-sent: same address), a requested --ip; ReleaseAddress frees it', async () => {
    const aux = await post(sock, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '198.18.100.5', Options: null });
    expect(aux.json).toEqual({ Address: '198.18.100.5/24', Data: {} });
    const byMac = { PoolID: poolId, Address: '', Options: { 'com.docker.network.endpoint.macaddress': '02:42:c6:12:64:02' } };
    const a = await post(sock, 'IpamDriver.RequestAddress', byMac);
    // host-local's order: the next address after the last one it reserved (.5), never the gateway.
    expect(a.json.Address).toBe('198.18.100.6/24');
    byMacAddress = String(a.json.Address);
    expect((await post(sock, 'IpamDriver.RequestAddress', byMac)).json.Address).toBe(byMacAddress);
    const ip = await post(sock, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '198.18.100.50', Options: { 'com.docker.network.endpoint.macaddress': '02:42:c6:12:64:32' } });
    expect(ip.json.Address).toBe('198.18.100.50/24');
    const taken = await post(sock, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '198.18.100.50', Options: { 'com.docker.network.endpoint.macaddress': '02:42:c6:12:64:33' } });
    expect(taken.status).toBe(500);
    expect(String(taken.json.Err)).toMatch(/198\.18\.100\.50/);
    expect(await post(sock, 'IpamDriver.ReleaseAddress', { PoolID: poolId, Address: '198.18.100.50' })).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'IpamDriver.ReleaseAddress', { PoolID: poolId, Address: '198.18.100.50' })).toEqual({ status: 200, json: {} });
  });

  test('--ip-range (SubPool): dynamic addresses come from it, a requested --ip may lie outside it', async () => {
    const r = await post(sock, 'IpamDriver.RequestPool', { AddressSpace: 'cnikit-local', Pool: '198.18.104.0/24', SubPool: '198.18.104.128/25', Options: {}, V6: false });
    expect(r.status).toBe(200);
    const id = String(r.json.PoolID);
    const a = await post(sock, 'IpamDriver.RequestAddress', { PoolID: id, Address: '', Options: { 'com.docker.network.endpoint.macaddress': '02:42:c6:12:68:01' } });
    expect(a.json.Address).toBe('198.18.104.128/24');
    const b = await post(sock, 'IpamDriver.RequestAddress', { PoolID: id, Address: '198.18.104.20', Options: { 'com.docker.network.endpoint.macaddress': '02:42:c6:12:68:02' } });
    expect(b.json.Address).toBe('198.18.104.20/24');
    for (const x of ['198.18.104.128', '198.18.104.20']) await post(sock, 'IpamDriver.ReleaseAddress', { PoolID: id, Address: x });
    expect(await post(sock, 'IpamDriver.ReleasePool', { PoolID: id })).toEqual({ status: 200, json: {} });
  });

  test('a network on this pool: the chain gets exactly the allocated address (static IPAM), and DeleteEndpoint leaves the pool\'s lease to ReleaseAddress', async () => {
    const nid = hex('f1');
    const net = { NetworkID: nid, Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'cnikit-local', Gateway: '198.18.100.1/24', Pool: '198.18.100.0/24' }], IPv6Data: [] };
    expect((await post(sock, 'NetworkDriver.CreateNetwork', net)).status).toBe(200);
    const eid = hex('f2');
    const r = await post(sock, 'NetworkDriver.CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: byMacAddress, AddressIPv6: '', MacAddress: '02:42:c6:12:64:02' }, Options: {} });
    expect(r).toEqual({ status: 200, json: { Interface: {} } });
    // One lease, in the pool's store: the generated chain's own host-local store holds none.
    expect(leases(`docker-${nid.slice(0, 12)}`)).toEqual([]);
    expect((await post(sock, 'NetworkDriver.EndpointOperInfo', ids(eid, nid))).json.Value).toMatchObject({ address: byMacAddress });
    expect((await post(sock, 'NetworkDriver.Join', join_(eid, '/x', nid))).json).toMatchObject({ Gateway: '198.18.100.1' });
    expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(eid, nid))).toEqual({ status: 200, json: {} });
    expect(await s.rules()).not.toMatch(/198\.18\.100\.6/);
    expect(leases(`docker-pool-${poolId.slice(0, 16)}`).sort()).toEqual(['198.18.100.5', '198.18.100.6']);
    for (const a of ['198.18.100.6', '198.18.100.5']) await post(sock, 'IpamDriver.ReleaseAddress', { PoolID: poolId, Address: a });
    expect(leases(`docker-pool-${poolId.slice(0, 16)}`)).toEqual([]);
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: nid })).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'IpamDriver.ReleasePool', { PoolID: poolId })).toEqual({ status: 200, json: {} });
    expect(records('pools')).toEqual([]);
    expect(await s.links()).not.toContain(`br-${nid.slice(0, 12)}`);
  });
});

describe('concurrency, restarts and garbage', () => {
  test('8 concurrent CreateEndpoints on one network each get their link and lease; 8 concurrent deletes remove all', async () => {
    const eids = Array.from({ length: 8 }, (_, i) => hex(`c0${i}`));
    const created = await Promise.all(eids.map((e, i) => post(sock, 'NetworkDriver.CreateEndpoint', { ...createEndpoint(e, `198.18.97.${20 + i}/24`, NID, `02:42:c6:12:61:${(20 + i).toString(16)}`), Options: {} })));
    expect(created.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(leases(`docker-${NID.slice(0, 12)}`).sort()).toEqual(eids.map((_, i) => `198.18.97.${20 + i}`).sort());
    const deleted = await Promise.all(eids.map((e) => post(sock, 'NetworkDriver.DeleteEndpoint', ids(e))));
    expect(deleted.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(leases(`docker-${NID.slice(0, 12)}`)).toEqual([]);
    expect(await s.netnsNames()).toEqual([]);
  });

  test('CreateEndpoints on 4 networks at once (our plugins interleave in-process across networks) all succeed; DeleteEndpoints and DeleteNetworks at once leave nothing', async () => {
    const nets = [0, 1, 2, 3].map((i) => ({ nid: hex(`d${i}d`), subnet: `198.18.${110 + i}` }));
    expect((await Promise.all(nets.map((n) => post(sock, 'NetworkDriver.CreateNetwork', createNetwork(n.nid, n.subnet))))).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const eps = nets.flatMap((n, i) => [1, 2].map((j) => ({ ...n, eid: hex(`e${i}e${j}`), addr: `${n.subnet}.${10 + j}/24` })));
    const created = await Promise.all(eps.map((e, k) => post(sock, 'NetworkDriver.CreateEndpoint', { ...createEndpoint(e.eid, e.addr, e.nid, `02:42:c6:12:70:${(k + 16).toString(16)}`), Options: {} })));
    expect(created.map((r) => [r.status, r.json.Err ?? ''])).toEqual(Array(8).fill([200, '']));
    for (const n of nets) expect(leases(`docker-${n.nid.slice(0, 12)}`).sort()).toEqual([`${n.subnet}.11`, `${n.subnet}.12`]);
    expect((await Promise.all(eps.map((e) => post(sock, 'NetworkDriver.DeleteEndpoint', ids(e.eid, e.nid))))).map((r) => r.status)).toEqual(Array(8).fill(200));
    expect((await Promise.all(nets.map((n) => post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: n.nid })))).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect((await s.links()).filter((l) => l.startsWith('br-d') || l.startsWith('cni') || l.startsWith('veth'))).toEqual([]);
    expect(await s.netnsNames()).toEqual([]);
  });

  test('kill -9 after Join: the restarted plugin (stale socket removed) deletes the endpoint from its records', async () => {
    const eid = hex('9a');
    await post(sock, 'NetworkDriver.CreateEndpoint', createEndpoint(eid, '198.18.97.40/24'));
    // The sandbox key exists: start-up GC must keep this endpoint.
    await s.must('sh', ['-c', 'touch /run/netns/sbx && mount --bind /proc/self/ns/net /run/netns/sbx']);
    await post(sock, 'NetworkDriver.Join', join_(eid, '/run/netns/sbx'));
    await plugin.stop('SIGKILL');
    expect(existsSync(sock)).toBe(true);
    await plugin.start();
    expect(await s.links()).toContain(`cni${eid.slice(0, 12)}`);
    expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(eid))).toEqual({ status: 200, json: {} });
    expect(await s.links()).not.toContain(`cni${eid.slice(0, 12)}`);
    expect(leases(`docker-${NID.slice(0, 12)}`)).toEqual([]);
    await s.must('sh', ['-c', 'umount /run/netns/sbx && rm /run/netns/sbx']);
  });

  test('start-up GC: an endpoint whose sandbox is gone is deleted (link, lease, scratch netns); one never joined, and one whose sandbox directory is not visible here, are kept', async () => {
    const gone = hex('6c1');
    const kept = hex('6c2');
    expect((await post(sock, 'NetworkDriver.CreateEndpoint', createEndpoint(gone, '198.18.97.41/24'))).status).toBe(200);
    expect((await post(sock, 'NetworkDriver.Join', join_(gone, '/run/netns/no-such-sandbox'))).status).toBe(200);
    // (no -p: host port 8080 is the other endpoint's)
    expect((await post(sock, 'NetworkDriver.CreateEndpoint', { ...createEndpoint(kept, '198.18.97.42/24', NID, '02:42:c6:12:61:2a'), Options: {} })).status).toBe(200);
    // Joined to a sandbox in a directory this plugin cannot see (another mount namespace): kept.
    const unseen = hex('6c3');
    expect((await post(sock, 'NetworkDriver.CreateEndpoint', { ...createEndpoint(unseen, '198.18.97.44/24', NID, '02:42:c6:12:61:2c'), Options: {} })).status).toBe(200);
    expect((await post(sock, 'NetworkDriver.Join', join_(unseen, '/var/run/docker-elsewhere/netns/abc'))).status).toBe(200);
    await plugin.stop('SIGKILL');
    await plugin.start();
    expect(plugin.logText()).toMatch(/gc: endpoint 6c1000000000 \(its sandbox \/run\/netns\/no-such-sandbox is gone\) deleted/);
    expect(leases(`docker-${NID.slice(0, 12)}`).sort()).toEqual(['198.18.97.42', '198.18.97.44']);
    expect((await s.netnsNames()).sort()).toEqual([`cniproto-${kept.slice(0, 12)}`, `cniproto-${unseen.slice(0, 12)}`]);
    expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(kept))).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(unseen))).toEqual({ status: 200, json: {} });
  });

  test('DeleteNetwork (after Docker released IPAM) deletes endpoints whose DeleteEndpoint never came, the generated bridge and its store', async () => {
    const eid = hex('7d');
    await post(sock, 'NetworkDriver.CreateEndpoint', createEndpoint(eid, '198.18.97.43/24'));
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: NID })).toEqual({ status: 200, json: {} });
    // Only the bridges of cni.network conflists are left (not the plugin's to remove).
    expect((await s.links()).filter((l) => !['lo', 'mynet0', 'shared0'].includes(l))).toEqual([]);
    expect(existsSync(join(stateDir, 'ipam', `docker-${NID.slice(0, 12)}`))).toBe(false);
    expect(existsSync(join(stateDir, 'net.d', `docker-${NID.slice(0, 12)}.conflist`))).toBe(false);
    expect(records('networks')).toEqual([]);
    expect(records('endpoints')).toEqual([]);
    expect(await s.netnsNames()).toEqual([]);
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: NID })).toEqual({ status: 200, json: {} });
  });

  test('with the Go reference plugins exec\'d (bridge + host-local): the link comes back with its address, so the reference bridge\'s DEL removes its masquerade rules', async () => {
    writeFileSync(
      join(confDir, '20-refnet.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'refnet',
        plugins: [{ type: 'bridge', bridge: 'refnet0', isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'host-local', dataDir: join(s.dir, 'ref-ipam'), ranges: [[{ subnet: '198.18.101.0/24' }]] } }],
      }),
    );
    const ref = new PluginDaemon(s, 'cniref', { stateDir: join(s.dir, 'refstate'), confDir, socketDir: join(s.dir, 'plugins'), cniPath: '/usr/lib/cni' });
    await ref.start();
    try {
      const nid = hex('e1');
      const eid = hex('e2');
      const net = { NetworkID: nid, Options: { 'com.docker.network.generic': { 'cni.network': 'refnet' } }, IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: '198.18.101.1/24', Pool: '198.18.101.0/24' }], IPv6Data: [] };
      expect(await post(ref.socket, 'NetworkDriver.CreateNetwork', net)).toEqual({ status: 200, json: {} });
      expect((await post(ref.socket, 'NetworkDriver.CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: '198.18.101.9/24', AddressIPv6: '', MacAddress: '' }, Options: {} })).status).toBe(200);
      expect(await s.rules()).toMatch(/198\.18\.101\.9/);
      // What libnetwork leaves at DeleteEndpoint: the link back in the host, without addresses.
      expect(await post(ref.socket, 'NetworkDriver.DeleteEndpoint', ids(eid, nid))).toEqual({ status: 200, json: {} });
      expect(ref.logText()).toMatch(/^NetworkDriver\.DeleteEndpoint .*take-back/m);
      expect(await s.rules()).not.toMatch(/198\.18\.101\.9/);
      expect(readdirSync(join(s.dir, 'ref-ipam', 'refnet')).filter((f) => f.startsWith('198.'))).toEqual([]);
    } finally {
      await ref.stop('SIGTERM');
    }
  });

  test('a crash between the chain\'s ADD and the record (an attachment cached, a scratch netns, no record) is DEL\'ed at start: lease and netns gone', async () => {
    const nid = hex('8c');
    expect(await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(nid, '198.18.103'))).toEqual({ status: 200, json: {} });
    // What CreateEndpoint had done when killed: the scratch netns and the ADD (through cnitool on the
    // plugin's own cache and the network's conflist in <state>/net.d, which is what the plugin runs).
    await s.must('ip', ['netns', 'add', 'cniproto-0123456789ab']);
    const net = `docker-${nid.slice(0, 12)}`;
    await s.must('env', [`NETCONFPATH=${join(stateDir, 'net.d')}`, `CNI_PATH=${binDir()}`, `CNI_CACHEDIR=${join(stateDir, 'docker', 'cache')}`, 'CNI_IFNAME=cni0123456789ab', join(binDir(), 'cnitool'), 'add', net, '/run/netns/cniproto-0123456789ab']);
    expect(leases(net)).toHaveLength(1);
    await plugin.stop('SIGKILL');
    await plugin.start();
    expect(leases(net)).toEqual([]);
    expect(await s.netnsNames()).not.toContain('cniproto-0123456789ab');
    expect(plugin.logText()).toMatch(/gc: scratch netns cniproto-0123456789ab without an endpoint removed/);
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: nid })).toEqual({ status: 200, json: {} });
  });

  test('SIGTERM during a CreateEndpoint: the request finishes and is answered, then the daemon exits', async () => {
    const nid = hex('5f');
    expect(await post(sock, 'NetworkDriver.CreateNetwork', createNetwork(nid, '198.18.107'))).toEqual({ status: 200, json: {} });
    const eid = hex('5e');
    const answer = post(sock, 'NetworkDriver.CreateEndpoint', { ...createEndpoint(eid, '198.18.107.9/24', nid), Options: {} });
    // Wait until it is under way (its scratch netns exists), then stop the daemon.
    for (let i = 0; i < 200 && !(await s.netnsNames()).includes(`cniproto-${eid.slice(0, 12)}`); i++) await new Promise((r) => setTimeout(r, 2));
    const stopped = plugin.stop('SIGTERM');
    expect(await answer).toEqual({ status: 200, json: { Interface: {} } });
    expect(await stopped).toBe(0);
    expect(await s.links()).toContain(`cni${eid.slice(0, 12)}`);
    await plugin.start();
    expect(await post(sock, 'NetworkDriver.DeleteEndpoint', ids(eid, nid))).toEqual({ status: 200, json: {} });
    expect(await post(sock, 'NetworkDriver.DeleteNetwork', { NetworkID: nid })).toEqual({ status: 200, json: {} });
  });

  test('SIGTERM and SIGINT remove the socket and exit 0', async () => {
    expect(await plugin.stop('SIGTERM')).toBe(0);
    expect(existsSync(sock)).toBe(false);
    await plugin.start();
    expect(await plugin.stop('SIGINT')).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });
});
