// static IPAM and ptp: config parsing and validation (the reference's LoadIPAMConfig / NetConf),
// and static's ADD/CHECK/DEL run in-process (they touch no kernel state).
import { errorOf } from '../support/errors';
import { loadStaticConf } from '../../ipam/static/config';
import { staticIPAM } from '../../ipam/static/main';
import { checkAddRules, loadPtpConf } from '../../plugins/main/ptp/config';
import { ptpAddresses } from '../../plugins/main/ptp/routes';
import { runPlugin } from '../../shared/cni/skel';
import { formatCIDR, formatIP } from '../../shared/ip';


const net = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ name: 'n', cniVersion: '1.0.0', ipam: { type: 'static', ...ipam }, ...extra });
const addrs = (c: ReturnType<typeof loadStaticConf>) => c.addresses.map((a) => [formatCIDR(a.address), a.gateway ? formatIP(a.gateway) : undefined]);

describe('static: loadStaticConf', () => {
  test('addresses keep their host bits and gateways; routes, dns as given', () => {
    const c = loadStaticConf(
      net({
        addresses: [{ address: '198.18.0.5/24', gateway: '198.18.0.1' }, { address: 'fd00::5/64' }],
        routes: [{ dst: '0.0.0.0/0' }, { dst: '198.19.0.0/16', gw: '198.18.0.9' }],
        dns: { nameservers: ['198.18.0.53'], domain: 'x.test', search: ['x.test'], options: ['ndots:2'] },
      }),
      '',
    );
    expect(addrs(c)).toEqual([['198.18.0.5/24', '198.18.0.1'], ['fd00::5/64', undefined]]);
    expect(c.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '198.19.0.0/16', gw: '198.18.0.9' }]);
    expect(c.dns).toEqual({ nameservers: ['198.18.0.53'], domain: 'x.test', search: ['x.test'], options: ['ndots:2'] });
  });

  test('no addresses is allowed (the caller decides), an empty dns is none', () => {
    const c = loadStaticConf(net({ dns: {} }), '');
    expect(c.addresses).toEqual([]);
    expect(c.dns).toBeUndefined();
  });

  test('CNI_ARGS IP= adds addresses; GATEWAY= goes to the IP= addresses containing it (not to config ones, as the reference)', () => {
    const c = loadStaticConf(net({ addresses: [{ address: '198.18.1.5/24' }] }), 'IP=198.18.0.5/24, 198.18.2.5/24;GATEWAY=198.18.0.1,198.18.1.1');
    expect(addrs(c)).toEqual([['198.18.1.5/24', undefined], ['198.18.0.5/24', '198.18.0.1'], ['198.18.2.5/24', undefined]]);
  });

  test('args.cni.ips replaces config and CNI_ARGS addresses; runtimeConfig.ips replaces all (no gateways)', () => {
    const base = net({ addresses: [{ address: '198.18.1.5/24', gateway: '198.18.1.1' }] });
    expect(addrs(loadStaticConf({ ...base, args: { cni: { ips: ['198.18.3.5/24'] } } }, 'IP=198.18.0.5/24'))).toEqual([['198.18.3.5/24', undefined]]);
    expect(addrs(loadStaticConf({ ...base, args: { cni: { ips: ['198.18.3.5/24'] } }, runtimeConfig: { ips: ['fd00::7/64'] } }, ''))).toEqual([['fd00::7/64', undefined]]);
    // Empty lists replace nothing.
    expect(addrs(loadStaticConf({ ...base, args: { cni: { ips: [] } }, runtimeConfig: { ips: [] } }, ''))).toEqual([['198.18.1.5/24', '198.18.1.1']]);
  });

  test('bad addresses are code 7 naming the field and value', () => {
    const e1 = errorOf(() => loadStaticConf(net({ addresses: [{ address: '198.18.0.5' }] }), ''));
    expect([e1.code, e1.message]).toEqual([7, 'invalid config: field "ipam.addresses[0].address" = "198.18.0.5": expected an address in CIDR notation, e.g. 198.18.0.5/24']);
    const e2 = errorOf(() => loadStaticConf(net({ addresses: [{ address: '198.18.0.5/24', gateway: 'x' }] }), ''));
    expect([e2.code, e2.message]).toEqual([7, 'invalid config: field "ipam.addresses[0].gateway" = "x": not a valid IP address']);
    const e3 = errorOf(() => loadStaticConf(net({ addresses: [{}] }), ''));
    expect(e3.message).toBe('invalid config: field "ipam.addresses[0].address" = missing: expected an address in CIDR notation, e.g. 198.18.0.5/24');
    const e4 = errorOf(() => loadStaticConf({ ...net({}), runtimeConfig: { ips: ['nope'] } }, ''));
    expect(e4.message).toContain('field "runtimeConfig.ips[0]" = "nope"');
    const e5 = errorOf(() => loadStaticConf({ ...net({}), args: { cni: { ips: ['1.2.3.4/99'] } } }, ''));
    expect(e5.message).toContain('field "args.cni.ips[0]" = "1.2.3.4/99"');
    const e6 = errorOf(() => loadStaticConf(net({ routes: [{ dst: '198.19.0.0' }] }), ''));
    expect([e6.code, e6.message]).toEqual([7, 'invalid config: field "ipam.routes[0].dst" = "198.19.0.0": invalid CIDR address: 198.19.0.0']);
    const e7 = errorOf(() => loadStaticConf(net({ addresses: 'x' }), ''));
    expect([e7.code, e7.message]).toEqual([7, 'invalid config: field "ipam.addresses" = "x": expected array']);
  });

  test('missing ipam is code 7; bad CNI_ARGS are code 4 naming the key and value', () => {
    const e = errorOf(() => loadStaticConf({ name: 'n', cniVersion: '1.0.0' }, ''));
    expect([e.code, e.message]).toEqual([7, 'invalid config: field "ipam" = missing: IPAM config missing \'ipam\' key']);
    const ip = errorOf(() => loadStaticConf(net({}), 'IP=198.18.0.5'));
    expect([ip.code, ip.message]).toEqual([4, 'CNI_ARGS IP: "198.18.0.5": expected an address in CIDR notation, e.g. 198.18.0.5/24']);
    const gw = errorOf(() => loadStaticConf(net({}), 'IP=198.18.0.5/24;GATEWAY=gw'));
    expect([gw.code, gw.message]).toEqual([4, 'CNI_ARGS GATEWAY: "gw": not an IP address']);
    expect(errorOf(() => loadStaticConf(net({}), 'FOO=1')).code).toBe(4);
    expect(loadStaticConf(net({}), 'FOO=1;IgnoreUnknown=1').addresses).toEqual([]);
  });

  test('more than one address per family needs cniVersion >= 0.3.0', () => {
    const two = { addresses: [{ address: '198.18.0.5/24' }, { address: '198.18.1.5/24' }] };
    const e = errorOf(() => loadStaticConf({ ...net(two), cniVersion: '0.2.0' }, ''));
    expect([e.code, e.message]).toEqual([7, 'invalid config: field "cniVersion" = "0.2.0": CNI version 0.2.0 does not support more than 1 address per family']);
    expect(loadStaticConf({ ...net(two), cniVersion: '0.3.0' }, '').addresses).toHaveLength(2);
    expect(loadStaticConf({ ...net({ addresses: [{ address: '198.18.0.5/24' }, { address: 'fd00::5/64' }] }), cniVersion: '0.2.0' }, '').addresses).toHaveLength(2);
  });
});

