// CNI_ARGS (shared/args.ts, Go types.LoadArgs), config errors (shared/config.ts) and versions (shared/version.ts).
import * as z from 'zod/mini';
import { loadArgs, parseCniArgs } from '../../shared/cni/args';
import { configError, fieldName, parseConfig } from '../../shared/cni/config';
import { CniError } from '../../shared/cni/errors';
import { atLeast, checkSupported, compareVersions, configVersion, CURRENT_VERSION, parseVersion, SUPPORTED_VERSIONS, versionInfo } from '../../shared/cni/version';

function thrown(f: () => unknown): CniError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError');
}

describe('CNI_ARGS', () => {
  test.each([
    ['', []],
    ['IP=198.18.0.5', [['IP', '198.18.0.5']]],
    ['IgnoreUnknown=1;IP=198.18.0.5;K8S_POD_NAME=p-1', [['IgnoreUnknown', '1'], ['IP', '198.18.0.5'], ['K8S_POD_NAME', 'p-1']]],
    ['K=', [['K', '']]], // Go accepts an empty value
    ['=V', [['', 'V']]], // ...and an empty key (an unknown arg)
    ['K=a=b', [['K', 'a=b']]], // Go rejects this (strings.Split gives 3 parts); we keep the rest as the value
  ])('parseCniArgs(%j)', (s, want) => expect(parseCniArgs(s)).toEqual(want));

  test.each(['IP', 'IP=1;', ';IP=1', 'IP=1;;MAC=x', 'IgnoreUnknown'])('a pair without "=" in %j → code 4 naming it', (s) => {
    const e = thrown(() => loadArgs(s, ['IP']));
    expect(e.code).toBe(4);
    expect(e.message).toMatch(/^CNI_ARGS: invalid pair "[^"]*"$/);
  });

  test.each([
    ['IP=198.18.0.5', { IP: '198.18.0.5' }],
    ['IP=198.18.0.5;MAC=0a:58:00:00:00:01', { IP: '198.18.0.5', MAC: '0a:58:00:00:00:01' }],
    ['IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;IP=198.18.0.5', { IP: '198.18.0.5' }],
    ['K8S_POD_NAME=p;IgnoreUnknown=true', {}], // IgnoreUnknown may come anywhere
    ['IgnoreUnknown=TRUE;X=1', {}],
    ['IgnoreUnknown=0', {}], // IgnoreUnknown itself is never "unknown"
    ['IP=', {}], // an empty value leaves the key unset
    ['IgnoreUnknown=1;K8S_POD_UID=;IP=198.18.0.5', { IP: '198.18.0.5' }],
    ['IP=198.18.0.5;IP=198.18.0.6', { IP: '198.18.0.6' }], // the last one wins, as Go's field assignment
  ])('loadArgs(%j, [IP, MAC])', (s, want) => expect(loadArgs(s, ['IP', 'MAC'])).toEqual(want));

  test.each([
    ['K8S_POD_NAME=p', '["K8S_POD_NAME=p"]'],
    ['ip=198.18.0.5', '["ip=198.18.0.5"]'], // keys are Go field names: case-sensitive
    ['IgnoreUnknown=0;X=1', '["X=1"]'],
    ['IgnoreUnknown=yes;X=1', '["X=1"]'],
    ['IP=198.18.0.5;A=1;B=2', '["A=1","B=2"]'],
  ])('unknown keys without IgnoreUnknown=1|true in %j → code 4 listing them', (s, list) => {
    const e = thrown(() => loadArgs(s, ['IP', 'MAC']));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`CNI_ARGS: unknown args ${list}`);
  });
});

