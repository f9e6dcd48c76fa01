// bridge: config parsing and validation (the reference's loadNetConf / collectVlanTrunk), gateway maths
// (calcGateways), VLAN ranges.
import { errorOf } from '../support/errors';
import { collectVlanTrunk, loadBridgeConf, checkAddRules } from '../../plugins/bridge/config';
import { calcGateways } from '../../plugins/bridge/gateway';
import { vidRanges } from '../../plugins/bridge/vlan';
import { CniError } from '../../shared/cni/errors';
import type { Result } from '../../shared/cni/types';
import { formatCIDR } from '../../shared/ip';

const load = (conf: Record<string, unknown>, args = '') => loadBridgeConf({ conf: { name: 'n', cniVersion: '1.0.0', ...conf }, args, cniVersion: '1.0.0' });


describe('loadBridgeConf', () => {
  test('defaults: bridge cni0, everything off, L2 when ipam has no type', () => {
    const c = load({});
    expect(c).toMatchObject({ bridge: 'cni0', isGateway: false, isDefaultGateway: false, mtu: 0, vlan: 0, vlans: [], ipamType: '', mac: undefined, dns: undefined });
    expect(load({ ipam: {} }).ipamType).toBe('');
    expect(load({ ipam: { type: 'host-local' } }).ipamType).toBe('host-local');
  });

  test('isDefaultGateway implies isGateway (reference: n.IsGW = true)', () => {
    expect(load({ isDefaultGateway: true }).isGateway).toBe(true);
  });

  test('null is accepted like Go leaves the zero value', () => {
    expect(load({ mtu: null, isGateway: null, bridge: null }).bridge).toBe('cni0');
  });

  test('MAC precedence: CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac', () => {
    expect(load({}, 'MAC=0a:00:00:00:00:01').mac).toBe('0a:00:00:00:00:01');
    expect(load({ args: { cni: { mac: '0a:00:00:00:00:02' } } }, 'MAC=0a:00:00:00:00:01').mac).toBe('0a:00:00:00:00:02');
    expect(load({ args: { cni: { mac: '0a:00:00:00:00:02' } }, runtimeConfig: { mac: '0A-00-00-00-00-03' } }, 'MAC=0a:00:00:00:00:01').mac).toBe('0a:00:00:00:00:03');
  });

  test('CNI_ARGS: unknown keys need IgnoreUnknown (Go LoadArgs)', () => {
    expect(errorOf(() => load({}, 'FOO=1')).code).toBe(4);
    expect(load({}, 'IgnoreUnknown=1;FOO=1').mac).toBeUndefined();
  });

  test.each([
    [{ vlan: -1 }, 'invalid VLAN ID -1 (must be between 0 and 4094)'],
    [{ vlan: 4095 }, 'invalid VLAN ID 4095 (must be between 0 and 4094)'],
    [{ ipMasqBackend: 'ebtables' }, 'unknown ipmasq backend "ebtables"'],
    [{ isGateway: 'true' }, 'invalid config: field "isGateway" = "true": expected boolean'],
    [{ portIsolation: 'true' }, 'invalid config: field "portIsolation" = "true": expected boolean'], // the doc's example would fail the reference too
    [{ mtu: 1.5 }, 'field "mtu" = 1.5'],
    [{ bridge: 'x'.repeat(16) }, 'field "bridge"'],
    [{ bridge: '' }, 'field "bridge" = ""'],
    // the CNI_IFNAME rule (shared/cni/ifname): bytes, not characters, and Go's whitespace
    [{ bridge: 'éééééééé' }, 'field "bridge" = "éééééééé": interface name is too long (at most 15 bytes)'],
    [{ bridge: 'br\u0085x' }, 'interface name contains / or : or whitespace characters'],
    [{ runtimeConfig: { mac: 'zz' } }, 'field "runtimeConfig.mac" = "zz"'],
  ])('%j -> code 7 %s', (conf, msg) => {
    const e = errorOf(() => load(conf));
    expect(e).toBeInstanceOf(CniError);
    expect(e.code).toBe(7);
    expect(e.message).toContain(msg);
  });

  test('dns: any field set overrides IPAM DNS; an empty object does not', () => {
    expect(load({ dns: {} }).dns).toBeUndefined();
    expect(load({ dns: { nameservers: [] } }).dns).toEqual({ nameservers: [] }); // prints as {} (empty lists are omitted)
    expect(load({ dns: { domain: 'a.test' } }).dns).toEqual({ domain: 'a.test' });
  });

  test('ADD-only rules: IPAM with disableContainerInterface, hairpin with promisc', () => {
    expect(errorOf(() => checkAddRules(load({ ipam: { type: 'host-local' }, disableContainerInterface: true }))).message).toBe(
      'cannot use IPAM when DisableContainerInterface flag is set',
    );
    expect(errorOf(() => checkAddRules(load({ hairpinMode: true, promiscMode: true }))).message).toBe('cannot set hairpin mode and promiscuous mode at the same time');
    expect(() => checkAddRules(load({ disableContainerInterface: true }))).not.toThrow();
  });
});

