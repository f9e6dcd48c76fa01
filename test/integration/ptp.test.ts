// ptp plugin through the built binary: pods in scratch netns behind a scratch host netns; kernel
// state for every key, traffic between pods via the host (IPv4 and IPv6), CHECK, DEL, GC, STATUS.
import { execa } from 'execa';
import { ipj, Lab, ping, sh, type CallOpts } from './bridge-harness';
import { iptablesIsNft } from '../support/exec-count';

jest.setTimeout(120000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

let lab: Lab;
afterEach(async () => {
  await lab?.dispose();
});

const dual = ['198.18.0.0/24', 'fd00:18::/64'];

/** A ptp config with host-local over `subnets` (default routes for both families), data under the lab. */
function ptpConf(extra: Record<string, unknown> = {}, subnets = dual): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'ptpnet',
    type: 'ptp',
    ipam: { type: 'host-local', dataDir: lab.dataDir, ranges: subnets.map((s) => [{ subnet: s }]), routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] },
    ...extra,
  };
}

const call = (cmd: string, conf: unknown, o: CallOpts = {}) => lab.call(cmd, conf, { plugin: 'ptp', ...o });
const links = async (ns: string): Promise<string[]> => (await ipj(ns, 'link', 'show')).map((l: Json) => l.ifname);
const globalAddrs = (l: Json): string[] => l.addr_info.filter((a: Json) => a.scope !== 'link').map((a: Json) => `${a.local}/${a.prefixlen}`);
const leases = (): string[] => lab.leases('ptpnet').sort();

