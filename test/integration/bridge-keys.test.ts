// bridge plugin: every config key, observed in the kernel (ip -j, bridge -j vlan, nft -j, sysctl).
import { execa } from 'execa';
import { ipj, kernelHasVlanFiltering, Lab, ourBinDir, ping, sh } from './bridge-harness';

jest.setTimeout(120000);

let lab: Lab;

// vlan_filtering needs CONFIG_BRIDGE_VLAN_FILTERING; the reference fails the same way without it.
// Without it these tests are skipped here and run in a VM instead (bridge-vlan-vm.test.ts).
const vlanFiltering = kernelHasVlanFiltering('br');
const vlanTest = vlanFiltering ? test : test.skip;

afterEach(async () => {
  await lab?.dispose();
});

async function link(ns: string, name: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return (await ipj(ns, '-d', 'link', 'show', name))[0];
}

async function vlans(ns: string, dev: string): Promise<Array<{ vlan: number; flags?: string[] }>> {
  const r = await execa('ip', ['netns', 'exec', ns, 'bridge', '-j', 'vlan', 'show', 'dev', dev]);
  const j = JSON.parse(r.stdout || '[]') as Array<{ ifname: string; vlans: Array<{ vlan: number; vlanEnd?: number; flags?: string[] }> }>;
  const out: Array<{ vlan: number; flags?: string[] }> = [];
  for (const v of j[0]?.vlans ?? []) for (let x = v.vlan; x <= (v.vlanEnd ?? v.vlan); x++) out.push({ vlan: x, ...(v.flags ? { flags: v.flags } : {}) });
  return out;
}

test('mtu applies to the new bridge and both veth ends', async () => {
  lab = await Lab.create(1);
  const r = await lab.call('ADD', lab.conf({ mtu: 1400 }));
  expect(r.exitCode).toBe(0);
  expect((await link(lab.host, 'cni0')).mtu).toBe(1400);
  expect((await link(lab.host, r.json.interfaces[1].name)).mtu).toBe(1400);
  expect((await link(lab.pods[0]!, 'eth0')).mtu).toBe(1400);
});

test('hairpinMode and portIsolation set the bridge-port flags; promiscMode sets promisc on the bridge', async () => {
  lab = await Lab.create(2);
  const a = await lab.call('ADD', lab.conf({ hairpinMode: true, portIsolation: true }), { pod: lab.pods[0] });
  expect(a.exitCode).toBe(0);
  const port = await link(lab.host, a.json.interfaces[1].name);
  expect(port.linkinfo.info_slave_data.hairpin).toBe(true);
  expect(port.linkinfo.info_slave_data.isolated).toBe(true);
  expect((await link(lab.host, 'cni0')).promiscuity).toBe(0);
  const b = await lab.call('ADD', lab.conf({ promiscMode: true }), { pod: lab.pods[1] });
  expect(b.exitCode).toBe(0);
  expect((await link(lab.host, 'cni0')).promiscuity).toBeGreaterThan(0);
  const port2 = await link(lab.host, b.json.interfaces[1].name);
  expect(port2.linkinfo.info_slave_data.hairpin).toBe(false);
  expect(port2.linkinfo.info_slave_data.isolated).toBe(false);
  // Both at once is refused (the reference's message).
  const c = await lab.call('ADD', lab.conf({ promiscMode: true, hairpinMode: true }), { pod: lab.pods[1], id: 'other' });
  expect(c.json).toMatchObject({ code: 7, msg: 'cannot set hairpin mode and promiscuous mode at the same time' });
});

test('MAC: CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac', async () => {
  lab = await Lab.create(1);
  await lab.addPod();
  await lab.addPod();
  const [p1, p2, p3] = lab.pods as [string, string, string];
  const a1 = await lab.call('ADD', lab.conf(), { pod: p1, args: 'IgnoreUnknown=1;K8S_POD_NAME=x;MAC=0a:58:c6:12:00:aa' });
  expect(a1.json.interfaces[2].mac).toBe('0a:58:c6:12:00:aa');
  expect((await link(p1, 'eth0')).address).toBe('0a:58:c6:12:00:aa');
  const a2 = await lab.call('ADD', lab.conf({ args: { cni: { mac: '0a:58:c6:12:00:bb' } } }), { pod: p2, args: 'IgnoreUnknown=1;MAC=0a:58:c6:12:00:aa' });
  expect((await link(p2, 'eth0')).address).toBe('0a:58:c6:12:00:bb');
  expect(a2.json.interfaces[2].mac).toBe('0a:58:c6:12:00:bb');
  await lab.call('ADD', lab.conf({ args: { cni: { mac: '0a:58:c6:12:00:bb' } }, runtimeConfig: { mac: '0a:58:c6:12:00:cc' } }), { pod: p3 });
  expect((await link(p3, 'eth0')).address).toBe('0a:58:c6:12:00:cc');
  const bad = await lab.call('ADD', lab.conf({ runtimeConfig: { mac: 'nope' } }), { pod: p3, id: 'x2' });
  expect(bad.json.code).toBe(7);
  expect(bad.json.msg).toContain('runtimeConfig.mac');
});