describe('config errors', () => {
  const Ipam = z.object({ type: z.string(), ranges: z.optional(z.array(z.array(z.strictObject({ subnet: z.string(), gateway: z.optional(z.string()) })))) });
  const Schema = z.strictObject({
    cniVersion: z.optional(z.string()),
    name: z.string(),
    type: z.string(),
    isGateway: z.optional(z.boolean()),
    mtu: z.optional(z.number().check(z.int(), z.minimum(576), z.maximum(65535))),
    vlan: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(4094))),
    mode: z.optional(z.enum(['bridge', 'l2'])),
    ipam: z.optional(Ipam),
  });
  const base = { cniVersion: '1.0.0', name: 'n', type: 'bridge' };

  test('a valid config comes back typed', () => {
    expect(parseConfig(Schema, { ...base, mtu: 1400, ipam: { type: 'host-local', extra: 1 } })).toEqual({ ...base, mtu: 1400, ipam: { type: 'host-local' } });
  });

  test.each([
    [{ ...base, isGateway: 'yes' }, 'isGateway', '"yes"'],
    [{ ...base, mtu: 1.5 }, 'mtu', '1.5'],
    [{ ...base, mtu: 100 }, 'mtu', '100'],
    [{ ...base, mtu: 70000 }, 'mtu', '70000'],
    [{ ...base, vlan: -1 }, 'vlan', '-1'],
    [{ ...base, mode: 'l3' }, 'mode', '"l3"'],
    [{ ...base, type: undefined }, 'type', 'missing'],
    [{ ...base, ipam: 'host-local' }, 'ipam', '"host-local"'],
    [{ ...base, ipam: { type: 'host-local', ranges: [[{ subnet: 5 }]] } }, 'ipam.ranges[0][0].subnet', '5'],
    [{ ...base, ipam: { type: 'host-local', ranges: [[{}]] } }, 'ipam.ranges[0][0].subnet', 'missing'],
  ])('%j → code 7 naming %s = %s', (raw, field, shown) => {
    const e = thrown(() => parseConfig(Schema, raw));
    expect(e.code).toBe(7);
    expect(e.message.startsWith(`invalid config: field "${field}" = ${shown}: `)).toBe(true);
    expect(e.message.length).toBeGreaterThan(`invalid config: field "${field}" = ${shown}: `.length); // and why
    expect(e.message).not.toContain('\n');
  });

  test.each([
    [{ ...base, bogus: true }, 'unsupported field "bogus" = true'],
    [{ ...base, hairpin: { a: 1 } }, 'unsupported field "hairpin" = {"a":1}'],
    [{ ...base, ipam: { type: 'host-local', ranges: [[{ subnet: '198.18.0.0/24', gw: '198.18.0.1' }]] } }, 'unsupported field "ipam.ranges[0][0].gw" = "198.18.0.1"'],
  ])('an unknown field a plugin rejects → code 2 naming key and value', (raw, msg) => {
    const e = thrown(() => parseConfig(Schema, raw));
    expect(e.code).toBe(2);
    expect(e.message).toBe(msg);
  });

  test('a config that is not an object', () => {
    const e = thrown(() => parseConfig(Schema, 'x'));
    expect(e.code).toBe(7);
    expect(e.message).toMatch(/^invalid config: field "\(config\)" = "x": /);
  });

  test('configError and fieldName', () => {
    expect(fieldName(['ipam', 'ranges', 0, 1, 'subnet'])).toBe('ipam.ranges[0][1].subnet');
    expect(fieldName([])).toBe('(config)');
    const e = configError(['ipam', 'ranges', 0, 0, 'gateway'], '198.19.0.1', 'not in subnet 198.18.0.0/24');
    expect([e.code, e.message]).toEqual([7, 'invalid config: field "ipam.ranges[0][0].gateway" = "198.19.0.1": not in subnet 198.18.0.0/24']);
    expect(configError('bridge', undefined, 'required').message).toBe('invalid config: field "bridge" = missing: required');
  });
});

describe('versions', () => {
  test('supported list and current version (the reference version.All)', () => {
    expect([...SUPPORTED_VERSIONS]).toEqual(['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    expect(CURRENT_VERSION).toBe('1.1.0');
    expect(versionInfo()).toEqual({ cniVersion: '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] });
    expect(JSON.stringify(versionInfo())).toBe('{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}');
  });
  test.each([
    [{}, '0.1.0'],
    [{ cniVersion: '' }, '0.1.0'],
    [{ cniVersion: null }, '0.1.0'],
    [{ cniVersion: '0.4.0' }, '0.4.0'],
    [{ cniVersion: '9.9.9' }, '9.9.9'], // returned as is; support is checked separately
  ])('configVersion(%j) = %s', (c, v) => expect(configVersion(c)).toBe(v));
  test('configVersion rejects a non-string with code 6', () => {
    expect(thrown(() => configVersion({ cniVersion: 1 })).code).toBe(6);
  });
  test.each([
    ['0.3.1', '0.3.0', 1],
    ['0.4.0', '0.10.0', -1], // numeric, not lexical
    ['1.0.0', '0.4.0', 1],
    ['1.1.0', '1.1.0', 0],
  ])('compareVersions(%s, %s) has sign %i', (a, b, s) => expect(Math.sign(compareVersions(a, b))).toBe(s));
  test.each(['1.0', 'v1.0.0', '1.0.0-rc1', '', 'x.y.z'])('parseVersion(%j) → code 6', (v) => {
    const e = thrown(() => parseVersion(v));
    expect(e.code).toBe(6);
    expect(e.message).toBe(`invalid version "${v}": expected MAJOR.MINOR.PATCH`);
  });
  test('atLeast', () => {
    expect(atLeast('0.4.0', '0.4.0')).toBe(true);
    expect(atLeast('0.3.1', '0.4.0')).toBe(false);
    expect(atLeast('1.0.0', '0.4.0')).toBe(true);
  });
  test.each(SUPPORTED_VERSIONS.map((v) => [v]))('checkSupported(%s) passes', (v) => expect(() => checkSupported(v)).not.toThrow());
  test.each(['0.5.0', '1.2.0', '1.0', ''])('checkSupported(%j) → code 1 with the list in details', (v) => {
    const e = thrown(() => checkSupported(v));
    expect([e.code, e.message, e.details]).toEqual([1, 'incompatible CNI versions', `config is "${v}", plugin supports ["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]`]);
  });
});
