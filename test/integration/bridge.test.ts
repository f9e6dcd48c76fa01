// bridge plugin, L3: two pods on one bridge in a scratch host netns; CHECK, DEL, masquerade.
import { execa } from 'execa';
import { ALL_VERSIONS } from '../support/cni';
import { iptablesIsNft, type ExecCount } from '../support/exec-count';
import { ipj, Lab, ping, sh } from './bridge-harness';

jest.setTimeout(120000);

let lab: Lab;
afterEach(async () => {
  await lab?.dispose();
});

const dual = ['198.18.0.0/24', 'fd00:18::/64'];

describe('bridge L3 (IPv4 + IPv6, isDefaultGateway)', () => {
  test('two pods reach each other and the gateway; CHECK passes; DEL cleans up; DEL is idempotent', async () => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = lab.conf({ isDefaultGateway: true }, dual);
    const r1 = await lab.call('ADD', conf, { pod: p1 });
    expect(r1.exitCode).toBe(0);
    const r2 = await lab.call('ADD', conf, { pod: p2 });
    expect(r2.exitCode).toBe(0);

    // Result shape: [bridge, host veth, container] with the container at index 2.
    const res = r1.json;
    expect(res.cniVersion).toBe('1.0.0');
    expect(res.interfaces).toHaveLength(3);
    expect(res.interfaces[0].name).toBe('cni0');
    expect(res.interfaces[1].name).toMatch(/^veth[0-9a-f]{8}$/);
    expect(res.interfaces[2]).toEqual({ name: 'eth0', mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/), sandbox: `/var/run/netns/${p1}` });
    expect(res.ips).toEqual([
      { interface: 2, address: '198.18.0.2/24', gateway: '198.18.0.1' },
      { interface: 2, address: 'fd00:18::2/64', gateway: 'fd00:18::1' },
    ]);
    expect(res.routes).toEqual([
      { dst: '0.0.0.0/0', gw: '198.18.0.1' },
      { dst: '::/0', gw: 'fd00:18::1' },
    ]);
    const ip2 = r2.json.ips.map((x: { address: string }) => x.address.split('/')[0]);

    // Kernel state: bridge with gateways, forwarding, veth on the bridge, pod addresses and routes.
    const br = await ipj(lab.host, '-d', 'addr', 'show', 'cni0');
    const brAddrs = br[0].addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`);
    expect(brAddrs).toEqual(expect.arrayContaining(['198.18.0.1/24', 'fd00:18::1/64']));
    expect(br[0].address).toBe(r2.json.interfaces[0].mac); // the MAC stays pinned across pods
    expect((await sh(lab.host, ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim()).toBe('1');
    expect((await sh(lab.host, ['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).trim()).toBe('1');
    const hv = await ipj(lab.host, '-d', 'link', 'show', res.interfaces[1].name);
    expect(hv[0].master).toBe('cni0');
    expect(hv[0].operstate).toBe('UP');
    const routes = await ipj(p1, 'route', 'show', 'default');
    expect(routes[0]).toMatchObject({ dst: 'default', gateway: '198.18.0.1', dev: 'eth0' });
    const routes6 = await ipj(p1, '-6', 'route', 'show', 'default');
    expect(routes6[0]).toMatchObject({ dst: 'default', gateway: 'fd00:18::1', dev: 'eth0' });
    expect((await sh(p1, ['sysctl', '-n', 'net.ipv6.conf.eth0.accept_dad'])).trim()).toBe('0');
    expect((await sh(p1, ['sysctl', '-n', 'net.ipv4.conf.eth0.arp_notify'])).trim()).toBe('1');

    expect(await ping(p1, ip2[0])).toBe(true);
    expect(await ping(p1, ip2[1])).toBe(true);
    expect(await ping(p1, '198.18.0.1')).toBe(true);
    expect(await ping(p2, 'fd00:18::1')).toBe(true);

    // CHECK with the ADD result as prevResult.
    const ok = await lab.call('CHECK', { ...conf, prevResult: res }, { pod: p1 });
    expect(ok.stdout).toBe('');
    expect(ok.exitCode).toBe(0);

    expect(lab.leases().sort()).toEqual(['198.18.0.2', '198.18.0.3', 'fd00:18::2', 'fd00:18::3']);
    const del = await lab.call('DEL', { ...conf, prevResult: res }, { pod: p1 });
    expect(del.exitCode).toBe(0);
    expect(del.stdout).toBe('');
    expect(await ipj(p1, 'link', 'show', 'eth0').catch(() => [])).toEqual([]);
    expect((await ipj(lab.host, 'link', 'show')).map((l: { ifname: string }) => l.ifname)).not.toContain(res.interfaces[1].name);
    expect(lab.leases().sort()).toEqual(['198.18.0.3', 'fd00:18::3']);
    // Repeated DEL and DEL without a netns succeed; the bridge stays.
    expect((await lab.call('DEL', conf, { pod: p1 })).exitCode).toBe(0);
    expect((await lab.call('DEL', conf, { pod: '', id: `ctr-${p1}` })).exitCode).toBe(0);
    expect((await ipj(lab.host, 'link', 'show', 'cni0'))[0].ifname).toBe('cni0');
    expect(await ping(p2, '198.18.0.1')).toBe(true);
  });

  test('CHECK fails after an address is removed or the host veth is gone', async () => {
    lab = await Lab.create(1);
    const [p1] = lab.pods as [string];
    const conf = lab.conf({ isGateway: true }, dual);
    const add = await lab.call('ADD', conf);
    expect(add.exitCode).toBe(0);
    const prev = { ...conf, prevResult: add.json };
    expect((await lab.call('CHECK', prev)).exitCode).toBe(0);

    await execa('ip', ['-n', p1, 'addr', 'del', '198.18.0.2/24', 'dev', 'eth0']);
    const c1 = await lab.call('CHECK', prev);
    expect(c1.exitCode).not.toBe(0);
    expect(c1.json.msg).toContain('Failed to match addr 198.18.0.2/24 on interface eth0');

    await execa('ip', ['-n', p1, 'addr', 'add', '198.18.0.2/24', 'dev', 'eth0']);
    expect((await lab.call('CHECK', prev)).exitCode).toBe(0);
    // Detach the host veth from the bridge: the pair is no longer "ours".
    await execa('ip', ['-n', lab.host, 'link', 'set', add.json.interfaces[1].name, 'nomaster']);
    const c2 = await lab.call('CHECK', prev);
    expect(c2.json.msg).toBe('CNI veth created for bridge cni0 was not found');
    // Missing prevResult.
    const c3 = await lab.call('CHECK', conf);
    expect(c3.json.msg).toBe('Required prevResult missing');
  });

  test('an ADD that fails after IPAM releases the address and removes the veth', async () => {
    lab = await Lab.create(1);
    await execa('ip', ['-n', lab.host, 'link', 'add', 'cni0', 'type', 'bridge']);
    await execa('ip', ['-n', lab.host, 'addr', 'add', '198.18.9.1/24', 'dev', 'cni0']);
    const r = await lab.call('ADD', lab.conf({ isGateway: true }));
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toBe('failed to set bridge addr: "cni0" already has an IP address different from 198.18.0.1/24');
    expect(lab.leases()).toEqual([]);
    const links = (await ipj(lab.host, 'link', 'show')).map((l: { ifname: string }) => l.ifname);
    expect(links.filter((n: string) => n.startsWith('veth'))).toEqual([]);
    expect(await ipj(lab.pods[0]!, 'link', 'show', 'eth0').catch(() => [])).toEqual([]);
    // forceAddress replaces the stale address instead.
    const f = await lab.call('ADD', lab.conf({ isGateway: true, forceAddress: true }));
    expect(f.exitCode).toBe(0);
    const addrs = (await ipj(lab.host, '-4', 'addr', 'show', 'cni0'))[0].addr_info.map((a: { local: string }) => a.local);
    expect(addrs).toEqual(['198.18.0.1']);
  });

  test('CNI_IFNAME already in the pod is an error and leaves nothing behind', async () => {
    lab = await Lab.create(1);
    expect((await lab.call('ADD', lab.conf(), { id: 'first' })).exitCode).toBe(0);
    const r = await lab.call('ADD', lab.conf(), { id: 'second' });
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toMatch(/^container veth name \("eth0"\) peer provided \("veth[0-9a-f]{8}"\) already exists$/);
    expect(lab.leases()).toEqual(['198.18.0.2']);
    expect((await ipj(lab.host, 'link', 'show')).filter((l: { ifname: string }) => l.ifname.startsWith('veth'))).toHaveLength(1);
  });

  test('an existing non-bridge link named like the bridge is an error', async () => {
    lab = await Lab.create(1);
    await execa('ip', ['-n', lab.host, 'link', 'add', 'cni0', 'type', 'veth', 'peer', 'name', 'cni0p']);
    const r = await lab.call('ADD', lab.conf());
    expect(r.exitCode).not.toBe(0);
    expect(r.json.msg).toBe('failed to create bridge "cni0": "cni0" already exists but is not a bridge');
    expect(lab.leases()).toEqual([]);
  });

  test.each(ALL_VERSIONS)('result printed in cniVersion %s', async (v) => {
    lab = await Lab.create(1);
    const r = await lab.call('ADD', { ...lab.conf({ isGateway: true }, dual), cniVersion: v });
    expect(r.exitCode).toBe(0);
    expect(r.json.cniVersion).toBe(v);
    if (v === '0.1.0' || v === '0.2.0') {
      expect(r.json).toEqual({
        cniVersion: v,
        ip4: { ip: '198.18.0.2/24', gateway: '198.18.0.1' },
        ip6: { ip: 'fd00:18::2/64', gateway: 'fd00:18::1' },
        dns: {},
      });
    } else {
      const withVersion = v !== '1.0.0' && v !== '1.1.0';
      expect(r.json.ips).toEqual([
        { ...(withVersion ? { version: '4' } : {}), interface: 2, address: '198.18.0.2/24', gateway: '198.18.0.1' },
        { ...(withVersion ? { version: '6' } : {}), interface: 2, address: 'fd00:18::2/64', gateway: 'fd00:18::1' },
      ]);
      expect(r.json.interfaces.map((i: { name: string }) => i.name).slice(0, 3)).toEqual(['cni0', expect.stringMatching(/^veth/), 'eth0']);
      if (withVersion) expect(r.json.dns).toEqual({});
      else expect(r.json.dns).toBeUndefined();
    }
    expect((await lab.call('DEL', { ...lab.conf({ isGateway: true }, dual), cniVersion: v })).exitCode).toBe(0);
    expect(lab.leases()).toEqual([]);
  });
});

describe('bridge MAC and STP bridge id', () => {
  const ZERO_MAC = '00:00:00:00:00:00';
  /** The bridge's MAC, and the MAC inside its STP bridge id ("8000.2:a:3b:0:0:1" -> 02:0a:3b:00:00:01). */
  async function bridgeMacs(host: string): Promise<{ mac: string; idMac: string }> {
    const br = (await ipj(host, '-d', 'link', 'show', 'cni0'))[0];
    const idMac = String(br.linkinfo.info_data.bridge_id).split('.')[1]!.split(':').map((b) => b.padStart(2, '0')).join(':');
    return { mac: br.address, idMac };
  }

  test('a bridge we create carries its MAC in the STP bridge id and keeps it after the last port left', async () => {
    lab = await Lab.create(1);
    const a = await lab.call('ADD', lab.conf());
    expect(a.exitCode).toBe(0);
    const mac = a.json.interfaces[0].mac;
    expect(await bridgeMacs(lab.host)).toEqual({ mac, idMac: mac });
    expect((await lab.call('DEL', lab.conf())).exitCode).toBe(0);
    expect(await bridgeMacs(lab.host)).toEqual({ mac, idMac: mac });
  });

  test('an adopted empty bridge whose bridge id lacks its MAC gets a new pinned MAC the id carries', async () => {
    lab = await Lab.create(1);
    // `ip link add type bridge` gives a random MAC and bridge id 8000.0:0:0:0:0:0 until a port joins.
    await execa('ip', ['-n', lab.host, 'link', 'add', 'name', 'cni0', 'type', 'bridge']);
    const made = await bridgeMacs(lab.host);
    expect(made.idMac).toBe(ZERO_MAC);
    const a = await lab.call('ADD', lab.conf());
    expect(a.exitCode).toBe(0);
    const mac = a.json.interfaces[0].mac;
    expect(mac).not.toBe(made.mac);
    expect(await bridgeMacs(lab.host)).toEqual({ mac, idMac: mac });
    expect((await lab.call('DEL', lab.conf())).exitCode).toBe(0);
    expect(await bridgeMacs(lab.host)).toEqual({ mac, idMac: mac });
  });

  test('an adopted bridge with a port keeps its MAC, bridge id or not (neighbours know that MAC)', async () => {
    lab = await Lab.create(1);
    // What pinning a MAC to itself leaves (earlier cnikit): MAC pinned, bridge id still zero, a port.
    await execa('ip', ['-n', lab.host, 'link', 'add', 'name', 'cni0', 'type', 'bridge']);
    const { mac } = await bridgeMacs(lab.host);
    await execa('ip', ['-n', lab.host, 'link', 'set', 'cni0', 'address', mac]);
    await execa('ip', ['-n', lab.host, 'link', 'add', 'name', 'port0', 'type', 'veth', 'peer', 'name', 'port1']);
    await execa('ip', ['-n', lab.host, 'link', 'set', 'port0', 'master', 'cni0']);
    expect(await bridgeMacs(lab.host)).toEqual({ mac, idMac: ZERO_MAC });
    const a = await lab.call('ADD', lab.conf());
    expect(a.exitCode).toBe(0);
    expect(a.json.interfaces[0].mac).toBe(mac);
    expect((await bridgeMacs(lab.host)).mac).toBe(mac);
  });
});

describe('ipMasq', () => {
  /** An "outside" netns behind an uplink of the host, with no route back to the pod subnet. */
  async function withOutside(): Promise<string> {
    const out = await lab.addNetns('br-o');
    await execa('ip', ['-n', lab.host, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    await execa('ip', ['-n', lab.host, 'addr', 'add', '198.19.0.1/24', 'dev', 'uplink']);
    await execa('ip', ['-n', lab.host, 'link', 'set', 'uplink', 'up']);
    await execa('ip', ['-n', out, 'addr', 'add', '198.19.0.2/24', 'dev', 'eth0']);
    await execa('ip', ['-n', out, 'link', 'set', 'eth0', 'up']);
    return out;
  }

  /** Counts echo requests arriving in the outside netns by source (iptables counters there): from
   * the pod subnet, and from the host's uplink address (what masquerade rewrites to). */
  async function echoSources(out: string): Promise<() => Promise<{ pods: number; host: number }>> {
    const from = { pods: '198.18.0.0/24', host: '198.19.0.1/32' };
    for (const src of Object.values(from)) await execa('ip', ['netns', 'exec', out, 'iptables', '-A', 'INPUT', '-s', src, '-p', 'icmp', '--icmp-type', 'echo-request']);
    return async () => {
      const saved = await sh(out, ['iptables-save', '-c', '-t', 'filter']);
      const count = (src: string): number => Number(new RegExp(`^\\[(\\d+):\\d+\\] -A INPUT -s ${src.replace(/\./g, '\\.')} -p icmp`, 'm').exec(saved)?.[1] ?? NaN);
      return { pods: count(from.pods), host: count(from.host) };
    };
  }

  test("without ipMasq the outside sees the pod's own address and answers only with a route back; with ipMasq it sees the host's and needs none", async () => {
    lab = await Lab.create(1);
    const out = await withOutside();
    const pod = lab.pods[0]!;
    const conf = (extra: Record<string, unknown> = {}): Record<string, unknown> => lab.conf({ isDefaultGateway: true, ...extra });
    expect((await lab.call('ADD', conf())).exitCode).toBe(0);
    const seen = await echoSources(out);

    // The path works: with a route back to the pod subnet the pod reaches the outside through the
    // host's routing, and the outside sees the pod's own address.
    await execa('ip', ['-n', out, 'route', 'add', '198.18.0.0/24', 'via', '198.19.0.1']);
    expect(await ping(pod, '198.19.0.2')).toBe(true);
    expect(await seen()).toEqual({ pods: 1, host: 0 });

    // Without the route back the request still arrives, but the reply has nowhere to go.
    await execa('ip', ['-n', out, 'route', 'del', '198.18.0.0/24']);
    expect(await ping(pod, '198.19.0.2')).toBe(false);
    expect(await seen()).toEqual({ pods: 2, host: 0 });

    // Only masquerade changes: the same path, still no route back, and the outside sees the host.
    expect((await lab.call('DEL', conf())).exitCode).toBe(0);
    expect((await lab.call('ADD', conf({ ipMasq: true, ipMasqBackend: 'iptables' }))).exitCode).toBe(0);
    expect(await ping(pod, '198.19.0.2')).toBe(true);
    expect(await seen()).toEqual({ pods: 2, host: 1 });
  });

  test.each(['iptables', 'nftables'] as const)('%s backend: outside reachable; DEL (even without netns) removes the rules', async (backend) => {
    lab = await Lab.create(2);
    await withOutside();
    const conf = lab.conf({ isDefaultGateway: true, ipMasq: true, ipMasqBackend: backend });
    const [p1, p2] = lab.pods as [string, string];
    const a1 = await lab.call('ADD', conf, { pod: p1 });
    expect(a1.exitCode).toBe(0);
    expect((await lab.call('ADD', conf, { pod: p2 })).exitCode).toBe(0);
    expect(await ping(p1, '198.19.0.2')).toBe(true);
    expect(await ping(p2, '198.19.0.2')).toBe(true);

    const rules = async (): Promise<string> =>
      backend === 'iptables' ? sh(lab.host, ['iptables-save', '-t', 'nat']) : sh(lab.host, ['nft', 'list', 'table', 'inet', 'cni_plugins_masquerade']);
    const before = await rules();
    if (backend === 'iptables') {
      expect(before).toMatch(/-A POSTROUTING -s 198\.18\.0\.2\/32 -m comment --comment "name: \\"brnet\\" id: \\"ctr-br-p-[0-9a-f]+\\"" -j CNI-[0-9a-f]{24}/);
      expect(before).toMatch(/-A CNI-[0-9a-f]{24} ! -d 224\.0\.0\.0\/4 -m comment .* -j MASQUERADE/);
    } else {
      expect(before).toMatch(/ip saddr 198\.18\.0\.2 ip daddr != 198\.18\.0\.0\/24 masquerade comment "[0-9a-f]{16}-[0-9a-f]{16}, net: brnet, if: eth0, id: ctr-br-p-/);
    }
    // DEL of pod 1 with its netns, DEL of pod 2 without one (the reference leaks here: plugins#810).
    expect((await lab.call('DEL', { ...conf, prevResult: a1.json }, { pod: p1 })).exitCode).toBe(0);
    expect((await lab.call('DEL', conf, { pod: '', id: `ctr-${p2}` })).exitCode).toBe(0);
    const after = await rules();
    expect(after).not.toContain('198.18.0.2');
    expect(after).not.toContain('198.18.0.3');
    expect(after).not.toMatch(/CNI-[0-9a-f]{24}/);
    expect(lab.leases()).toEqual([]);
  });

  test('DEL removes the rules even after the pod address was changed (rules found by container ID)', async () => {
    lab = await Lab.create(1);
    const conf = lab.conf({ isGateway: true, ipMasq: true, ipMasqBackend: 'iptables' });
    expect((await lab.call('ADD', conf)).exitCode).toBe(0);
    await execa('ip', ['-n', lab.pods[0]!, 'addr', 'flush', 'dev', 'eth0']);
    await execa('ip', ['-n', lab.pods[0]!, 'addr', 'add', '198.18.0.77/24', 'dev', 'eth0']);
    expect((await lab.call('DEL', conf)).exitCode).toBe(0);
    expect(await sh(lab.host, ['iptables-save', '-t', 'nat'])).not.toMatch(/CNI-[0-9a-f]{24}/);
  });

  test('GC removes masquerade rules of attachments not in cni.dev/valid-attachments', async () => {
    lab = await Lab.create(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = { ...lab.conf({ isGateway: true, ipMasq: true, ipMasqBackend: 'nftables' }), cniVersion: '1.1.0' };
    expect((await lab.call('ADD', conf, { pod: p1 })).exitCode).toBe(0);
    expect((await lab.call('ADD', { ...conf, ipMasqBackend: 'iptables' }, { pod: p2 })).exitCode).toBe(0);
    const gc = await lab.call('GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: `ctr-${p1}`, ifname: 'eth0' }] }, { pod: '' });
    expect(gc.exitCode).toBe(0);
    const nft = await sh(lab.host, ['nft', 'list', 'table', 'inet', 'cni_plugins_masquerade']);
    expect(nft).toContain('198.18.0.2');
    expect(await sh(lab.host, ['iptables-save', '-t', 'nat'])).not.toMatch(/CNI-[0-9a-f]{24}/);
    // host-local got the GC too: only pod 1's lease is left.
    expect(lab.leases()).toEqual(['198.18.0.2']);
  });

  test('GC with a cni.dev/valid-attachments that is not a list is code 7 and sweeps nothing', async () => {
    lab = await Lab.create(1);
    const conf = { ...lab.conf({ isGateway: true, ipMasq: true, ipMasqBackend: 'iptables' }), cniVersion: '1.1.0' };
    expect((await lab.call('ADD', conf)).exitCode).toBe(0);
    const before = await sh(lab.host, ['iptables-save', '-t', 'nat']);
    expect(before).toMatch(/CNI-[0-9a-f]{24}/);
    const gc = await lab.call('GC', { ...conf, 'cni.dev/valid-attachments': 'all' }, { pod: '' });
    expect(gc.exitCode).not.toBe(0);
    expect(gc.json.code).toBe(7);
    expect(gc.json.msg).toContain('cni.dev/valid-attachments');
    expect((await sh(lab.host, ['iptables-save', '-t', 'nat'])).match(/CNI-[0-9a-f]{24}/g)).toEqual(before.match(/CNI-[0-9a-f]{24}/g));
    expect(lab.leases()).toEqual(['198.18.0.2']);
  });
});

describe('ipMasq iptables: one netfilter exec per family per verb, a read-then-write fallback when the kernel differs; with iptables-nft ADD and DEL exec nothing once the nat table exists (read, written and deleted in-process)', () => {
  const nftIpt = iptablesIsNft();
  const NONE = { v4: 0, v6: 0, nft: 0, restores: { v4: 0, v6: 0 }, exit: 0 };
  const masq = (subnets: string[]): Record<string, unknown> => lab.conf({ isGateway: true, ipMasq: true, ipMasqBackend: 'iptables' }, subnets);
  const counts = (c: ExecCount) => ({ v4: c.v4, v6: c.v6, nft: c.nft, restores: c.restores, exit: c.result.exitCode });
  /** ADDs a bystander pod whose rules every step must leave alone; returns the nat tables with it. */
  async function withBystander(conf: Record<string, unknown>): Promise<string[]> {
    const other = await lab.addPod();
    expect((await lab.call('ADD', conf, { pod: other })).exitCode).toBe(0);
    return lab.nat();
  }
  const ours = (nat: string[], pod: string): string[] => nat.filter((l) => l.includes(`id: \\"ctr-${pod}\\"`));

  test.each([
    ['single-stack', ['198.18.0.0/24'], 0],
    ['dual-stack', dual, 1],
  ] as const)('%s pod: ADD is one iptables-restore per family, DEL with the prevResult one per family (iptables-nft: none, once the bystander\'s ADD made the table, and DEL one nfnetlink batch for both families), no nft; DEL leaves what was there before', async (_, subnets, v6) => {
    lab = await Lab.create(1);
    const pod = lab.pods[0]!;
    const conf = masq([...subnets]);
    const before = await withBystander(conf);
    const add = await lab.execs('ADD', conf);
    expect(counts(add)).toEqual(nftIpt ? NONE : { v4: 1, v6, nft: 0, restores: { v4: 1, v6 }, exit: 0 });
    const mine = ours(await lab.nat(), pod);
    // Per family, the lines carrying the pod's comment: ACCEPT, MASQUERADE, jump (the differential tests compare their text with the reference's).
    expect(mine.filter((l) => l.includes('-A POSTROUTING -s 198.18.0.'))).toHaveLength(1);
    expect(mine.filter((l) => l.includes('-A POSTROUTING -s fd00:18::'))).toHaveLength(v6);
    expect(mine).toHaveLength(3 * (1 + v6));

    const del = await lab.execs('DEL', { ...conf, prevResult: add.result.json });
    expect(counts(del)).toEqual(nftIpt ? NONE : { v4: 1, v6, nft: 0, restores: { v4: 1, v6 }, exit: 0 });
    if (nftIpt) expect(del.batches).toBe(1); // one nf_tables commit for the pod's rules of both families
    expect(await lab.nat()).toEqual(before);
  });

  test('a second ADD for the same container (another ifname) finds the chain: the write-only ADD is rejected, the fallback adds only the new jump', async () => {
    lab = await Lab.create(1);
    const pod = lab.pods[0]!;
    const conf = masq(dual);
    await withBystander(conf);
    const a1 = await lab.execs('ADD', conf);
    expect(a1.result.exitCode).toBe(0);
    const once = await lab.nat();
    const a2 = await lab.execs('ADD', conf, { ifname: 'eth1' });
    // Per family: the rejected write, the listing, the write of what is missing (iptables-nft: all in-process).
    expect(counts(a2)).toEqual(nftIpt ? NONE : { v4: 3, v6: 3, nft: 0, restores: { v4: 2, v6: 2 }, exit: 0 });
    const [ip4, ip6] = a2.result.json.ips.map((i: { address: string }) => i.address.split('/')[0]);
    const twice = await lab.nat();
    const newJumps = twice.filter((l) => l.includes(`-s ${ip4}/32 `) || l.includes(`-s ${ip6}/128 `));
    expect(newJumps).toHaveLength(2);
    // Exactly the first ADD's rules plus the new jumps: eth0's rules are kept, nothing is doubled.
    expect(twice.filter((l) => !newJumps.includes(l))).toEqual(once);
    expect(ours(twice, pod)).toHaveLength(ours(once, pod).length + 2);
  });

  test('DEL of one of two attachments: the chain is still referenced, the write-only DEL is rejected, the fallback removes the chain and every jump to it', async () => {
    lab = await Lab.create(1);
    const conf = masq(dual);
    const before = await withBystander(conf);
    expect((await lab.call('ADD', conf)).exitCode).toBe(0);
    const a2 = await lab.call('ADD', conf, { ifname: 'eth1' });
    expect(a2.exitCode).toBe(0);
    const del = await lab.execs('DEL', { ...conf, prevResult: a2.json }, { ifname: 'eth1' });
    expect(counts(del)).toEqual(nftIpt ? NONE : { v4: 3, v6: 3, nft: 0, restores: { v4: 2, v6: 2 }, exit: 0 });
    expect(await lab.nat()).toEqual(before);
  });

  test('DEL after the rules were removed by hand (IPv4: chain and jump, IPv6: the jump): the fallback lists and removes what is left', async () => {
    lab = await Lab.create(1);
    const pod = lab.pods[0]!;
    const conf = masq(dual);
    const before = await withBystander(conf);
    const add = await lab.call('ADD', conf);
    expect(add.exitCode).toBe(0);
    const mine = ours(await lab.nat(), pod);
    const jump = (t: string): string => mine.find((l) => l.startsWith(`${t}: -A POSTROUTING`))!.slice(t.length + 2);
    const chain = / -j (CNI-[0-9a-f]{24})$/.exec(jump('iptables-save'))![1]!;
    const hand = (t: string, rule: string) => execa('ip', ['netns', 'exec', lab.host, 'sh', '-c', `${t} -t nat ${rule}`]);
    await hand('iptables', jump('iptables-save').replace(/^-A/, '-D'));
    await hand('iptables', `-F ${chain}`);
    await hand('iptables', `-X ${chain}`);
    await hand('ip6tables', jump('ip6tables-save').replace(/^-A/, '-D'));

    const del = await lab.execs('DEL', { ...conf, prevResult: add.json });
    // IPv4: rejected restore + listing (nothing to remove); IPv6: rejected restore + listing + removal.
    expect(counts(del)).toEqual(nftIpt ? NONE : { v4: 2, v6: 3, nft: 0, restores: { v4: 1, v6: 2 }, exit: 0 });
    expect(await lab.nat()).toEqual(before);
  });

  test('DEL whose prevResult names another address than ADD installed: the fallback finds the rules by container ID', async () => {
    lab = await Lab.create(1);
    const conf = masq(dual);
    const before = await withBystander(conf);
    const add = await lab.call('ADD', conf);
    expect(add.exitCode).toBe(0);
    const changed = JSON.parse(JSON.stringify(add.json));
    changed.ips[0].address = '198.18.0.77/24';
    const del = await lab.execs('DEL', { ...conf, prevResult: changed });
    // IPv4 falls back (rejected restore, listing, removal); IPv6 still matches and takes the write-only path.
    expect(counts(del)).toEqual(nftIpt ? NONE : { v4: 3, v6: 1, nft: 0, restores: { v4: 2, v6: 1 }, exit: 0 });
    expect(await lab.nat()).toEqual(before);

    // DEL again (runtimes repeat it): rejected restore and a listing per family, nothing written, success.
    const again = await lab.execs('DEL', { ...conf, prevResult: add.json });
    expect(counts(again)).toEqual(nftIpt ? NONE : { v4: 2, v6: 2, nft: 0, restores: { v4: 1, v6: 1 }, exit: 0 });
    expect(await lab.nat()).toEqual(before);
  });

  test('with iptables-nft the DEL reads only POSTROUTING\'s jumps to the pod\'s chain: rules elsewhere, in POSTROUTING too, that the in-process reader cannot decode (kube-proxy\'s -m statistic) cost no iptables-save, and stay', async () => {
    if (!nftIpt) return; // iptables-legacy: one listing per family, whatever is in the table
    lab = await Lab.create(1);
    const conf = masq(dual);
    const foreign = '-A KUBE-SVC-TEST -m statistic --mode random --probability 0.50000000000 -j RETURN';
    for (const t of ['iptables', 'ip6tables']) {
      await execa('ip', ['netns', 'exec', lab.host, t, '-t', 'nat', '-N', 'KUBE-SVC-TEST']);
      await execa('ip', ['netns', 'exec', lab.host, 'sh', '-c', `${t} -t nat ${foreign}`]);
      await execa('ip', ['netns', 'exec', lab.host, 'sh', '-c', `${t} -t nat ${foreign.replace('KUBE-SVC-TEST', 'POSTROUTING')}`]);
    }
    const before = await lab.nat();
    const add = await lab.call('ADD', conf);
    expect(add.exitCode).toBe(0);
    expect((await lab.nat()).length).toBeGreaterThan(before.length);
    const del = await lab.execs('DEL', { ...conf, prevResult: add.json });
    expect(counts(del)).toEqual(NONE);
    expect(await lab.nat()).toEqual(before);
  });

  test('a pod set up with the nftables backend is still removed by a DEL whose config says iptables (the table exists: read and its rules deleted in-process, no nft process)', async () => {
    lab = await Lab.create(1);
    const conf = masq(['198.18.0.0/24']);
    const add = await lab.call('ADD', { ...conf, ipMasqBackend: 'nftables' });
    expect(add.exitCode).toBe(0);
    expect(await sh(lab.host, ['nft', 'list', 'table', 'inet', 'cni_plugins_masquerade'])).toContain('ip saddr 198.18.0.2');
    const del = await lab.execs('DEL', { ...conf, prevResult: add.json });
    expect(del.result.exitCode).toBe(0);
    expect(del.nft).toBe(0);
    expect(await sh(lab.host, ['nft', 'list', 'table', 'inet', 'cni_plugins_masquerade'])).not.toContain('198.18.0.2');
  });
});
