// tuning: config parsing and validation (the reference's parseConf, getSysctlFilename,
// validateSysctlConflictingKeys and allowlist), and the saved-link file in the reference's format.
import { errorOf } from '../support/errors';
import { lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkAllowlist,
  DEFAULT_DATA_DIR,
  duplicatedSysctlKey,
  loadTuningConf,
  parseAllowlist,
  planTuning,
  readAllowlist,
  rejectDuplicatedSysctlKeys,
  sysctlFile,
} from '../../plugins/meta/tuning/config';
import { decodeSavedLink, encodeSavedLink, readSavedLinkFile, savedLinkPath, writeSavedLink } from '../../plugins/meta/tuning/saved-link';
import { CniError } from '../../shared/cni/errors';

const load = (conf: Record<string, unknown>, args = '') => loadTuningConf({ conf: { name: 'n', cniVersion: '1.0.0', ...conf }, args });
const plan = (conf: Record<string, unknown>, ifName = 'eth0', args = '') => planTuning(load(conf, args), ifName);


describe('loadTuningConf', () => {
  test('defaults: the reference data dir, nothing changed', () => {
    const c = load({});
    expect(c).toEqual({
      dataDir: DEFAULT_DATA_DIR,
      sysctl: [],
      mac: undefined,
      promisc: false,
      mtu: 0,
      txQLen: undefined,
      allmulti: undefined,
      prevResult: undefined,
    });
    expect(DEFAULT_DATA_DIR).toBe('/run/cni/tuning');
  });

  test('every key at the top level', () => {
    const c = load({ dataDir: '/tmp/t', sysctl: { 'net.core.somaxconn': '500' }, mac: 'c2:00:00:00:00:01', promisc: true, mtu: 1400, txQLen: 0, allmulti: false });
    expect(c).toMatchObject({
      dataDir: '/tmp/t',
      sysctl: [{ key: 'net.core.somaxconn', value: '500', field: 'sysctl' }],
      mac: { value: 'c2:00:00:00:00:01', field: 'mac' },
      promisc: true,
      mtu: 1400,
      txQLen: 0, // a pointer in the reference: 0 is set, not absent
      allmulti: false, // likewise: explicitly off
    });
  });

  test('MAC precedence as the reference: mac < CNI_ARGS MAC < runtimeConfig.mac < args.cni.mac', () => {
    expect(load({ mac: 'c2:00:00:00:00:01' }).mac?.value).toBe('c2:00:00:00:00:01');
    expect(load({ mac: 'c2:00:00:00:00:01' }, 'MAC=c2:00:00:00:00:02').mac).toEqual({ value: 'c2:00:00:00:00:02', field: 'CNI_ARGS MAC' });
    expect(load({ runtimeConfig: { mac: 'c2:00:00:00:00:03' } }, 'MAC=c2:00:00:00:00:02').mac).toEqual({ value: 'c2:00:00:00:00:03', field: 'runtimeConfig.mac' });
    expect(load({ runtimeConfig: { mac: 'c2:00:00:00:00:03' }, args: { cni: { mac: 'c2:00:00:00:00:04' } } }).mac).toEqual({
      value: 'c2:00:00:00:00:04',
      field: 'args.cni.mac',
    });
  });

  test('args.cni overrides promisc, mtu, allmulti and txQLen, and merges sysctl over the config by key', () => {
    const c = load({
      promisc: true,
      mtu: 1400,
      allmulti: true,
      txQLen: 100,
      sysctl: { 'net.core.somaxconn': '500', 'net.ipv4.ip_forward': '1' },
      args: { cni: { promisc: false, mtu: 1300, allmulti: false, txQLen: 200, sysctl: { 'net.core.somaxconn': '600', 'net.ipv4.conf.IFNAME.rp_filter': '2' } } },
    });
    expect(c).toMatchObject({ promisc: false, mtu: 1300, allmulti: false, txQLen: 200 });
    expect(c.sysctl).toEqual([
      { key: 'net.core.somaxconn', value: '600', field: 'args.cni.sysctl' },
      { key: 'net.ipv4.ip_forward', value: '1', field: 'sysctl' },
      { key: 'net.ipv4.conf.IFNAME.rp_filter', value: '2', field: 'args.cni.sysctl' },
    ]);
  });

  test('args.cni.sysctl without a config sysctl works (the reference panics on its nil map)', () => {
    expect(load({ args: { cni: { sysctl: { 'net.core.somaxconn': '7' } } } }).sysctl).toEqual([{ key: 'net.core.somaxconn', value: '7', field: 'args.cni.sysctl' }]);
  });

  test('null keys are the zero value, as Go leaves them', () => {
    expect(load({ mtu: null, sysctl: null, mac: null, allmulti: null, txQLen: null, dataDir: null })).toMatchObject({ mtu: 0, sysctl: [], mac: undefined, allmulti: undefined, txQLen: undefined, dataDir: DEFAULT_DATA_DIR });
  });

  test.each([
    [{ mtu: '1400' }, 'mtu', '"1400"'],
    [{ mtu: -1 }, 'mtu', '-1'],
    [{ mtu: 1.5 }, 'mtu', '1.5'],
    [{ txQLen: -1 }, 'txQLen', '-1'],
    [{ txQLen: 2 ** 32 }, 'txQLen', '4294967296'],
    [{ promisc: 'yes' }, 'promisc', '"yes"'],
    [{ allmulti: 1 }, 'allmulti', '1'],
    [{ sysctl: { 'net.core.somaxconn': 500 } }, 'sysctl.net.core.somaxconn', '500'],
    [{ sysctl: ['net.core.somaxconn'] }, 'sysctl', '["net.core.somaxconn"]'],
    [{ mac: 5 }, 'mac', '5'],
    [{ runtimeConfig: { mac: false } }, 'runtimeConfig.mac', 'false'],
    [{ args: { cni: { mtu: 'x' } } }, 'args.cni.mtu', '"x"'],
    [{ dataDir: 'relative/dir' }, 'dataDir', '"relative/dir"'],
    [{ dataDir: '/run/cni/../etc' }, 'dataDir', '"/run/cni/../etc"'],
  ])('%j is code 7 naming %s and its value', (conf, field, shown) => {
    const e = errorOf(() => load(conf));
    expect(e).toBeInstanceOf(CniError);
    expect(e.code).toBe(7);
    expect(e.message).toContain(`field "${field}" = ${shown}`);
  });

  test('CNI_ARGS: unknown keys are code 4 unless IgnoreUnknown; an empty MAC= sets nothing', () => {
    expect(errorOf(() => load({}, 'FOO=1')).code).toBe(4);
    expect(load({}, 'IgnoreUnknown=1;FOO=1;MAC=c2:00:00:00:00:09').mac?.value).toBe('c2:00:00:00:00:09');
    expect(load({ mac: 'c2:00:00:00:00:01' }, 'MAC=').mac?.value).toBe('c2:00:00:00:00:01');
  });
});