vlanTest('vlan: PVID untagged on the port, vlan_filtering on the bridge, gateway on <bridge>.<vlan>', async () => {
  lab = await Lab.create(2);
  const conf = lab.conf({ vlan: 100, isGateway: true });
  const a = await lab.call('ADD', conf, { pod: lab.pods[0] });
  expect(a.exitCode).toBe(0);
  expect((await link(lab.host, 'cni0')).linkinfo.info_data.vlan_filtering).toBe(1);
  expect(await vlans(lab.host, a.json.interfaces[1].name)).toEqual([{ vlan: 100, flags: ['PVID', 'Egress Untagged'] }]);
  expect(a.json.interfaces[3].name).toBe('cni0.100');
  const gw = await ipj(lab.host, '-4', 'addr', 'show', 'cni0.100');
  expect(gw[0].addr_info[0].local).toBe('198.18.0.1');
  expect(await ping(lab.pods[0]!, '198.18.0.1')).toBe(true);
  // A second pod reuses the gateway interface.
  const b = await lab.call('ADD', conf, { pod: lab.pods[1] });
  expect(b.json.interfaces[3].name).toBe('cni0.100');
  expect(await ping(lab.pods[1]!, '198.18.0.2')).toBe(true);
});

vlanTest('vlanTrunk: tagged VIDs plus native VLAN 1; preserveDefaultVlan keeps the default entry', async () => {
  lab = await Lab.create(2);
  const trunk = [{ id: 5 }, { minID: 10, maxID: 12 }];
  const a = await lab.call('ADD', lab.conf({ vlanTrunk: trunk }), { pod: lab.pods[0] });
  expect(a.exitCode).toBe(0);
  expect(await vlans(lab.host, a.json.interfaces[1].name)).toEqual([
    { vlan: 1, flags: ['PVID', 'Egress Untagged'] },
    { vlan: 5 },
    { vlan: 10 },
    { vlan: 11 },
    { vlan: 12 },
  ]);
  const b = await lab.call('ADD', lab.conf({ vlan: 7, preserveDefaultVlan: true }), { pod: lab.pods[1] });
  expect(b.exitCode).toBe(0);
  // The kernel's default VID 1 entry stays; VLAN 7 becomes the PVID.
  expect(await vlans(lab.host, b.json.interfaces[1].name)).toEqual([
    { vlan: 1, flags: ['Egress Untagged'] },
    { vlan: 7, flags: ['PVID', 'Egress Untagged'] },
  ]);
});

test('vlan and vlanTrunk validation (the reference messages, code 7)', async () => {
  lab = await Lab.create(1);
  const invalid = await lab.call('ADD', lab.conf({ vlan: 4095 }));
  expect(invalid.json).toMatchObject({ code: 7, msg: 'invalid VLAN ID 4095 (must be between 0 and 4094)' });
  const bad = await lab.call('ADD', lab.conf({ vlanTrunk: [{ minID: 10 }] }));
  expect(bad.json).toMatchObject({ code: 7, msg: 'minID and maxID should be configured simultaneously, maxID is missing' });
  const kernel = await lab.call('ADD', lab.conf({ vlan: 100 }));
  if (!vlanFiltering) {
    // Without kernel support the error names the operation, and nothing is left behind.
    expect(kernel.json.msg).toBe('failed to create bridge "cni0": could not add "cni0": creating bridge cni0: operation not supported');
    expect(lab.leases()).toEqual([]);
  } else expect(kernel.exitCode).toBe(0);
});

