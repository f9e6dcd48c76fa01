// Differential: our ptp, loopback and static against the Go reference (/usr/lib/cni, 1.1.1: CNI up to
// 1.0.0) on the same configs in twin namespaces. Results (MACs, veth and netns names normalised),
// the pod's addresses and routes, the host veth's addresses and routes and the nat table must be
// the same; a pod set up by one and torn down by the other leaves nothing behind.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { REFERENCE_DIR } from '../support/cni';
import { ipj, Lab, type CallOpts } from './bridge-harness';

jest.setTimeout(120000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const ref = (p: string): string => join(REFERENCE_DIR, p);
const maybe = ['ptp', 'loopback', 'static', 'host-local'].every((p) => existsSync(ref(p))) ? describe : describe.skip;

/** Replaces MACs, random veth names and netns names by placeholders; drops an empty dns (libcni 1.1 prints "dns":{}). */
function normalise(v: Json): Json {
  if (v && typeof v === 'object' && v.dns && Object.keys(v.dns).length === 0) v = { ...v, dns: undefined };
  const names = new Map<string, string>();
  const s = JSON.stringify(v)
    .replace(/"([0-9a-f]{2}:){5}[0-9a-f]{2}"/g, (m) => (m === '"00:00:00:00:00:00"' ? m : '"<mac>"'))
    .replace(/veth[0-9a-f]{8}/g, (m) => {
      if (!names.has(m)) names.set(m, `<veth${names.size}>`);
      return names.get(m)!;
    })
    .replace(/br-p-[0-9a-f]{8}/g, '<pod>');
  return JSON.parse(s);
}

const noLinkLocal = (r: Json): boolean => !String(r.dst).startsWith('fe80');

/** The pod's eth0 (mtu, flags, global addresses) and its routes, as ip -j shows them. */
async function podState(pod: string): Promise<Json> {
  const l = (await ipj(pod, 'addr', 'show', 'eth0'))[0];
  const addrs = l.addr_info
    .filter((a: Json) => a.scope !== 'link')
    .map((a: Json) => ({ family: a.family, local: a.local, prefixlen: a.prefixlen, scope: a.scope, broadcast: a.broadcast }));
  const routes = [...(await ipj(pod, '-4', 'route', 'show')), ...(await ipj(pod, '-6', 'route', 'show')).filter(noLinkLocal)];
  return { mtu: l.mtu, flags: l.flags, operstate: l.operstate, addrs, routes };
}

/**
 * The host veth: mtu, state, global addresses and the routes through it. Not compared: txqlen
 * (the Debian 1.1.1 build creates veths with 0, newer references and we keep the kernel's 1000) and
 * the IPv6 gateway's DAD state (ours is added without DAD, the reference's is tentative for ~2 s).
 */
async function hostState(host: string): Promise<Json> {
  const veths = (await ipj(host, '-d', 'addr', 'show', 'type', 'veth')).map((l: Json) => ({
    mtu: l.mtu,
    operstate: l.operstate,
    master: l.master,
    addrs: l.addr_info.filter((a: Json) => a.scope !== 'link').map((a: Json) => `${a.local}/${a.prefixlen}`),
  }));
  const routes = [...(await ipj(host, '-4', 'route', 'show')), ...(await ipj(host, '-6', 'route', 'show')).filter(noLinkLocal)];
  return normalise({ veths, routes });
}

const nat = async (host: string): Promise<string> =>
  (await execa('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'])).stdout
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');

const links = async (ns: string): Promise<string[]> => (await ipj(ns, 'link', 'show')).map((l: Json) => l.ifname);