describe('planTuning and sysctl keys', () => {
  test('dots become path separators, then the first IFNAME becomes the interface name', () => {
    expect(sysctlFile('net.ipv4.conf.IFNAME.rp_filter', 'eth0')).toBe('net/ipv4/conf/eth0/rp_filter');
    expect(sysctlFile('net/ipv4/conf/IFNAME/rp_filter', 'eth0')).toBe('net/ipv4/conf/eth0/rp_filter');
    expect(sysctlFile('net.core.somaxconn', 'eth0')).toBe('net/core/somaxconn');
    // An interface name with a dot stays one path part (the reference's fix for VLAN interfaces).
    expect(sysctlFile('net.ipv4.conf.IFNAME.arp_notify', 'eth0.100')).toBe('net/ipv4/conf/eth0.100/arp_notify');
    expect(sysctlFile('net.ipv6.conf.IFNAME.IFNAME', 'x')).toBe('net/ipv6/conf/x/IFNAME');
  });

  test.each([
    'kernel.hostname',
    'vm.swappiness',
    'net',
    'network.core.x',
    'net..core.somaxconn', // the reference cleans this to net/core/somaxconn; refused here
    'net/../kernel/hostname',
    'net.ipv4.conf./../../kernel.hostname',
    '/net/core/somaxconn',
    'net/core/somaxconn/',
    'net/./core/somaxconn',
    'net/core/so\0maxconn',
    '',
  ])('key %j is code 7: only files under /proc/sys/net, no path tricks', (key) => {
    const e = errorOf(() => plan({ sysctl: { [key]: '1' } }));
    expect(e.code).toBe(7);
    expect(e.message).toContain(`field "sysctl" = ${JSON.stringify(key)}`);
  });

  test('a bad key from args.cni.sysctl names that field', () => {
    expect(errorOf(() => plan({ args: { cni: { sysctl: { 'kernel.pid_max': '1' } } } })).message).toContain('field "args.cni.sysctl" = "kernel.pid_max"');
  });

  test('two config keys for the same file are refused (the reference writes them in random order)', () => {
    const e = errorOf(() => plan({ sysctl: { 'net.core.somaxconn': '1', 'net/core/somaxconn': '2' } }));
    expect(e.code).toBe(7);
    expect(e.message).toContain('field "sysctl" = "net/core/somaxconn"');
    expect(e.message).toContain('"net.core.somaxconn"');
    // IFNAME and the literal name are the same file too.
    expect(errorOf(() => plan({ sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '1', 'net.ipv4.conf.eth0.rp_filter': '2' } })).code).toBe(7);
  });

  test('args.cni.sysctl overrides a config key naming the same file in another spelling', () => {
    const p = plan({ sysctl: { 'net.core.somaxconn': '1' }, args: { cni: { sysctl: { 'net/core/somaxconn': '2' } } } });
    expect(p.sysctls).toEqual([{ key: 'net/core/somaxconn', field: 'args.cni.sysctl', path: 'net/core/somaxconn', value: '2' }]);
  });

  test('the MAC is checked and normalised; a bad one is code 7 naming the field it came from', () => {
    expect(plan({ mac: 'C2-11-22-33-44-55' }).mac).toBe('c2:11:22:33:44:55');
    const e = errorOf(() => plan({ runtimeConfig: { mac: 'c2:11:22:33:44' } }));
    expect(e.code).toBe(7);
    expect(e.message).toContain('field "runtimeConfig.mac" = "c2:11:22:33:44"');
    expect(errorOf(() => plan({}, 'eth0', 'MAC=zz')).message).toContain('field "CNI_ARGS MAC" = "zz"');
  });
});