test('macspoofchk: nft bridge rules drop frames from other MACs; DEL removes them', async () => {
  lab = await Lab.create(2);
  const [p1, p2] = lab.pods as [string, string];
  const conf = lab.conf({ macspoofchk: true });
  const a = await lab.call('ADD', conf, { pod: p1 });
  expect(a.exitCode).toBe(0);
  expect((await lab.call('ADD', conf, { pod: p2 })).exitCode).toBe(0);
  const id = `ctr-${p1}-eth0`;
  const nft = JSON.parse(await sh(lab.host, ['nft', '-j', 'list', 'table', 'bridge', 'nat'])) as { nftables: Array<{ rule?: { chain: string; comment?: string }; chain?: { name: string } }> };
  const chains = nft.nftables.flatMap((o) => (o.chain ? [o.chain.name] : []));
  expect(chains).toEqual(expect.arrayContaining(['PREROUTING', `cni-br-iface-${id}`, `cni-br-iface-${id}-mac`]));
  const text = await sh(lab.host, ['nft', 'list', 'table', 'bridge', 'nat']);
  expect(text).toContain(`iifname "${a.json.interfaces[1].name}" jump cni-br-iface-${id} comment "macspoofchk-${id}"`);
  expect(text).toContain(`ether saddr ${a.json.interfaces[2].mac} return comment "macspoofchk-${id}"`);
  expect(await ping(p1, '198.18.0.3')).toBe(true);
  // Spoof the MAC inside pod 1: its frames are dropped now.
  await execa('ip', ['-n', p1, 'link', 'set', 'eth0', 'address', '0a:58:c6:12:00:99']);
  expect(await ping(p1, '198.18.0.3')).toBe(false);
  expect((await lab.call('DEL', conf, { pod: p1 })).exitCode).toBe(0);
  const left = await sh(lab.host, ['nft', 'list', 'table', 'bridge', 'nat']);
  expect(left).not.toContain(id);
  expect(left).toContain(`macspoofchk-ctr-${p2}-eth0`);
});

test('GC removes spoof checks of stale attachments on our bridge only', async () => {
  lab = await Lab.create(2);
  const [p1, p2] = lab.pods as [string, string];
  const conf = { ...lab.conf({ macspoofchk: true }), cniVersion: '1.1.0' };
  expect((await lab.call('ADD', conf, { pod: p1 })).exitCode).toBe(0);
  expect((await lab.call('ADD', conf, { pod: p2 })).exitCode).toBe(0);
  // Another network's check on a port of another bridge must survive this network's GC.
  const other = { ...conf, name: 'other', bridge: 'cni1' };
  await lab.addPod();
  expect((await lab.call('ADD', other, { pod: lab.pods[2] })).exitCode).toBe(0);
  const gc = await lab.call('GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: `ctr-${p2}`, ifname: 'eth0' }] }, { pod: '' });
  expect(gc.exitCode).toBe(0);
  const text = await sh(lab.host, ['nft', 'list', 'table', 'bridge', 'nat']);
  expect(text).not.toContain(`ctr-${p1}-eth0`);
  expect(text).toContain(`macspoofchk-ctr-${p2}-eth0`);
  expect(text).toContain(`macspoofchk-ctr-${lab.pods[2]}-eth0`);
  expect(lab.leases()).toEqual(['198.18.0.3']); // host-local got the GC too (the other network keeps its own)
});

test('enabledad: accept_dad=1 and enhanced_dad=1 in the pod (default accept_dad=0)', async () => {
  lab = await Lab.create(2);
  const a = await lab.call('ADD', lab.conf({ enabledad: true }, ['fd00:18::/64']), { pod: lab.pods[0] });
  expect(a.exitCode).toBe(0);
  expect((await sh(lab.pods[0]!, ['sysctl', '-n', 'net.ipv6.conf.eth0.accept_dad'])).trim()).toBe('1');
  expect((await sh(lab.pods[0]!, ['sysctl', '-n', 'net.ipv6.conf.eth0.enhanced_dad'])).trim()).toBe('1');
  const b = await lab.call('ADD', lab.conf({}, ['fd00:18::/64']), { pod: lab.pods[1] });
  expect(b.exitCode).toBe(0);
  expect((await sh(lab.pods[1]!, ['sysctl', '-n', 'net.ipv6.conf.eth0.accept_dad'])).trim()).toBe('0');
});

test('disableContainerInterface leaves the pod end down; it refuses IPAM', async () => {
  lab = await Lab.create(1);
  const bad = await lab.call('ADD', lab.conf({ disableContainerInterface: true }));
  expect(bad.json).toMatchObject({ code: 7, msg: 'cannot use IPAM when DisableContainerInterface flag is set' });
  const r = await lab.call('ADD', { ...lab.conf({ disableContainerInterface: true }), ipam: {} });
  expect(r.exitCode).toBe(0);
  expect((await link(lab.pods[0]!, 'eth0')).flags).not.toContain('UP');
});

test('L2-only (ipam without type): no IPs, pod end up; CHECK works (the reference fails it); 0.2.0 cannot print it', async () => {
  lab = await Lab.create(1);
  const conf = { ...lab.conf(), ipam: {} };
  const r = await lab.call('ADD', conf);
  expect(r.exitCode).toBe(0);
  expect(r.json.ips).toBeUndefined();
  expect(r.json.interfaces).toHaveLength(3);
  expect((await link(lab.pods[0]!, 'eth0')).flags).toContain('UP');
  const check = await lab.call('CHECK', { ...conf, prevResult: r.json });
  expect(check.exitCode).toBe(0);
  expect((await lab.call('DEL', conf)).exitCode).toBe(0);
  const old = await lab.call('ADD', { ...conf, cniVersion: '0.2.0' });
  expect(old.json).toMatchObject({ msg: 'cannot convert: no valid IP addresses' });
  // ...and the failed ADD left no veth behind.
  expect((await ipj(lab.host, 'link', 'show')).some((l: { ifname: string }) => l.ifname.startsWith('veth'))).toBe(false);
});

test('dns in the config overrides the IPAM DNS in the result', async () => {
  lab = await Lab.create(1);
  const dns = { nameservers: ['198.18.0.53'], search: ['example.test'] };
  const r = await lab.call('ADD', lab.conf({ dns }));
  expect(r.json.dns).toEqual(dns);
});

test('bad config values: code 7 naming the field and value', async () => {
  lab = await Lab.create(1);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ isGateway: 'yes' }, 'isGateway'],
    [{ mtu: -1 }, 'mtu'],
    [{ bridge: 'a/b' }, 'bridge'],
    [{ ipMasqBackend: 'pf' }, 'unknown ipmasq backend "pf"'],
    [{ vlanTrunk: [{ id: 0 }] }, 'incorrect trunk id parameter'],
  ];
  for (const [extra, want] of cases) {
    const r = await lab.call('ADD', lab.conf(extra));
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain(want);
  }
  expect(lab.leases()).toEqual([]);
});

