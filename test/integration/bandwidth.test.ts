// bandwidth through the built binary, chained after our bridge in a scratch host netns: tc state
// for every key, CHECK pass/tamper/fail, DEL twice and without a netns, GC, STATUS, no partial
// change on failure, and measured TCP rates in both directions.
import { execa } from 'execa';
import { BandwidthLab, ifbs, ingressFilters, measureRate, NETWORK, qdiscs } from './bandwidth-harness';
import { ifbName } from '../../plugins/meta/bandwidth/main';

jest.setTimeout(120000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

let lab: BandwidthLab;
afterEach(async () => {
  await lab?.dispose();
});

const BOTH = { ingressRate: 8_000_000, ingressBurst: 262_144, egressRate: 16_000_000, egressBurst: 131_072 };
const tcIn = (ns: string, ...args: string[]) => execa('ip', ['netns', 'exec', ns, 'tc', ...args]);

describe('bandwidth ADD: kernel state per key', () => {
  test('ingress and egress: tbf on the host veth, ingress qdisc redirecting all to the ifb (the veth\'s MTU and queue length), tbf on the ifb; the ifb in the result', async () => {
    lab = await BandwidthLab.create();
    const r = await lab.call('ADD', lab.conf(BOTH));
    expect(r.exitCode).toBe(0);
    const veth = lab.hostVeth();
    const ifb = ifbName(NETWORK, lab.id(lab.pod()));
    const prev = lab.prev.get(lab.pod());
    // The bridge's result plus the ifb (name and MAC), as the reference appends it.
    const [dev] = await ifbs(lab.host);
    expect(r.json).toEqual({ ...prev, interfaces: [...prev.interfaces, { name: ifb, mac: dev.address }] });
    expect(dev).toMatchObject({ ifname: ifb, mtu: 1500, txqlen: 1000, operstate: 'UNKNOWN', ifalias: `cni bandwidth: name "${NETWORK}" id "${lab.id(lab.pod())}"` });
    expect(dev.flags).toContain('UP');

    // rate bytes/s = bits / 8; burst bytes = bits / 8; lat = 25 ms (the reference's latency).
    expect(await qdiscs(lab.host)).toEqual([
      { kind: 'tbf', handle: '1:', dev: veth, root: true, refcnt: expect.any(Number), options: { rate: 1_000_000, burst: 32768, lat: 25000 } },
      { kind: 'ingress', handle: 'ffff:', dev: veth, parent: 'ffff:fff1', options: {} },
      { kind: 'tbf', handle: '1:', dev: ifb, root: true, refcnt: expect.any(Number), options: { rate: 2_000_000, burst: 16384, lat: 25000 } },
    ]);
    const rule = (await ingressFilters(lab.host, veth)).find((f: Json) => f.options?.actions);
    expect(rule).toMatchObject({ protocol: 'all', pref: 1, kind: 'u32', options: { flowid: '1:1', match: { value: '0', mask: '0' } } });
    expect(rule.options.actions).toEqual([expect.objectContaining({ kind: 'mirred', mirred_action: 'redirect', direction: 'egress', to_dev: ifb })]);
    expect((await lab.call('CHECK', lab.conf(BOTH))).exitCode).toBe(0);
  });

  test('ingress only: a tbf on the host veth and no ifb; egress only: no tbf on the host veth', async () => {
    lab = await BandwidthLab.create(2);
    const [p1, p2] = [lab.pod(0), lab.pod(1)];
    const ing = await lab.call('ADD', lab.conf({ ingressRate: 800_000, ingressBurst: 80_000 }, p1), { pod: p1 });
    expect(ing.exitCode).toBe(0);
    expect(ing.json.interfaces).toEqual(lab.prev.get(p1).interfaces);
    const eg = await lab.call('ADD', lab.conf({ egressRate: 800_000, egressBurst: 80_000 }, p2), { pod: p2 });
    expect(eg.exitCode).toBe(0);
    const ifb = ifbName(NETWORK, lab.id(p2));
    expect((await qdiscs(lab.host)).map((q: Json) => [q.kind, q.dev, q.options.rate])).toEqual([
      ['tbf', lab.hostVeth(p1), 100_000],
      ['ingress', lab.hostVeth(p2), undefined],
      ['tbf', ifb, 100_000],
    ]);
    expect((await ifbs(lab.host)).map((l: Json) => l.ifname)).toEqual([ifb]);
  });

  test('the "bandwidth" capability (runtimeConfig.bandwidth) when the config has no limits of its own', async () => {
    lab = await BandwidthLab.create();
    const r = await lab.call('ADD', lab.conf({ runtimeConfig: { bandwidth: { ingressRate: 1_600_000, ingressBurst: 160_000 } } }));
    expect(r.exitCode).toBe(0);
    expect((await qdiscs(lab.host)).map((q: Json) => [q.kind, q.options])).toEqual([['tbf', { rate: 200_000, burst: 20_000, lat: 25000 }]]);
  });

  test('no limits: prevResult passes through unchanged and nothing is installed', async () => {
    lab = await BandwidthLab.create();
    const r = await lab.call('ADD', lab.conf({ runtimeConfig: { bandwidth: {} } }));
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual(lab.prev.get(lab.pod()));
    expect(await qdiscs(lab.host)).toEqual([]);
  });
});

describe('bandwidth faults', () => {
  test('not chained, a bad limit, an interface that is not a veth: clear errors and nothing installed', async () => {
    lab = await BandwidthLab.create();
    const { prevResult: _, ...unchained } = lab.conf(BOTH);
    const r1 = await lab.call('ADD', unchained);
    expect(r1.exitCode).not.toBe(0);
    expect(r1.json.msg).toBe('must be called as chained plugin');
    const r2 = await lab.call('ADD', lab.conf({ egressRate: 1000 }));
    expect(r2.json).toMatchObject({ code: 7, msg: 'invalid config: field "egressBurst" = missing: if rate is set, burst must also be set (egressRate is 1000)' });
    await execa('ip', ['-n', lab.pod(), 'link', 'add', 'br0', 'type', 'bridge']);
    const r3 = await lab.call('ADD', lab.conf(BOTH), { ifname: 'br0' });
    expect(r3.json.msg).toBe('container interface br0 has no veth peer: interface "br0" was not a veth interface');
    expect(await qdiscs(lab.host)).toEqual([]);
    expect(await ifbs(lab.host)).toEqual([]);
    expect(r1.stderr + r2.stderr + r3.stderr).not.toMatch(/at .*\.ts|TypeError/);
  });

  test('a failure after the ingress tbf (the ifb name taken by another device) takes everything back', async () => {
    lab = await BandwidthLab.create();
    await execa('ip', ['-n', lab.host, 'link', 'add', ifbName(NETWORK, lab.id(lab.pod())), 'type', 'bridge']);
    const r = await lab.call('ADD', lab.conf(BOTH));
    expect(r.exitCode).not.toBe(0);
    expect(r.json.msg).toMatch(/^adding link: creating ifb bwp[0-9a-f]{12}: file exists/);
    expect(await qdiscs(lab.host)).toEqual([]);
    // DEL leaves a device of that name alone when it is not an ifb
    expect((await lab.call('DEL', lab.conf(BOTH))).exitCode).toBe(0);
    expect((await execa('ip', ['-n', lab.host, 'link', 'show', ifbName(NETWORK, lab.id(lab.pod()))], { reject: false })).exitCode).toBe(0);
  });

  test('a failure after the ifb (an ingress qdisc already on the host veth) removes the ifb and the tbf, and keeps what was there', async () => {
    lab = await BandwidthLab.create();
    const veth = lab.hostVeth();
    await tcIn(lab.host, 'qdisc', 'add', 'dev', veth, 'handle', 'ffff:', 'ingress');
    const r = await lab.call('ADD', lab.conf(BOTH));
    expect(r.exitCode).not.toBe(0);
    expect(r.json.msg).toMatch(new RegExp(`^adding ingress qdisc on ${veth}: file exists`));
    expect(await ifbs(lab.host)).toEqual([]);
    expect((await qdiscs(lab.host)).map((q: Json) => [q.kind, q.dev])).toEqual([['ingress', veth]]);
  });
});

describe('bandwidth CHECK, DEL, GC, STATUS', () => {
  test('CHECK passes, fails on a changed rate, limit or buffer, a missing ifb or ingress qdisc', async () => {
    lab = await BandwidthLab.create();
    expect((await lab.call('ADD', lab.conf(BOTH))).exitCode).toBe(0);
    const veth = lab.hostVeth();
    const ifb = ifbName(NETWORK, lab.id(lab.pod()));
    expect((await lab.call('CHECK', lab.conf(BOTH))).exitCode).toBe(0);

    await tcIn(lab.host, 'qdisc', 'change', 'dev', veth, 'root', 'handle', '1:', 'tbf', 'rate', '9000000bit', 'burst', '32768b', 'latency', '25ms');
    expect((await lab.call('CHECK', lab.conf(BOTH))).json.msg).toBe(`Rate doesn't match on ${veth}: 1125000 bytes/s, want 1000000`);
    await tcIn(lab.host, 'qdisc', 'change', 'dev', veth, 'root', 'handle', '1:', 'tbf', 'rate', '8000000bit', 'burst', '32768b', 'latency', '30ms');
    expect((await lab.call('CHECK', lab.conf(BOTH))).json.msg).toBe(`Limit doesn't match on ${veth}: 62768 bytes, want 57768`);
    await tcIn(lab.host, 'qdisc', 'change', 'dev', veth, 'root', 'handle', '1:', 'tbf', 'rate', '8000000bit', 'burst', '30000b', 'limit', '57768');
    expect((await lab.call('CHECK', lab.conf(BOTH))).json.msg).toMatch(new RegExp(`^Buffer doesn't match on ${veth}: \\d+ ticks, want 512000$`));
    await tcIn(lab.host, 'qdisc', 'change', 'dev', veth, 'root', 'handle', '1:', 'tbf', 'rate', '8000000bit', 'burst', '32768b', 'latency', '25ms');
    expect((await lab.call('CHECK', lab.conf(BOTH))).exitCode).toBe(0);

    await tcIn(lab.host, 'filter', 'del', 'dev', veth, 'parent', 'ffff:');
    expect((await lab.call('CHECK', lab.conf(BOTH))).json.msg).toBe(`no filter on ${veth} redirects its traffic to ${ifb}`);
    await tcIn(lab.host, 'qdisc', 'del', 'dev', veth, 'ingress');
    expect((await lab.call('CHECK', lab.conf(BOTH))).json.msg).toBe(`Failed to find ingress qdisc on ${veth}`);
    await execa('ip', ['-n', lab.host, 'link', 'del', ifb]);
    expect((await lab.call('CHECK', lab.conf(BOTH))).json.msg).toBe(`get ifb device: getting link ${ifb}: no such device`);
    await tcIn(lab.host, 'qdisc', 'del', 'dev', veth, 'root');
    expect((await lab.call('CHECK', lab.conf({ ingressRate: 8_000_000, ingressBurst: 262_144 }))).json.msg).toBe(`Failed to find qdisc: no tbf root qdisc on ${veth}`);
  });

  test('DEL removes the ifb; twice, and without a netns, succeeds; its config\'s limits are not judged', async () => {
    lab = await BandwidthLab.create();
    expect((await lab.call('ADD', lab.conf(BOTH))).exitCode).toBe(0);
    // DEL reads only the name: a limit ADD would refuse (here a rate without its burst) does not stop it
    const del = await lab.call('DEL', lab.conf({ ...BOTH, egressBurst: 0 }), { netns: '' });
    expect(del.exitCode).toBe(0);
    expect(await ifbs(lab.host)).toEqual([]);
    expect((await lab.call('DEL', lab.conf(BOTH))).exitCode).toBe(0);
    expect((await lab.call('DEL', lab.conf(BOTH), { netns: '' })).exitCode).toBe(0);
  });

  test('GC removes only this network\'s ifbs of attachments not in cni.dev/valid-attachments', async () => {
    lab = await BandwidthLab.create(2);
    const [p1, p2] = [lab.pod(0), lab.pod(1)];
    for (const p of [p1, p2]) expect((await lab.call('ADD', lab.conf(BOTH, p), { pod: p })).exitCode).toBe(0);
    // an ifb of another network (same alias form, another name): never this network's to remove
    const other = ifbName('othernet', 'ctr9');
    await execa('ip', ['-n', lab.host, 'link', 'add', other, 'type', 'ifb']);
    await execa('ip', ['-n', lab.host, 'link', 'set', other, 'alias', 'cni bandwidth: name "othernet" id "ctr9"']);
    const gcConf = { ...lab.conf(BOTH), cniVersion: '1.1.0', prevResult: undefined };
    const bad = await lab.call('GC', { ...gcConf, 'cni.dev/valid-attachments': 'all' }, { netns: '' });
    expect(bad.json).toMatchObject({ code: 7 });
    expect((await ifbs(lab.host)).length).toBe(3);
    const gc = await lab.call('GC', { ...gcConf, 'cni.dev/valid-attachments': [{ containerID: lab.id(p1), ifname: 'eth0' }] }, { netns: '' });
    expect(gc.exitCode).toBe(0);
    expect((await ifbs(lab.host)).map((l: Json) => l.ifname).sort()).toEqual([ifbName(NETWORK, lab.id(p1)), other].sort());
  });

  test('STATUS (1.1.0) succeeds where netlink works', async () => {
    lab = await BandwidthLab.create();
    expect((await lab.call('STATUS', { cniVersion: '1.1.0', name: NETWORK, type: 'bandwidth' }, { netns: '' })).exitCode).toBe(0);
  });
});

describe('bandwidth traffic', () => {
  test('a 2 MB TCP transfer to the pod runs at 8 Mbit/s and one from it at 16 Mbit/s (±20 %)', async () => {
    lab = await BandwidthLab.create(2);
    const [p1, p2] = [lab.pod(0), lab.pod(1)];
    const addr = (p: string): string => lab.prev.get(p).ips[0].address.split('/')[0];
    // Unshaped, the same transfer is far faster: the measurement sees the limit, not its own ceiling.
    expect(await measureRate(p1, p2, addr(p2), 2_000_000)).toBeGreaterThan(16e6 * 3);
    expect((await lab.call('ADD', lab.conf(BOTH, p1), { pod: p1 })).exitCode).toBe(0);
    const toPod = await measureRate(p2, p1, addr(p1), 2_000_000);
    const fromPod = await measureRate(p1, p2, addr(p2), 2_000_000);
    expect(toPod).toBeGreaterThan(8e6 * 0.8);
    expect(toPod).toBeLessThan(8e6 * 1.2);
    expect(fromPod).toBeGreaterThan(16e6 * 0.8);
    expect(fromPod).toBeLessThan(16e6 * 1.2);
  });
});