describe('duplicated sysctl keys (the reference refuses them since v1.2; JSON.parse keeps the last)', () => {
  test('a repeated key in the top-level sysctl object is found', () => {
    expect(duplicatedSysctlKey('{"name":"n","sysctl":{"net.core.somaxconn":"1","net.ipv4.ip_forward":"1","net.core.somaxconn":"2"}}')).toBe('net.core.somaxconn');
  });

  test('keys are compared decoded (an escaped dot is the same key)', () => {
    expect(duplicatedSysctlKey('{"sysctl":{"net.core.somaxconn":"1","net\\u002ecore.somaxconn":"2"}}')).toBe('net.core.somaxconn');
  });

  test('no duplicate: distinct keys, nested objects elsewhere, braces and quotes inside strings', () => {
    const json = JSON.stringify({
      name: 'n',
      prevResult: { interfaces: [{ name: 'sysctl', mac: '{"' }], sysctl: { a: 1 } },
      args: { cni: { sysctl: { 'net.core.somaxconn': '1' } } },
      sysctl: { 'net.core.somaxconn': '1', 'net.x': '}{"\\' },
      after: [1, { sysctl: { 'net.core.somaxconn': '3' } }],
    });
    expect(duplicatedSysctlKey(json)).toBeUndefined();
    expect(duplicatedSysctlKey('{"name":"n"}')).toBeUndefined();
    expect(duplicatedSysctlKey('{"sysctl":null,"x":true}')).toBeUndefined();
  });

  test('rejectDuplicatedSysctlKeys is code 7 naming the key', () => {
    const e = errorOf(() => rejectDuplicatedSysctlKeys(Buffer.from('{"sysctl": {"net.a" : "1", "net.a":"1"}}')));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid config: field "sysctl" = "net.a": duplicated sysctl keys are not allowed');
  });
});