describe('collectVlanTrunk (reference table)', () => {
  test.each([
    [[{ id: 5 }], [5]],
    [[{ minID: 10, maxID: 12 }, { id: 11 }, { id: 3 }], [3, 10, 11, 12]],
    [[{ minID: 1, maxID: 1 }], [1]],
    [[], []],
  ])('%j -> %j', (trunk, vids) => {
    expect(collectVlanTrunk(trunk)).toEqual(vids);
  });
  test.each([
    [[{ minID: 0, maxID: 5 }], 'incorrect trunk minID parameter'],
    [[{ minID: 5, maxID: 4095 }], 'incorrect trunk maxID parameter'],
    [[{ minID: 6, maxID: 5 }], 'minID is greater than maxID in trunk parameter'],
    [[{ maxID: 5 }], 'minID and maxID should be configured simultaneously, minID is missing'],
    [[{ minID: 5 }], 'minID and maxID should be configured simultaneously, maxID is missing'],
    [[{ id: 0 }], 'incorrect trunk id parameter'],
    [[{ id: 4095 }], 'incorrect trunk id parameter'],
  ])('%j -> %s', (trunk, msg) => {
    expect(errorOf(() => collectVlanTrunk(trunk)).message).toBe(msg);
  });
  test('vlanTrunk: [] still counts as given (vlan_filtering) with no VIDs', () => {
    expect(load({ vlanTrunk: [] })).toMatchObject({ vlanTrunk: true, vlans: [] });
  });
});

describe('calcGateways', () => {
  const ipam = (): Result => ({
    cniVersion: '1.1.0',
    ips: [{ address: '198.18.0.5/24' }, { address: 'fd00:18::5/64', gateway: 'fd00:18::fe' }],
  });

  test('every IP points at the container interface (index 2)', () => {
    const r = ipam();
    calcGateways(r, { isGateway: false, isDefaultGateway: false });
    expect(r.ips!.map((i) => i.interface)).toEqual([2, 2]);
    expect(r.ips![0]!.gateway).toBeUndefined();
    expect(r.routes).toBeUndefined();
  });

  test('isGateway fills a missing gateway with network+1 and lists bridge addresses with the IP prefix', () => {
    const r = ipam();
    const g = calcGateways(r, { isGateway: true, isDefaultGateway: false });
    expect(r.ips![0]!.gateway).toBe('198.18.0.1');
    expect(r.ips![1]!.gateway).toBe('fd00:18::fe'); // IPAM's gateway is kept
    expect(g[4].gateways.map(formatCIDR)).toEqual(['198.18.0.1/24']);
    expect(g[6].gateways.map(formatCIDR)).toEqual(['fd00:18::fe/64']);
  });

  test('isDefaultGateway adds one default route per family', () => {
    const r = ipam();
    r.ips!.push({ address: '198.18.1.5/24' });
    calcGateways(r, { isGateway: true, isDefaultGateway: true });
    expect(r.routes).toEqual([
      { dst: '0.0.0.0/0', gw: '198.18.0.1' },
      { dst: '::/0', gw: 'fd00:18::fe' },
    ]);
  });

  test('an IPAM default route with a gateway suppresses ours; one without a gateway does not', () => {
    const r = ipam();
    r.routes = [{ dst: '0.0.0.0/0', gw: '198.18.0.254' }, { dst: '::/0' }];
    calcGateways(r, { isGateway: true, isDefaultGateway: true });
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0', gw: '198.18.0.254' }, { dst: '::/0' }, { dst: '::/0', gw: 'fd00:18::fe' }]);
  });
});

test('vidRanges compresses consecutive VIDs', () => {
  expect(vidRanges([1, 2, 3, 5, 7, 8])).toEqual([
    [1, 3],
    [5, 5],
    [7, 8],
  ]);
  expect(vidRanges([])).toEqual([]);
});