const dual = ['198.18.0.0/24', 'fd00:18::/64'];
type Case = [string, (lab: Lab) => Record<string, unknown>];
const hostLocal = (lab: Lab, subnets: string[], routes?: unknown) => ({ type: 'host-local', dataDir: lab.dataDir, ranges: subnets.map((s) => [{ subnet: s }]), ...(routes ? { routes } : {}) });
const PTP_CASES: Case[] = [
  ['dual-stack with default routes', (lab) => ({ ipam: hostLocal(lab, dual, [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]) })],
  ['IPv4 with mtu and an IPAM route with gw', (lab) => ({ mtu: 1400, ipam: hostLocal(lab, ['198.18.0.0/24'], [{ dst: '198.20.0.0/16', gw: '198.18.0.1' }]) })],
  ['IPv6 only', (lab) => ({ ipam: hostLocal(lab, ['fd00:18::/64']) })],
  ['ipMasq (iptables) dual-stack', (lab) => ({ ipMasq: true, ipam: hostLocal(lab, dual) })],
  ['dns override', (lab) => ({ dns: { nameservers: ['198.18.0.53'], domain: 'x.test', search: ['x.test'], options: ['ndots:2'] }, ipam: hostLocal(lab, ['198.18.0.0/24']) })],
  ['static IPAM with gateway, routes and dns', () => ({ ipam: { type: 'static', addresses: [{ address: '198.18.7.9/24', gateway: '198.18.7.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['198.18.7.53'] } } })],
];
const VERSIONS = ['0.3.1', '0.4.0', '1.0.0'];

const ptpConf = (lab: Lab, c: Case, v: string): Json => ({ cniVersion: v, name: 'ptpnet', type: 'ptp', ...c[1](lab) });

maybe('differential against the reference ptp, loopback and static', () => {
  let ours: Lab;
  let theirs: Lab;
  afterEach(async () => {
    await ours?.dispose();
    await theirs?.dispose();
  });
  // Both sides find host-local and static in the reference directory: only the plugin under test differs.
  const oursCall = (lab: Lab, plugin: string) => (cmd: string, conf: unknown, o: CallOpts = {}) => lab.call(cmd, conf, { id: 'twin', cniPath: REFERENCE_DIR, plugin, ...o });
  const theirsCall = (lab: Lab, plugin: string) => (cmd: string, conf: unknown, o: CallOpts = {}) => lab.call(cmd, conf, { id: 'twin', cniPath: REFERENCE_DIR, binary: ref(plugin), ...o });

  for (const c of PTP_CASES) {
    test.each(VERSIONS)(`ptp ${c[0]} (%s): same result, pod and host state, nat; CHECK and DEL agree`, async (v) => {
      ours = await Lab.create(1);
      theirs = await Lab.create(1);
      const a = oursCall(ours, 'ptp');
      const b = theirsCall(theirs, 'ptp');
      const ra = await a('ADD', ptpConf(ours, c, v));
      const rb = await b('ADD', ptpConf(theirs, c, v));
      expect(rb.exitCode).toBe(0);
      expect(ra.exitCode).toBe(0);
      expect(normalise(ra.json)).toEqual(normalise(rb.json));
      expect(await podState(ours.pods[0]!)).toEqual(await podState(theirs.pods[0]!));
      expect(await hostState(ours.host)).toEqual(await hostState(theirs.host));
      expect(await nat(ours.host)).toBe(await nat(theirs.host));
      if (v !== '0.3.1') {
        const ca = await a('CHECK', { ...ptpConf(ours, c, v), prevResult: ra.json });
        const cb = await b('CHECK', { ...ptpConf(theirs, c, v), prevResult: rb.json });
        expect([ca.exitCode, ca.stdout]).toEqual([cb.exitCode, cb.stdout]);
      }
      const da = await a('DEL', ptpConf(ours, c, v));
      const db = await b('DEL', ptpConf(theirs, c, v));
      expect([da.exitCode, da.stdout]).toEqual([0, '']);
      expect([db.exitCode, db.stdout]).toEqual([0, '']);
      expect(ours.leases('ptpnet')).toEqual(theirs.leases('ptpnet'));
      expect(await hostState(ours.host)).toEqual(await hostState(theirs.host));
      expect(await nat(ours.host)).toBe(await nat(theirs.host));
    });
  }

  test.each([
    ['ours', 'theirs'],
    ['theirs', 'ours'],
  ])('a pod set up by %s ptp and torn down by %s leaves no link, route, lease or masquerade rule', async (first, second) => {
    ours = await Lab.create(1);
    const lab = ours;
    const conf = { cniVersion: '1.0.0', name: 'ptpnet', type: 'ptp', ipMasq: true, ipMasqBackend: 'iptables', ipam: hostLocal(lab, dual, [{ dst: '0.0.0.0/0' }]) };
    const calls = { ours: oursCall(lab, 'ptp'), theirs: theirsCall(lab, 'ptp') } as const;
    const baseNat = await nat(lab.host);
    const add = await calls[first as 'ours' | 'theirs']('ADD', conf);
    expect(add.exitCode).toBe(0);
    expect(await nat(lab.host)).toMatch(/CNI-[0-9a-f]{24}/);
    const del = await calls[second as 'ours' | 'theirs']('DEL', { ...conf, prevResult: add.json });
    expect([del.exitCode, del.stdout]).toEqual([0, '']);
    expect(await links(lab.host)).toEqual(['lo']);
    expect(await links(lab.pods[0]!)).toEqual(['lo']);
    expect(lab.leases('ptpnet')).toEqual([]);
    expect(await nat(lab.host)).toBe(baseNat);
    expect((await ipj(lab.host, '-4', 'route', 'show')).concat(await ipj(lab.host, '-6', 'route', 'show'))).toEqual([]);
  });

  test.each(['0.2.0', '0.4.0', '1.0.0'])('loopback (%s): same result, same lo after ADD and after DEL', async (v) => {
    ours = await Lab.create(1);
    theirs = await Lab.create(1);
    const conf = { cniVersion: v, name: 'lo', type: 'loopback' };
    const a = oursCall(ours, 'loopback');
    const b = theirsCall(theirs, 'loopback');
    const lo = async (lab: Lab): Promise<Json> => {
      const l = (await ipj(lab.pods[0]!, 'addr', 'show', 'lo'))[0];
      return { flags: l.flags, operstate: l.operstate, addrs: l.addr_info.map((x: Json) => `${x.local}/${x.prefixlen}`) };
    };
    for (const lab of [ours, theirs]) await execa('ip', ['-n', lab.pods[0]!, 'link', 'set', 'lo', 'down']);
    const ra = await a('ADD', conf);
    const rb = await b('ADD', conf);
    expect(rb.exitCode).toBe(0);
    // Reference quirk: it stamps the config's version on a 1.0.0-shaped result instead of converting
    // it, so 0.4.0 has no ips[].version and 0.2.0 has no ip4/ip6 at all. Ours is in the version's shape.
    if (v === '1.0.0') expect(normalise(ra.json)).toEqual(normalise(rb.json));
    if (v === '0.4.0') {
      expect(normalise(ra.json)).toEqual({ ...normalise(rb.json), ips: rb.json.ips.map((ip: Json, i: number) => ({ ...ip, version: i ? '6' : '4' })) });
    }
    if (v === '0.2.0') {
      expect(ra.json).toEqual({ cniVersion: '0.2.0', ip4: { ip: '127.0.0.1/8' }, ip6: { ip: '::1/128' }, dns: {} });
      expect(rb.json).toMatchObject({ cniVersion: '0.2.0', ips: [{ address: '127.0.0.1/8' }, { address: '::1/128' }] });
    }
    expect(await lo(ours)).toEqual(await lo(theirs));
    if (v !== '0.2.0') {
      const ca = await a('CHECK', { ...conf, prevResult: ra.json });
      const cb = await b('CHECK', { ...conf, prevResult: rb.json });
      expect([ca.exitCode, ca.stdout]).toEqual([0, '']);
      expect([cb.exitCode, cb.stdout]).toEqual([0, '']);
    }
    const prev = { cniVersion: v, ips: [{ version: '4', address: '198.18.0.2/24' }] };
    if (v !== '0.2.0') expect(normalise((await a('ADD', { ...conf, prevResult: prev })).json)).toEqual(normalise((await b('ADD', { ...conf, prevResult: prev })).json));
    expect((await a('DEL', conf)).exitCode).toBe(0);
    expect((await b('DEL', conf)).exitCode).toBe(0);
    expect(await lo(ours)).toEqual(await lo(theirs));
    expect((await a('DEL', conf, { pod: '' })).exitCode).toBe((await b('DEL', conf, { pod: '' })).exitCode);
  });

  const STATIC_CASES: Array<[string, Record<string, unknown>, string?]> = [
    ['config addresses, routes, dns', { ipam: { type: 'static', addresses: [{ address: '198.18.0.5/24', gateway: '198.18.0.1' }, { address: 'fd00::5/64', gateway: 'fd00::1' }], routes: [{ dst: '0.0.0.0/0' }, { dst: '198.19.0.0/16', gw: '198.18.0.9' }], dns: { nameservers: ['198.18.0.53'], search: ['x.test'] } } }],
    ['CNI_ARGS IP= and GATEWAY= next to config addresses', { ipam: { type: 'static', addresses: [{ address: '198.18.1.5/24' }] } }, 'IP=198.18.0.5/24,fd00::5/64;GATEWAY=198.18.0.1,198.18.1.1'],
    ['args.cni.ips replaces the config', { args: { cni: { ips: ['198.18.3.5/24'] } }, ipam: { type: 'static', addresses: [{ address: '198.18.1.5/24', gateway: '198.18.1.1' }] } }],
    ['runtimeConfig.ips replaces everything', { runtimeConfig: { ips: ['198.18.4.5/24', 'fd00::4/64'] }, args: { cni: { ips: ['198.18.3.5/24'] } }, ipam: { type: 'static' } }, 'IP=198.18.0.5/24'],
    ['no addresses', { ipam: { type: 'static', routes: [{ dst: '0.0.0.0/0' }] } }],
  ];
  for (const [name, extra, args] of STATIC_CASES) {
    test.each(['0.4.0', '1.0.0'])(`static ${name} (%s): same result; CHECK on it passes for both`, async (v) => {
      ours = await Lab.create(1);
      const conf = { cniVersion: v, name: 'st', type: 'ptp', ...extra };
      const a = oursCall(ours, 'static');
      const b = theirsCall(ours, 'static');
      const ra = await a('ADD', conf, { args });
      const rb = await b('ADD', conf, { args });
      expect(rb.exitCode).toBe(0);
      expect(normalise(ra.json)).toEqual(normalise(rb.json));
      const ca = await a('CHECK', { ...conf, prevResult: ra.json }, { args });
      const cb = await b('CHECK', { ...conf, prevResult: rb.json }, { args });
      expect([ca.exitCode, cb.exitCode]).toEqual([0, 0]);
      expect((await a('DEL', conf, { args, pod: '' })).exitCode).toBe(0);
    });
  }
});