describe('ptp L3 (IPv4 + IPv6)', () => {
  test('two pods reach each other and the host through their host veths; kernel state; CHECK; DEL twice and without netns', async () => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = ptpConf({ mtu: 1400 });
    const r1 = await call('ADD', conf, { pod: p1 });
    expect(r1.exitCode).toBe(0);
    const r2 = await call('ADD', conf, { pod: p2 });
    expect(r2.exitCode).toBe(0);

    // Result: [host veth, container] with the container at index 1, IPAM's routes passed on.
    const res = r1.json;
    expect(res.interfaces).toEqual([
      { name: expect.stringMatching(/^veth[0-9a-f]{8}$/), mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/) },
      { name: 'eth0', mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/), sandbox: `/var/run/netns/${p1}` },
    ]);
    expect(res.ips).toEqual([
      { interface: 1, address: '198.18.0.2/24', gateway: '198.18.0.1' },
      { interface: 1, address: 'fd00:18::2/64', gateway: 'fd00:18::1' },
    ]);
    expect(res.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
    const hostVeth = res.interfaces[0].name;

    // Pod: address with its prefix, mtu; the subnet is routed via the gateway, the gateway is on-link.
    const eth0 = (await ipj(p1, 'addr', 'show', 'eth0'))[0];
    expect(eth0.mtu).toBe(1400);
    expect(eth0.address).toBe(res.interfaces[1].mac);
    expect(globalAddrs(eth0)).toEqual(['198.18.0.2/24', 'fd00:18::2/64']);
    const r4 = (await ipj(p1, '-4', 'route', 'show')).map((r: Json) => ({ dst: r.dst, gateway: r.gateway, scope: r.scope, prefsrc: r.prefsrc, protocol: r.protocol }));
    expect(r4).toEqual([
      { dst: 'default', gateway: '198.18.0.1', scope: undefined, prefsrc: undefined, protocol: undefined },
      { dst: '198.18.0.0/24', gateway: '198.18.0.1', scope: undefined, prefsrc: '198.18.0.2', protocol: undefined },
      { dst: '198.18.0.1', gateway: undefined, scope: 'link', prefsrc: '198.18.0.2', protocol: undefined },
    ]);
    const r6 = (await ipj(p1, '-6', 'route', 'show')).filter((r: Json) => !String(r.dst).startsWith('fe80')).map((r: Json) => [r.dst, r.gateway, r.prefsrc]);
    expect(r6).toEqual([
      ['fd00:18::1', undefined, 'fd00:18::2'],
      ['fd00:18::/64', 'fd00:18::1', 'fd00:18::2'],
      ['default', 'fd00:18::1', undefined],
    ]);

    // Host: the veth is unbridged, up, mtu 1400, holds the gateways as /32 and /128 (not tentative),
    // with a host route back to each pod address; forwarding on; accept_ra off.
    const hv = (await ipj(lab.host, '-d', 'addr', 'show', hostVeth))[0];
    expect(hv).toMatchObject({ mtu: 1400, operstate: 'UP' });
    expect(hv.master).toBeUndefined();
    expect(globalAddrs(hv)).toEqual(['198.18.0.1/32', 'fd00:18::1/128']);
    expect(hv.addr_info.some((a: Json) => a.tentative)).toBe(false);
    const hr = [...(await ipj(lab.host, '-4', 'route', 'show', 'dev', hostVeth)), ...(await ipj(lab.host, '-6', 'route', 'show', 'dev', hostVeth))];
    expect(hr.map((r: Json) => [r.dst, r.scope]).filter(([d]: string[]) => !d!.startsWith('fe80') && d !== 'fd00:18::1')).toEqual([
      ['198.18.0.2', 'host'],
      ['fd00:18::2', undefined],
    ]);
    expect((await sh(lab.host, ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim()).toBe('1');
    expect((await sh(lab.host, ['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).trim()).toBe('1');
    expect((await sh(lab.host, ['sysctl', '-n', `net.ipv6.conf.${hostVeth}.accept_ra`])).trim()).toBe('0');
    // No DAD on the host end: the host can solicit pod neighbours at once (first IPv6 packet not lost).
    expect((await sh(lab.host, ['sysctl', '-n', `net.ipv6.conf.${hostVeth}.accept_dad`])).trim()).toBe('0');

    // Traffic: pod to pod over both families (through the host), host to pod, pod to its gateway.
    expect(await ping(p1, '198.18.0.3')).toBe(true);
    expect(await ping(p2, '198.18.0.2')).toBe(true);
    expect(await ping(p1, 'fd00:18::3')).toBe(true);
    expect(await ping(p2, 'fd00:18::2')).toBe(true);
    expect(await ping(lab.host, '198.18.0.2')).toBe(true);
    expect(await ping(p1, 'fd00:18::1')).toBe(true);

    const ok = await call('CHECK', { ...conf, prevResult: res }, { pod: p1 });
    expect([ok.exitCode, ok.stdout]).toEqual([0, '']);

    expect(leases()).toEqual(['198.18.0.2', '198.18.0.3', 'fd00:18::2', 'fd00:18::3']);
    const del = await call('DEL', { ...conf, prevResult: res }, { pod: p1 });
    expect([del.exitCode, del.stdout]).toEqual([0, '']);
    expect(await links(p1)).toEqual(['lo']);
    expect(await links(lab.host)).not.toContain(hostVeth);
    expect(await sh(lab.host, ['ip', 'route', 'show', '198.18.0.2'])).toBe('');
    expect(leases()).toEqual(['198.18.0.3', 'fd00:18::3']);
    // Repeated DEL, and DEL without a netns, succeed and change nothing else.
    expect((await call('DEL', conf, { pod: p1 })).exitCode).toBe(0);
    expect((await call('DEL', conf, { pod: '', id: `ctr-${p1}` })).exitCode).toBe(0);
    expect(await ping(p2, '198.18.0.1')).toBe(true);
    // DEL without a netns of a live pod releases its lease (the runtime lost the netns).
    expect((await call('DEL', conf, { pod: '', id: `ctr-${p2}` })).exitCode).toBe(0);
    expect(leases()).toEqual([]);
  });

  test('CHECK fails when the pod address, the host route or the host veth is gone, and without prevResult', async () => {
    lab = await Lab.create(1);
    const [p1] = lab.pods as [string];
    const conf = ptpConf();
    const add = await call('ADD', conf);
    expect(add.exitCode).toBe(0);
    const prev = { ...conf, prevResult: add.json };
    const hostVeth = add.json.interfaces[0].name;
    expect((await call('CHECK', prev)).exitCode).toBe(0);

    await execa('ip', ['-n', p1, 'addr', 'del', 'fd00:18::2/64', 'dev', 'eth0']);
    expect((await call('CHECK', prev)).json.msg).toBe('Failed to match addr fd00:18::2/64 on interface eth0');
    await execa('ip', ['-n', p1, 'addr', 'add', 'fd00:18::2/64', 'dev', 'eth0', 'nodad']);
    await execa('ip', ['-n', p1, '-6', 'route', 'replace', 'default', 'via', 'fd00:18::1', 'dev', 'eth0']);
    expect((await call('CHECK', prev)).exitCode).toBe(0);

    // The pod's netns looks right, but nothing leads back to it: the reference passes here.
    await execa('ip', ['-n', lab.host, 'route', 'del', '198.18.0.2/32', 'dev', hostVeth]);
    expect((await call('CHECK', prev)).json.msg).toBe(`ptp: host route to 198.18.0.2 via ${hostVeth} not found`);
    await execa('ip', ['-n', lab.host, 'route', 'add', '198.18.0.2/32', 'dev', hostVeth, 'scope', 'host']);
    expect((await call('CHECK', prev)).exitCode).toBe(0);

    const wrongMac = { ...conf, prevResult: { ...add.json, interfaces: [add.json.interfaces[0], { ...add.json.interfaces[1], mac: '0a:00:00:00:00:01' }] } };
    expect((await call('CHECK', wrongMac)).json.msg).toMatch(/^ptp: Interface eth0 Mac 0a:00:00:00:00:01 doesn't match container Mac: /);
    expect((await call('CHECK', conf)).json.msg).toBe('Required prevResult missing');
    const elsewhere = { ...conf, prevResult: { ...add.json, interfaces: [add.json.interfaces[0], { ...add.json.interfaces[1], sandbox: '/var/run/netns/other' }] } };
    expect((await call('CHECK', elsewhere)).json.msg).toBe(`Sandbox in prevResult  doesn't match configured netns: /var/run/netns/${p1}`);

    await execa('ip', ['-n', p1, 'link', 'del', 'eth0']);
    expect((await call('CHECK', prev)).json.msg).toBe('ptp: Container Interface name in prevResult: eth0 not found');
  });

  test('a failed ADD leaves nothing behind: the pod interface exists, an IPAM address without gateway, a bad netns', async () => {
    lab = await Lab.create(1);
    const [p1] = lab.pods as [string];
    await execa('ip', ['-n', p1, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
    const taken = await call('ADD', ptpConf());
    expect(taken.exitCode).toBe(1);
    expect(taken.json.msg).toMatch(/^container veth name \("eth0"\) peer provided \("veth[0-9a-f]{8}"\) already exists$/);
    expect(leases()).toEqual([]);
    expect(await links(lab.host)).toEqual(['lo']);

    const noGw = { cniVersion: '1.0.0', name: 'ptpnet', type: 'ptp', ipam: { type: 'static', addresses: [{ address: '198.18.0.5/24' }] } };
    const ng = await call('ADD', noGw, { ifname: 'eth1' });
    expect(ng.json.code).toBe(7);
    expect(ng.json.msg).toMatch(/^IPAM result ips\[0\] \{"address":"198\.18\.0\.5\/24"\}: ptp routes each address through its gateway/);
    expect(await links(lab.host)).toEqual(['lo']);
    expect((await links(p1)).sort()).toEqual(['eth0', 'eth0p', 'lo']);

    const badNs = await call('ADD', ptpConf(), { id: 'x', pod: 'br-p-nonexistent' });
    expect(badNs.exitCode).toBe(1);
    expect(badNs.json.msg).toBe('failed to open netns "/var/run/netns/br-p-nonexistent": netns "/var/run/netns/br-p-nonexistent" does not exist');
    expect(leases()).toEqual([]);

    const noIpam = await call('ADD', { cniVersion: '1.0.0', name: 'ptpnet', type: 'ptp' }, { ifname: 'eth1' });
    expect(noIpam.json.code).toBe(7);
    expect(noIpam.json.msg).toContain('field "ipam.type"');
  });

  test('static IPAM: config addresses and CNI_ARGS IP=/GATEWAY= are routed; CHECK follows the config', async () => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = { cniVersion: '1.0.0', name: 'ptpnet', type: 'ptp', ipam: { type: 'static', addresses: [{ address: '198.18.5.10/24', gateway: '198.18.5.1' }] } };
    const a = await call('ADD', conf, { pod: p1 });
    expect(a.json.ips).toEqual([{ interface: 1, address: '198.18.5.10/24', gateway: '198.18.5.1' }]);
    const b = await call('ADD', { ...conf, ipam: { type: 'static' } }, { pod: p2, args: 'IP=198.18.5.20/24;GATEWAY=198.18.5.1' });
    expect(b.json.ips).toEqual([{ interface: 1, address: '198.18.5.20/24', gateway: '198.18.5.1' }]);
    expect(globalAddrs((await ipj(p2, 'addr', 'show', 'eth0'))[0])).toEqual(['198.18.5.20/24']);
    expect(await ping(p1, '198.18.5.20')).toBe(true);
    expect((await call('CHECK', { ...conf, prevResult: a.json }, { pod: p1 })).exitCode).toBe(0);
    // CHECK against a config that now names another address fails (static checks prevResult).
    const moved = { ...conf, ipam: { type: 'static', addresses: [{ address: '198.18.5.11/24', gateway: '198.18.5.1' }] }, prevResult: a.json };
    expect((await call('CHECK', moved, { pod: p1 })).json.msg).toBe('static: Failed to match addr 198.18.5.11 on interface eth0');
    expect((await call('DEL', conf, { pod: p1 })).exitCode).toBe(0);
    expect(await links(p1)).toEqual(['lo']);
  });

  test('a /32 and a /128 address with default routes via a gateway outside them are routed; the reference fails on them', async () => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = (a4: string, a6: string) => ({
      cniVersion: '1.0.0',
      name: 'ptpnet',
      type: 'ptp',
      ipam: { type: 'static', addresses: [{ address: a4, gateway: '198.18.6.1' }, { address: a6, gateway: 'fd00:6::1' }], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] },
    });
    const theirs = await call('ADD', conf('198.18.6.9/32', 'fd00:6::9/128'), { pod: p2, ifname: 'eth9', cniPath: '/usr/lib/cni', binary: '/usr/lib/cni/ptp' });
    expect(theirs.json.msg).toBe("failed to add route '{0.0.0.0 00000000} via 198.18.6.1 dev eth9': network is unreachable");
    expect((await call('ADD', conf('198.18.6.2/32', 'fd00:6::2/128'), { pod: p1 })).exitCode).toBe(0);
    expect((await call('ADD', conf('198.18.6.3/32', 'fd00:6::3/128'), { pod: p2 })).exitCode).toBe(0);
    expect(await ping(p1, '198.18.6.3')).toBe(true);
    expect(await ping(p2, 'fd00:6::2')).toBe(true);
    expect((await call('DEL', conf('198.18.6.2/32', 'fd00:6::2/128'), { pod: p1 })).exitCode).toBe(0);
    expect(await links(p1)).toEqual(['lo']);
  });

  test.each(['0.1.0', '0.2.0', '0.3.1', '0.4.0', '1.1.0'])('result printed in cniVersion %s', async (v) => {
    lab = await Lab.create(1);
    const conf = { ...ptpConf(), cniVersion: v };
    const r = await call('ADD', conf);
    expect(r.exitCode).toBe(0);
    if (v === '0.1.0' || v === '0.2.0')
      expect(r.json).toEqual({
        cniVersion: v,
        ip4: { ip: '198.18.0.2/24', gateway: '198.18.0.1', routes: [{ dst: '0.0.0.0/0' }] },
        ip6: { ip: 'fd00:18::2/64', gateway: 'fd00:18::1', routes: [{ dst: '::/0' }] },
        dns: {},
      });
    else expect(r.json.ips.map((i: Json) => [i.interface, i.address, i.version])).toEqual([[1, '198.18.0.2/24', v < '1' ? '4' : undefined], [1, 'fd00:18::2/64', v < '1' ? '6' : undefined]]);
    expect((await call('DEL', conf)).exitCode).toBe(0);
    expect(leases()).toEqual([]);
  });
});

describe('ptp ipMasq, GC, STATUS', () => {
  /** An "outside" netns behind an uplink of the host, with no route back to the pod subnet. */
  async function withOutside(): Promise<void> {
    const out = await lab.addNetns('br-o');
    await execa('ip', ['-n', lab.host, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    await execa('ip', ['-n', lab.host, 'addr', 'add', '198.19.0.1/24', 'dev', 'uplink']);
    await execa('ip', ['-n', lab.host, 'link', 'set', 'uplink', 'up']);
    await execa('ip', ['-n', out, 'addr', 'add', '198.19.0.2/24', 'dev', 'eth0']);
    await execa('ip', ['-n', out, 'link', 'set', 'eth0', 'up']);
  }
  const rules = async (backend: string): Promise<string> =>
    backend === 'iptables' ? sh(lab.host, ['iptables-save', '-t', 'nat']) : sh(lab.host, ['nft', 'list', 'table', 'inet', 'cni_plugins_masquerade']);

  test.each(['iptables', 'nftables'])('%s: the outside is reachable only with ipMasq; DEL without netns removes the rules', async (backend) => {
    lab = await Lab.create(2);
    await withOutside();
    const [p1, p2] = lab.pods as [string, string];
    expect((await call('ADD', ptpConf({}, ['198.18.0.0/24']), { pod: p2 })).exitCode).toBe(0);
    expect(await ping(p2, '198.19.0.2')).toBe(false); // no route back without masquerade
    const conf = ptpConf({ ipMasq: true, ipMasqBackend: backend }, ['198.18.1.0/24']);
    (conf.name as string) = 'ptpmasq';
    expect((await call('ADD', conf, { pod: p1 })).exitCode).toBe(0);
    expect(await ping(p1, '198.19.0.2')).toBe(true);
    const before = await rules(backend);
    if (backend === 'iptables') {
      expect(before).toMatch(/-A POSTROUTING -s 198\.18\.1\.2\/32 -m comment --comment "name: \\"ptpmasq\\" id: \\"ctr-br-p-[0-9a-f]+\\"" -j CNI-[0-9a-f]{24}/);
      expect(before).toMatch(/-A CNI-[0-9a-f]{24} -d 198\.18\.1\.0\/24 -m comment .* -j ACCEPT/);
    } else {
      expect(before).toMatch(/ip saddr 198\.18\.1\.2 ip daddr != 198\.18\.1\.0\/24 masquerade comment "[0-9a-f]{16}-[0-9a-f]{16}, net: ptpmasq, if: eth0, id: ctr-br-p-/);
    }
    // The netns is gone before DEL: the reference skips its masquerade teardown here (plugins#810).
    await execa('ip', ['netns', 'del', p1]);
    expect((await call('DEL', conf, { pod: '', id: `ctr-${p1}` })).exitCode).toBe(0);
    const after = await rules(backend);
    expect(after).not.toContain('198.18.1.2');
    expect(after).not.toMatch(/CNI-[0-9a-f]{24}/);
    expect(lab.leases('ptpmasq')).toEqual([]);
  });

  test.each([
    ['single-stack', ['198.18.0.0/24'], 0],
    ['dual-stack', dual, 1],
  ] as const)('iptables, %s pod: the first ADD (no nat table yet) is one iptables-restore per family; then ADD, and DEL with the prevResult, are one per family with iptables-legacy and none with iptables-nft; no nft; DEL leaves what was there before', async (_, subnets, v6) => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = ptpConf({ ipMasq: true, ipMasqBackend: 'iptables' }, [...subnets]);
    const first = await lab.execs('ADD', conf, { plugin: 'ptp', pod: p2 }); // a bystander whose rules stay
    expect([first.v4, first.v6, first.nft, first.restores, first.result.exitCode]).toEqual([1, v6, 0, { v4: 1, v6 }, 0]);
    const before = await lab.nat();
    const add = await lab.execs('ADD', conf, { plugin: 'ptp', pod: p1 });
    // With iptables-nft the rules are written in-process too, as iptables-restore would write them.
    expect([add.v4, add.v6, add.nft, add.restores, add.result.exitCode]).toEqual(iptablesIsNft() ? [0, 0, 0, { v4: 0, v6: 0 }, 0] : [1, v6, 0, { v4: 1, v6 }, 0]);
    expect((await lab.nat()).filter((l) => l.includes(`id: \\"ctr-${p1}\\"`))).toHaveLength(3 * (1 + v6));
    const del = await lab.execs('DEL', { ...conf, prevResult: add.result.json }, { plugin: 'ptp', pod: p1 });
    // With iptables-nft the table is read and the rules deleted in-process: no process at all.
    expect([del.v4, del.v6, del.nft, del.restores, del.result.exitCode]).toEqual(iptablesIsNft() ? [0, 0, 0, { v4: 0, v6: 0 }, 0] : [1, v6, 0, { v4: 1, v6 }, 0]);
    expect(await lab.nat()).toEqual(before);
  });

  test('GC (1.1.0) releases leases and masquerade rules of attachments not in cni.dev/valid-attachments; a malformed list is code 7 and sweeps nothing', async () => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = { ...ptpConf({ ipMasq: true, ipMasqBackend: 'iptables' }, ['198.18.0.0/24']), cniVersion: '1.1.0' };
    expect((await call('ADD', conf, { pod: p1 })).exitCode).toBe(0);
    expect((await call('ADD', { ...conf, ipMasqBackend: 'nftables' }, { pod: p2 })).exitCode).toBe(0);
    const bad = await call('GC', { ...conf, 'cni.dev/valid-attachments': 'all' }, { pod: '' });
    expect([bad.json.code, bad.json.msg]).toEqual([7, 'invalid config: field "cni.dev/valid-attachments" = "all": expected a list of {containerID, ifname}']);
    expect(leases()).toEqual(['198.18.0.2', '198.18.0.3']);

    const gc = await call('GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: `ctr-${p1}`, ifname: 'eth0' }] }, { pod: '' });
    expect([gc.exitCode, gc.stdout]).toEqual([0, '']);
    expect(leases()).toEqual(['198.18.0.2']);
    expect(await rules('iptables')).toContain('198.18.0.2/32');
    expect(await rules('nftables')).not.toContain('198.18.0.3');
  });

  test('STATUS (1.1.0) succeeds when netlink and IPAM are usable, and reports IPAM\'s code 50', async () => {
    lab = await Lab.create(1);
    const conf = { ...ptpConf({}, ['198.18.0.0/30']), cniVersion: '1.1.0' };
    expect((await call('STATUS', conf, { pod: '' })).exitCode).toBe(0);
    expect((await call('ADD', conf)).exitCode).toBe(0); // the /30 has one address: now full
    const full = await call('STATUS', conf, { pod: '' });
    expect(full.json.code).toBe(50);
  });
});