test('STATUS forwards to IPAM; GC and STATUS need 1.1.0', async () => {
  lab = await Lab.create(1);
  const st = await lab.call('STATUS', { ...lab.conf(), cniVersion: '1.1.0' }, { pod: '' });
  expect(st.exitCode).toBe(0);
  const missing = await lab.call('STATUS', { ...lab.conf(), cniVersion: '1.1.0', ipam: { type: 'no-such-ipam' } }, { pod: '' });
  expect(missing.exitCode).not.toBe(0);
  expect(missing.json.msg).toContain('no-such-ipam');
  const old = await lab.call('STATUS', lab.conf(), { pod: '' });
  expect(old.json.code).toBe(1);
});

test('IPAM: our host-local runs in-process (no second exec); the reference host-local works too', async () => {
  lab = await Lab.create(2);
  const trace = `${lab.dataDir}/trace`;
  const r = await execa(
    'ip',
    ['netns', 'exec', lab.host, 'strace', '-f', '-qq', '-e', 'trace=execve', '-o', trace, `${ourBinDir()}/bridge`],
    {
      input: JSON.stringify(lab.conf()),
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'inproc', CNI_NETNS: `/var/run/netns/${lab.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: ourBinDir() },
      reject: false,
    },
  );
  expect(r.exitCode).toBe(0);
  const execs = (await execa('cat', [trace])).stdout.split('\n').filter((l) => l.includes('execve('));
  expect(execs.filter((l) => l.includes('host-local'))).toEqual([]);
  expect(lab.leases()).toEqual(['198.18.0.2']);
  // The Go reference host-local, found first in CNI_PATH, allocates from the same store format.
  const ref = await lab.call('ADD', lab.conf(), { pod: lab.pods[1], cniPath: '/usr/lib/cni' });
  expect(ref.exitCode).toBe(0);
  expect(ref.json.ips[0].address).toBe('198.18.0.3/24');
  expect((await lab.call('DEL', lab.conf(), { pod: lab.pods[1], cniPath: '/usr/lib/cni' })).exitCode).toBe(0);
  expect(lab.leases()).toEqual(['198.18.0.2']);
});