describe('sysctl allowlist (/etc/cni/tuning/allowlist.conf)', () => {
  const settings = (keys: string[]) => keys.map((key) => ({ key, field: 'sysctl', path: key.replace(/\./g, '/'), value: '1' }));

  test('one regular expression a line, blank lines skipped, matched unanchored against the key as written', () => {
    const allow = parseAllowlist('^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n\n   \nsomaxconn\n');
    expect(allow.map((r) => r.source)).toEqual(['^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$', 'somaxconn']);
    expect(() => checkAllowlist(settings(['net.ipv4.conf.IFNAME.rp_filter', 'net.core.somaxconn']), allow)).not.toThrow();
  });

  test('a key no pattern matches is code 7 naming it and the allowlist', () => {
    const e = errorOf(() => checkAllowlist(settings(['net.ipv4.conf.eth0.rp_filter']), parseAllowlist('^net\\.ipv4\\.conf\\.IFNAME\\.')));
    expect(e.code).toBe(7);
    expect(e.message).toContain('field "sysctl" = "net.ipv4.conf.eth0.rp_filter": not allowed by /etc/cni/tuning/allowlist.conf');
  });

  test('an empty allowlist file allows nothing; no file allows every net.* key', () => {
    expect(errorOf(() => checkAllowlist(settings(['net.core.somaxconn']), parseAllowlist('\n'))).code).toBe(7);
    expect(() => checkAllowlist(settings(['net.core.somaxconn']), undefined)).not.toThrow();
  });

  test('readAllowlist: an absent file is no allowlist; a present one is parsed', () => {
    const root = mkdtempSync(join(tmpdir(), 'tuning-allow-'));
    try {
      expect(readAllowlist(join(root, 'allowlist.conf'))).toBeUndefined();
      writeFileSync(join(root, 'allowlist.conf'), '^net\\.core\\.\n');
      expect(readAllowlist(join(root, 'allowlist.conf'))!.map((r) => r.source)).toEqual(['^net\\.core\\.']);
      expect(errorOf(() => readAllowlist(root)).message).toContain(`failed to read the sysctl allowlist ${root}`); // a directory
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('a pattern that does not compile is code 7 naming the line', () => {
    const e = errorOf(() => parseAllowlist('^net\\.\n(unclosed\n'));
    expect(e.code).toBe(7);
    expect(e.message).toContain('line 2 "(unclosed"');
  });
});

describe('saved link values (the reference file <dataDir>/<containerID>_<ifname>.json)', () => {
  test('the reference bytes: Go MarshalIndent with one space, struct order, omitempty, no newline', () => {
    expect(encodeSavedLink({ txQLen: 1000, allmulti: false, mtu: 1500, promisc: false, mac: '0a:58:c6:12:00:02' })).toBe(
      '{\n "mac": "0a:58:c6:12:00:02",\n "promisc": false,\n "mtu": 1500,\n "allmulti": false,\n "txQLen": 1000\n}',
    );
    expect(encodeSavedLink({ mtu: 9000 })).toBe('{\n "mtu": 9000\n}');
    expect(encodeSavedLink({})).toBe('{}');
    expect(savedLinkPath('/run/cni/tuning', 'abc', 'eth0')).toBe('/run/cni/tuning/abc_eth0.json');
  });

  test('decoding keeps what the kernel can take and nothing else; not an object restores nothing', () => {
    expect(decodeSavedLink('{\n "mac": "0A:58:C6:12:00:02",\n "promisc": true,\n "mtu": 1400,\n "allmulti": true,\n "txQLen": 0\n}')).toEqual({
      mac: '0a:58:c6:12:00:02',
      promisc: true,
      mtu: 1400,
      allmulti: true,
      txQLen: 0,
    });
    expect(decodeSavedLink('{"mac":"nope","mtu":-5,"promisc":"yes","txQLen":1.5}')).toEqual({});
    expect(decodeSavedLink('not json')).toBeUndefined();
    expect(decodeSavedLink('[1]')).toBeUndefined();
  });

  test('written atomically into a 0700 directory as a 0600 file, read back; a symlink is refused, a missing file is none', () => {
    const root = mkdtempSync(join(tmpdir(), 'tuning-unit-'));
    try {
      const dir = join(root, 'state');
      const p = savedLinkPath(dir, 'ctr1', 'eth0');
      writeSavedLink(p, { mtu: 1500 });
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(p).mode & 0o777).toBe(0o600);
      expect(readFileSync(p, 'utf8')).toBe('{\n "mtu": 1500\n}');
      writeSavedLink(p, { mtu: 1400 }); // replaces
      expect(readSavedLinkFile(p)).toBe('{\n "mtu": 1400\n}');
      expect(readSavedLinkFile(join(dir, 'none.json'))).toBeUndefined();

      writeFileSync(join(root, 'target'), '{"mtu":1}');
      const link = savedLinkPath(dir, 'ctr2', 'eth0');
      symlinkSync(join(root, 'target'), link);
      expect(() => readSavedLinkFile(link)).toThrow(/is a symbolic link/);
      expect(() => writeSavedLink(link, { mtu: 1 })).not.toThrow(); // the rename replaces the link itself
      expect(lstatSync(link).isSymbolicLink()).toBe(false);
      expect(readFileSync(join(root, 'target'), 'utf8')).toBe('{"mtu":1}');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