describe('static: verbs in-process', () => {
  const env = (cmd: string, args = '') => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: 'c1', CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0', CNI_PATH: '/x', CNI_ARGS: args });
  const run = (cmd: string, conf: unknown, args = '') => runPlugin(staticIPAM, env(cmd, args), () => Buffer.from(JSON.stringify(conf)));
  const conf = net({ addresses: [{ address: '198.18.0.5/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });

  test('ADD prints the addresses, routes and dns in the config version', async () => {
    const r = await run('ADD', conf);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: '1.0.0', ips: [{ address: '198.18.0.5/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
    const old = await run('ADD', { ...conf, cniVersion: '0.2.0' });
    expect(JSON.parse(old.stdout)).toEqual({ cniVersion: '0.2.0', ip4: { ip: '198.18.0.5/24', gateway: '198.18.0.1', routes: [{ dst: '0.0.0.0/0' }] }, dns: {} });
  });

  test('CHECK passes on its own result, fails on a missing address or another gateway, needs prevResult', async () => {
    const prev = JSON.parse((await run('ADD', conf)).stdout);
    expect((await run('CHECK', { ...conf, prevResult: prev })).exitCode).toBe(0);
    const other = await run('CHECK', { ...conf, prevResult: { ...prev, ips: [{ address: '198.18.0.5/24', gateway: '198.18.0.254' }] } });
    expect(JSON.parse(other.stdout).msg).toBe('static: Failed to match addr 198.18.0.5 on interface eth0');
    const missing = await run('CHECK', { ...conf, prevResult: { ...prev, ips: [{ address: '198.18.0.6/24', gateway: '198.18.0.1' }] } });
    expect(JSON.parse(missing.stdout).msg).toBe('static: Failed to match addr 198.18.0.5 on interface eth0');
    expect(JSON.parse((await run('CHECK', conf)).stdout).msg).toBe('Required prevResult missing');
  });

  test('DEL succeeds without a netns and even on a config ADD refuses (nothing was allocated)', async () => {
    const r = await runPlugin(staticIPAM, { ...env('DEL'), CNI_NETNS: undefined }, () => Buffer.from(JSON.stringify(net({ addresses: [{ address: 'bad' }] }))));
    expect([r.exitCode, r.stdout]).toEqual([0, '']);
  });
});

describe('ptp: loadPtpConf', () => {
  const load = (c: Record<string, unknown>) => loadPtpConf({ conf: { name: 'n', cniVersion: '1.0.0', ...c }, cniVersion: '1.0.0' });

  test('defaults: no masquerade, autodetected backend, kernel MTU, no DNS override', () => {
    expect(load({ ipam: { type: 'host-local' } })).toMatchObject({ ipMasq: false, ipMasqBackend: undefined, mtu: 0, ipamType: 'host-local', dns: undefined });
  });

  test('keys as given; null is the zero value as in Go', () => {
    expect(load({ ipMasq: true, ipMasqBackend: 'nftables', mtu: 1400, ipam: { type: 'static' } })).toMatchObject({ ipMasq: true, ipMasqBackend: 'nftables', mtu: 1400 });
    expect(load({ ipMasq: null, mtu: null, ipMasqBackend: null })).toMatchObject({ ipMasq: false, mtu: 0, ipMasqBackend: undefined });
  });

  test('dns replaces IPAM\'s only when some field is set (the reference\'s dnsConfSet)', () => {
    expect(load({ dns: {} }).dns).toBeUndefined();
    expect(load({ dns: { nameservers: [] } }).dns).toEqual({ nameservers: [] });
    expect(load({ dns: { domain: 'x.test' } }).dns).toEqual({ domain: 'x.test' });
  });

  test('bad values are code 7 naming the field and value', () => {
    const mtu = errorOf(() => load({ mtu: 70000 }));
    expect([mtu.code, mtu.message]).toEqual([7, 'invalid config: field "mtu" = 70000: must be between 0 (kernel default) and 65535']);
    const be = errorOf(() => load({ ipMasqBackend: 'ipfw' }));
    expect([be.code, be.message]).toEqual([7, 'unknown ipmasq backend "ipfw"']);
    const ty = errorOf(() => load({ ipMasq: 'yes' }));
    expect([ty.code, ty.message]).toEqual([7, 'invalid config: field "ipMasq" = "yes": expected boolean']);
  });

  test('ADD needs an IPAM type; DEL does not (so it still cleans up)', () => {
    const e = errorOf(() => checkAddRules(load({})));
    expect(e.code).toBe(7);
    expect(e.message).toMatch(/^invalid config: field "ipam.type" = missing: ptp needs an IPAM plugin/);
    expect(load({}).ipamType).toBe('');
  });

  test('every IPAM address needs a gateway of its family (code 7 naming the entry)', () => {
    expect(ptpAddresses([{ address: '198.18.0.2/24', gateway: '198.18.0.1' }]).map((a) => formatIP(a.gateway))).toEqual(['198.18.0.1']);
    const none = errorOf(() => ptpAddresses([{ address: '198.18.0.2/24', gateway: '198.18.0.1' }, { address: 'fd00::2/64' }]));
    expect(none.code).toBe(7);
    expect(none.message).toMatch(/^IPAM result ips\[1\] \{"address":"fd00::2\/64"\}: ptp routes each address through its gateway/);
    expect(errorOf(() => ptpAddresses([{ address: '198.18.0.2/24', gateway: 'fd00::1' }])).code).toBe(7);
  });
});
