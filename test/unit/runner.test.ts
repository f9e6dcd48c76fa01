// The runner library without namespaces: config loading like libcni, the Go-compatible cache bytes,
// and list execution against small shell-script plugins that record what they were given.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { confListFromBytes, ConfError, loadConfList, selectVersion } from '../../runner/conf';
import { decodeEntry, encodeEntry, cacheFile } from '../../runner/cache';
import { goMarshal } from '../../runner/gojson';
import { decodeResult, printResult, resultMap } from '../../runner/result';
import { CniError } from '../../shared/cni/errors';
import { Runner, RunnerError } from '../../runner/runner';
import { cnitool, containerIDFor } from '../../runner/cli';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'rn-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const write = (p: string, content: unknown): string => {
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};

describe('config loading (libcni conf.go)', () => {
  test('the first .conflist in name order whose name matches wins', () => {
    write(join(dir, '20-b.conflist'), { cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'second' }] });
    write(join(dir, '10-a.conflist'), { cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'first' }] });
    write(join(dir, '05-other.conflist'), { cniVersion: '1.0.0', name: 'other', plugins: [{ type: 'x' }] });
    const l = loadConfList(dir, 'net');
    expect(l.plugins.map((p) => p.type)).toEqual(['first']);
    expect(l.bytes.toString()).toBe(readFileSync(join(dir, '10-a.conflist'), 'utf8'));
  });

  test('plugin fragments from <dir>/<name>/*.conf are appended unless loadOnlyInlinedPlugins', () => {
    write(join(dir, 'a.conflist'), { cniVersion: '1.1.0', name: 'net', plugins: [{ type: 'inline' }] });
    write(join(dir, 'net', '20-y.conf'), { type: 'frag2' });
    write(join(dir, 'net', '10-x.conf'), { type: 'frag1' });
    write(join(dir, 'net', 'ignored.json'), { type: 'nope' });
    expect(loadConfList(dir, 'net').plugins.map((p) => p.type)).toEqual(['inline', 'frag1', 'frag2']);
    write(join(dir, 'a.conflist'), { cniVersion: '1.1.0', name: 'net', loadOnlyInlinedPlugins: 'true', plugins: [{ type: 'inline' }] });
    expect(loadConfList(dir, 'net').plugins.map((p) => p.type)).toEqual(['inline']);
  });

  test('a list may take all its plugins from fragments; none at all is an error', () => {
    write(join(dir, 'a.conflist'), { cniVersion: '1.1.0', name: 'net' });
    expect(() => loadConfList(dir, 'net')).toThrow(/no plugin configs found for network "net"/);
    write(join(dir, 'net', 'p.conf'), { type: 'frag' });
    expect(loadConfList(dir, 'net').plugins.map((p) => p.type)).toEqual(['frag']);
    write(join(dir, 'a.conflist'), { cniVersion: '1.1.0', name: 'net', loadOnlyInlinedPlugins: true });
    expect(() => loadConfList(dir, 'net')).toThrow(/loadOnlyInlinedPlugins` is true, and no 'plugins' key/);
  });

  test('a legacy single-plugin .conf is wrapped into a list (Go-marshalled bytes)', () => {
    write(join(dir, '10-old.conf'), { cniVersion: '0.4.0', name: 'old', type: 'bridge', bridge: 'b0' });
    const l = loadConfList(dir, 'old');
    expect(l.cniVersion).toBe('0.4.0');
    expect(l.plugins[0]!.raw).toEqual({ cniVersion: '0.4.0', name: 'old', type: 'bridge', bridge: 'b0' });
    expect(l.bytes.toString()).toBe('{"cniVersion":"0.4.0","name":"old","plugins":[{"bridge":"b0","cniVersion":"0.4.0","name":"old","type":"bridge"}]}');
  });

  test('unknown network and empty directory say so', () => {
    expect(() => loadConfList(dir, 'net')).toThrow(`no net configurations found in ${dir}`);
    write(join(dir, 'a.conflist'), { cniVersion: '1.0.0', name: 'other', plugins: [{ type: 'x' }] });
    expect(() => loadConfList(dir, 'net')).toThrow(`no net configuration with name "net" in ${dir}`);
  });

  test('bad lists name the problem', () => {
    const bad = (o: unknown): string => {
      try {
        confListFromBytes(Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)));
      } catch (e) {
        expect(e).toBeInstanceOf(ConfError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad('{')).toMatch(/error parsing configuration list/);
    expect(bad('{"name": x}')).toMatch(/error parsing configuration list.*: unexpected 'x' at line 1, column 10$/);
    expect(bad({ plugins: [] })).toMatch(/no name/);
    expect(bad({ name: 'n', plugins: [{ bridge: 'x' }] })).toMatch(/plugin config 0: missing 'type'/);
    expect(bad({ name: 'n', plugins: {} })).toMatch(/invalid 'plugins' type object/);
    expect(bad({ name: 'n', disableCheck: 'maybe', plugins: [{ type: 'x' }] })).toMatch(/invalid disableCheck "maybe"/);
    expect(bad({ name: 'n', plugins: [{ type: 'x', capabilities: { mac: 'yes' } }] })).toMatch(/capabilities.mac "yes"/);
    expect(bad({ name: 'n', cniVersions: ['1.0'], plugins: [{ type: 'x' }] })).toMatch(/invalid cniVersions entry at index 0 "1.0"/);
  });

  test('cniVersions: the highest version we implement wins; higher ones are dropped (spec §1)', () => {
    expect(selectVersion('0.4.0', ['1.0.0', '1.1.0'])).toBe('1.1.0');
    expect(selectVersion('1.0.0', ['1.1.0', '2.0.0', '9.9.9'])).toBe('1.1.0');
    expect(selectVersion('', ['0.3.1', '0.4.0'])).toBe('0.4.0');
    expect(selectVersion('0.3.1', undefined)).toBe('0.3.1');
    expect(selectVersion('1.0.0', ['3.0.0'])).toBe('1.0.0');
    const l = confListFromBytes(Buffer.from(JSON.stringify({ name: 'n', cniVersion: '1.0.0', cniVersions: ['1.1.0'], disableGC: 'true', plugins: [{ type: 'x' }] })));
    expect(l.cniVersion).toBe('1.1.0');
    expect(l.disableGC).toBe(true);
  });
});

describe('Go-compatible JSON and cache entries', () => {
  test('maps sort at every level and HTML characters are escaped as encoding/json does', () => {
    expect(goMarshal({ b: 1, a: { d: [{ z: 1, y: '<&>' }], c: null } })).toBe('{"a":{"c":null,"d":[{"y":"\\u003c\\u0026\\u003e","z":1}]},"b":1}');
    expect(goMarshal('a\u2028\b\f\n')).toBe('"a\\u2028\\u0008\\u000c\\n"');
  });

  test('a cniCacheV1 entry is the struct in field order with omitempty fields left out', () => {
    const e = {
      kind: 'cniCacheV1',
      containerId: 'c1',
      config: Buffer.from('{"x":1}'),
      ifName: 'eth0',
      networkName: 'net',
      cniArgs: [] as Array<[string, string]>,
      capabilityArgs: {},
      result: { cniVersion: '1.0.0', dns: {} },
    };
    expect(encodeEntry(e)).toBe('{"kind":"cniCacheV1","containerId":"c1","config":"eyJ4IjoxfQ==","ifName":"eth0","networkName":"net","result":{"cniVersion":"1.0.0","dns":{}}}');
    const full = { ...e, cniArgs: [['K', 'V']] as Array<[string, string]>, capabilityArgs: { portMappings: [{ hostPort: 80 }] } };
    const text = encodeEntry(full);
    expect(text).toContain('"cniArgs":[["K","V"]],"capabilityArgs":{"portMappings":[{"hostPort":80}]},"result"');
    expect(decodeEntry(text)).toEqual(full);
    expect(decodeEntry('{"kind":"other"}')).toBeNull();
  });
});

test('cnitool container ID: "cnitool-" + 20 hex chars of sha512(netns path), as the real cnitool', () => {
  // Value computed by the real libcni driver (test/go/libcni-driver) for this path.
  expect(containerIDFor('/var/run/netns/rn-c1')).toBe('cnitool-7280178d8eb3df96e4f3');
});

/** A shell-script plugin: logs verb, env and stdin, then prints `out` (or fails as told). */
function fakePlugin(bin: string, name: string, script: string): void {
  const p = join(bin, name);
  writeFileSync(p, `#!/bin/sh\nn=$(ls "$LOG" | wc -l)\nIN="$LOG/$(printf %03d $n)-${name}-$CNI_COMMAND.json"\ncat > "$IN"\necho "$CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS $CNI_ARGS" > "$LOG/$(printf %03d $n)-${name}-$CNI_COMMAND.env"\n${script}\n`);
  chmodSync(p, 0o755);
}

describe('list execution', () => {
  let bin: string, log: string, cache: string, runner: Runner;
  const result = (ip: string): string => `echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],"ips":[{"interface":0,"address":"${ip}/24"}]}'`;
  const list = (plugins: unknown[], extra: Record<string, unknown> = {}) =>
    confListFromBytes(Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'net', plugins, ...extra })));
  const logs = (): Array<{ file: string; conf: Record<string, unknown>; env: string }> =>
    readdirSync(log)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => ({ file: f.slice(4, -5), conf: JSON.parse(readFileSync(join(log, f), 'utf8')), env: readFileSync(join(log, f.replace(/json$/, 'env')), 'utf8').trim() }));
  const rt = { containerID: 'ctr1', netns: '/ns', ifName: 'eth0', args: [['K', 'V']] as Array<[string, string]>, capabilityArgs: { mac: 'aa:bb:cc:dd:ee:ff', portMappings: [] } };

  beforeEach(() => {
    bin = join(dir, 'bin');
    log = join(dir, 'log');
    cache = join(dir, 'cache');
    mkdirSync(bin);
    mkdirSync(log);
    fakePlugin(bin, 'main', result('198.18.0.2'));
    fakePlugin(bin, 'chained', `if [ "$CNI_COMMAND" = ADD ]; then python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["prevResult"]))' "$IN"; fi`);
    fakePlugin(bin, 'failing', `echo '{"code":11,"msg":"busy","details":"try later"}'; exit 1`);
    fakePlugin(bin, 'silent', 'echo oops >&2; exit 1');
    fakePlugin(bin, 'garbage', 'echo not-json; exit 1');
    fakePlugin(bin, 'sleepy', 'sleep 5');
    runner = new Runner({ path: [bin], cacheDir: cache, env: { PATH: process.env.PATH, LOG: log }, timeoutMs: 2000 });
  });

  test('ADD runs in order with name/cniVersion injected, prevResult chained and runtimeConfig filtered by capabilities', async () => {
    const l = list([{ type: 'main', capabilities: { mac: true, ips: true, portMappings: false } }, { type: 'chained' }]);
    const r = await runner.addNetworkList(l, rt);
    expect(r.version).toBe('1.0.0');
    expect(JSON.parse(JSON.stringify(r.value)).ips).toEqual([{ interface: 0, address: '198.18.0.2/24' }]);
    const [a, b] = logs();
    expect(a!.file).toBe('main-ADD');
    expect(a!.conf).toEqual({ type: 'main', name: 'net', cniVersion: '1.0.0', capabilities: { mac: true, ips: true, portMappings: false }, runtimeConfig: { mac: 'aa:bb:cc:dd:ee:ff' } });
    expect(a!.env).toBe('ctr1 eth0 /ns K=V');
    expect(b!.file).toBe('chained-ADD');
    expect(b!.conf.prevResult).toEqual({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/ns' }], ips: [{ interface: 0, address: '198.18.0.2/24' }], dns: {} });
    // libcni injects the result struct into the config map: struct field order inside, sorted keys around it
    const stdin = readFileSync(join(log, readdirSync(log).find((f) => f.endsWith('chained-ADD.json'))!), 'utf8');
    expect(stdin).toBe('{"cniVersion":"1.0.0","name":"net","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],"ips":[{"interface":0,"address":"198.18.0.2/24"}],"dns":{}},"type":"chained"}');
    expect(b!.conf.runtimeConfig).toBeUndefined();
    // cache written after the whole list succeeded, 0600 in a 0700 dir
    const f = cacheFile(cache, 'net', 'ctr1', 'eth0');
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(statSync(join(cache, 'results')).mode & 0o777).toBe(0o700);
    const entry = decodeEntry(readFileSync(f, 'utf8'))!;
    expect(entry.config.toString()).toBe(l.bytes.toString());
    expect(entry.cniArgs).toEqual([['K', 'V']]);
    expect(entry.result).toEqual({ cniVersion: '1.0.0', dns: {}, interfaces: [{ name: 'eth0', sandbox: '/ns' }], ips: [{ interface: 0, address: '198.18.0.2/24' }] });
  });

  test('an IP-less 0.2.0 result is chained, cached and returned as libcni does (no conversion that could fail)', async () => {
    fakePlugin(bin, 'lo', `echo '{"cniVersion":"0.2.0","interfaces":[{"name":"lo"}],"ips":[{"interface":0,"address":"127.0.0.1/8"}],"dns":{}}'`);
    const l = list([{ type: 'lo' }, { type: 'chained' }], { cniVersion: '0.2.0' });
    const r = await runner.addNetworkList(l, rt);
    expect(printResult(r)).toBe('{\n    "cniVersion": "0.2.0",\n    "dns": {}\n}');
    expect(logs()[1]!.conf.prevResult).toEqual({ cniVersion: '0.2.0', dns: {} });
    expect(decodeEntry(readFileSync(cacheFile(cache, 'net', 'ctr1', 'eth0'), 'utf8'))!.result).toEqual({ cniVersion: '0.2.0', dns: {} });
  });

  test('DEL runs in reverse with the cached result as prevResult, then removes the cache entry', async () => {
    const l = list([{ type: 'main' }, { type: 'chained' }]);
    await runner.addNetworkList(l, rt);
    rmSync(log, { recursive: true });
    mkdirSync(log);
    await runner.delNetworkList(l, rt);
    const calls = logs();
    expect(calls.map((c) => c.file)).toEqual(['chained-DEL', 'main-DEL']);
    expect(calls[1]!.conf.prevResult).toEqual({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/ns' }], ips: [{ interface: 0, address: '198.18.0.2/24' }], dns: {} });
    expect(existsSync(cacheFile(cache, 'net', 'ctr1', 'eth0'))).toBe(false);
    // again, with nothing cached: still runs every plugin, without prevResult
    await runner.delNetworkList(l, rt);
    expect(logs().slice(2).map((c) => [c.file, c.conf.prevResult])).toEqual([['chained-DEL', undefined], ['main-DEL', undefined]]);
  });

  test('DEL goes on past a missing or failing plugin, runs every DEL in reverse, then reports each failure and keeps the cache', async () => {
    const ok = list([{ type: 'main' }, { type: 'chained' }]);
    await runner.addNetworkList(ok, rt);
    rmSync(log, { recursive: true });
    mkdirSync(log);
    const l = list([{ type: 'main' }, { type: 'nothere' }, { type: 'failing', name: 'x' }, { type: 'chained' }]);
    const e = await runner.delNetworkList(l, rt).catch((x: unknown) => x);
    expect(logs().map((c) => c.file)).toEqual(['chained-DEL', 'failing-DEL', 'main-DEL']);
    expect(e).toBeInstanceOf(RunnerError);
    expect((e as RunnerError).message).toBe(`plugin type="failing" name="x" failed (delete): busy; try later; plugin type="nothere" failed (delete): failed to find plugin "nothere" in path [${bin}]`);
    expect((e as RunnerError).code).toBe(11);
    expect(((e as RunnerError).cause as AggregateError).errors).toHaveLength(2);
    expect(existsSync(cacheFile(cache, 'net', 'ctr1', 'eth0'))).toBe(true); // the runtime retries DEL with it
    // a single failure is reported as it is, its plugin's error as the cause
    const one = await runner.delNetworkList(list([{ type: 'main' }, { type: 'nothere' }]), rt).catch((x: unknown) => x);
    expect((one as RunnerError).message).toBe(`plugin type="nothere" failed (delete): failed to find plugin "nothere" in path [${bin}]`);
    expect((one as RunnerError).cause).toBeInstanceOf(CniError);
    expect(logs().pop()!.file).toBe('main-DEL');
  });

  test('a corrupt cache entry does not block DEL; a 0.3.1 list gets no prevResult on DEL', async () => {
    mkdirSync(join(cache, 'results'), { recursive: true });
    writeFileSync(cacheFile(cache, 'net', 'ctr1', 'eth0'), '{garbage');
    await runner.delNetworkList(list([{ type: 'main' }]), rt);
    expect(existsSync(cacheFile(cache, 'net', 'ctr1', 'eth0'))).toBe(false);
    const old = list([{ type: 'main' }], { cniVersion: '0.3.1' });
    await runner.addNetworkList(old, rt);
    await runner.delNetworkList(old, rt);
    expect(logs().pop()!.conf.prevResult).toBeUndefined();
  });

  test('CHECK passes the cached result; disableCheck and old versions are handled like libcni', async () => {
    const l = list([{ type: 'main' }]);
    await runner.addNetworkList(l, rt);
    await runner.checkNetworkList(l, rt);
    expect(logs().pop()!.conf.prevResult).toMatchObject({ ips: [{ address: '198.18.0.2/24' }] });
    const n = logs().length;
    await runner.checkNetworkList(list([{ type: 'failing' }], { disableCheck: true }), rt);
    expect(logs().length).toBe(n);
    await expect(runner.checkNetworkList(list([{ type: 'main' }], { cniVersion: '0.3.1' }), rt)).rejects.toThrow('configuration version "0.3.1" does not support the CHECK command');
  });

  test('ADD stops at the first failing plugin, keeps its code and writes no cache', async () => {
    const l = list([{ type: 'main' }, { type: 'failing', name: 'x' }, { type: 'chained' }]);
    const e = await runner.addNetworkList(l, rt).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RunnerError);
    expect((e as RunnerError).message).toBe('plugin type="failing" name="x" failed (add): busy; try later');
    expect((e as RunnerError).code).toBe(11);
    expect(logs().map((c) => c.file)).toEqual(['main-ADD', 'failing-ADD']);
    expect(existsSync(cacheFile(cache, 'net', 'ctr1', 'eth0'))).toBe(false);
  });

  test('empty or garbage output, a hung plugin and a missing binary are clear errors', async () => {
    await expect(runner.addNetworkList(list([{ type: 'silent' }]), rt)).rejects.toThrow('plugin type="silent" failed (add): netplugin failed (exit code 1): "oops"');
    await expect(runner.addNetworkList(list([{ type: 'garbage' }]), rt)).rejects.toThrow('netplugin failed (exit code 1) but its output is not a CNI error: "not-json"');
    await expect(runner.addNetworkList(list([{ type: 'sleepy' }]), rt)).rejects.toThrow(/did not finish within 2000 ms and was killed/);
    await expect(runner.addNetworkList(list([{ type: 'nothere' }]), rt)).rejects.toThrow(`failed to find plugin "nothere" in path [${bin}]`);
    fakePlugin(bin, 'notresult', 'echo hello');
    await expect(runner.addNetworkList(list([{ type: 'notresult' }]), rt)).rejects.toThrow('plugin returned no valid result JSON: "hello"');
  });

  test('names that become cache paths are validated first', async () => {
    await expect(runner.addNetworkList(list([{ type: 'main' }]), { ...rt, containerID: '../x' })).rejects.toThrow(/invalid characters in CNI_CONTAINERID/);
    await expect(runner.delNetworkList(list([{ type: 'main' }]), { ...rt, ifName: 'a/b' })).rejects.toThrow(/invalid CNI_IFNAME/);
    await expect(runner.addNetworkList(list([{ type: 'main' }], { name: '../etc' }), rt)).rejects.toThrow(/invalid network name/);
    expect(logs()).toEqual([]);
  });

  test('GC DELs stale cached attachments, keeps valid ones, then sends valid-attachments to every plugin', async () => {
    const l = list([{ type: 'main' }, { type: 'chained' }], { cniVersion: '1.1.0' });
    await runner.addNetworkList(l, rt);
    await runner.addNetworkList(l, { ...rt, containerID: 'ctr2' });
    rmSync(log, { recursive: true });
    mkdirSync(log);
    await runner.gcNetworkList(l, [{ containerID: 'ctr2', ifname: 'eth0' }]);
    const calls = logs();
    expect(calls.map((c) => c.file)).toEqual(['chained-DEL', 'main-DEL', 'main-GC', 'chained-GC']);
    expect(calls[0]!.env).toBe('ctr1 eth0 /ns K=V'); // the netns cached at ADD (libcni ≥ 1.2)
    expect(calls[2]!.conf['cni.dev/valid-attachments']).toEqual([{ containerID: 'ctr2', ifname: 'eth0' }]);
    expect(calls[2]!.conf['cni.dev/attachments']).toEqual([{ containerID: 'ctr2', ifname: 'eth0' }]);
    expect(existsSync(cacheFile(cache, 'net', 'ctr1', 'eth0'))).toBe(false);
    expect(existsSync(cacheFile(cache, 'net', 'ctr2', 'eth0'))).toBe(true);
    const n = logs().length;
    await runner.gcNetworkList(list([{ type: 'failing' }], { cniVersion: '1.1.0', disableGC: true }));
    expect(logs().length).toBe(n);
  });

  test('STATUS asks every plugin (1.1.0) and is a no-op before 1.1.0', async () => {
    await runner.statusNetworkList(list([{ type: 'main' }, { type: 'chained' }], { cniVersion: '1.1.0' }));
    expect(logs().map((c) => c.file)).toEqual(['main-STATUS', 'chained-STATUS']);
    await expect(runner.statusNetworkList(list([{ type: 'failing' }], { cniVersion: '1.1.0' }))).rejects.toMatchObject({ code: 11 });
    await runner.statusNetworkList(list([{ type: 'failing' }]));
  });

  test('cnitool: usage, unknown network, missing netns, bad CAP_ARGS', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { env: { NETCONFPATH: dir, CNI_PATH: bin, CNI_CACHEDIR: cache, LOG: log, PATH: process.env.PATH }, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
    expect(await cnitool(['--help'], io)).toBe(0);
    expect(out.join('')).toMatch(/cnitool add +<net> <netns>/);
    write(join(dir, 'n.conflist'), { cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'main' }] });
    expect(await cnitool(['add', 'nope', '/proc/self/ns/net'], io)).toBe(1);
    expect(err.pop()).toBe(`no net configuration with name "nope" in ${dir}\n`);
    expect(await cnitool(['add', 'net', '/var/run/netns/rn-does-not-exist'], io)).toBe(1);
    expect(err.pop()).toBe('network namespace "/var/run/netns/rn-does-not-exist" does not exist\n');
    expect(await cnitool(['add', 'net', '/proc/self/ns/net'], { ...io, env: { ...io.env, CAP_ARGS: '[1]' } })).toBe(1);
    expect(err.pop()).toMatch(/invalid CAP_ARGS "\[1\]": expected a JSON object/);
    expect(await cnitool(['add', 'net', '/proc/self/ns/net'], { ...io, env: { ...io.env, CAP_ARGS: '{"mac":' } })).toBe(1);
    expect(err.pop()).toBe('invalid CAP_ARGS: unexpected end of input at line 1, column 8\n');
  });

  test("cnitool passes each plugin's stderr through to its own, as libcni's RawExec copies it to the caller's", async () => {
    const err: string[] = [];
    const io = { env: { NETCONFPATH: dir, CNI_PATH: bin, CNI_CACHEDIR: cache, LOG: log, PATH: process.env.PATH }, stdout: () => undefined, stderr: (s: string) => void err.push(s) };
    fakePlugin(bin, 'chatty', `echo "chatty: $CNI_COMMAND warning" >&2; ${result('198.18.0.9')}`);
    write(join(dir, 'n.conflist'), { cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'chatty' }] });
    expect(await cnitool(['add', 'net', '/proc/self/ns/net'], io)).toBe(0);
    expect(await cnitool(['del', 'net', '/proc/self/ns/net'], io)).toBe(0);
    expect(err.join('')).toBe('chatty: ADD warning\nchatty: DEL warning\n');
  });

  test('cnitool: a missing <net> or <netns>, an extra argument or an unknown command is one usage-style line, exit 1', async () => {
    const err: string[] = [];
    const out: string[] = [];
    const io = { env: { NETCONFPATH: dir, CNI_PATH: bin, CNI_CACHEDIR: cache, LOG: log, PATH: process.env.PATH }, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
    write(join(dir, 'n.conflist'), { cniVersion: '1.0.0', name: 'net', plugins: [{ type: 'main' }] });
    const cases: Array<[string[], string]> = [
      [['add', 'net'], 'cnitool add: missing <netns> (usage: cnitool add <net> <netns>)\n'],
      [['del'], 'cnitool del: missing <net> and <netns> (usage: cnitool del <net> <netns>)\n'],
      [['check', 'net', '/proc/self/ns/net', 'eth1'], 'cnitool check: unexpected argument "eth1" (usage: cnitool check <net> <netns>)\n'],
      [['frob', 'net', 'x'], 'cnitool: unknown command "frob" (usage: cnitool add|check|del|gc|status <net> <netns>)\n'],
      [['frob'], 'cnitool: unknown command "frob" (usage: cnitool add|check|del|gc|status <net> <netns>)\n'],
    ];
    for (const [argv, line] of cases) {
      expect([argv, await cnitool(argv, io)]).toEqual([argv, 1]);
      expect(err.splice(0)).toEqual([line]);
    }
    expect(out).toEqual([]);
    expect(logs()).toEqual([]); // no plugin ran
    // no arguments at all: the whole usage, as the real cnitool
    expect(await cnitool([], io)).toBe(1);
    expect(err.join('')).toMatch(/cnitool add +<net> <netns>/);
  });
});

describe('results as libcni holds them (runner/result.ts, issue 10 item 3)', () => {
  test('kept in the version the plugin printed: 0.4.0 IPs without "version" stay "", unknown fields go, addresses are Go text', () => {
    const r = decodeResult({ cniVersion: '0.4.0', extra: 1, interfaces: [{ name: 'lo', mtu: 9000 }], ips: [{ interface: 0, address: '2001:DB8:0:0::1/64', gateway: '2001:db8::0:1' }] }, '1.0.0');
    expect(r.version).toBe('0.4.0');
    expect(goMarshal(r.value)).toBe('{"cniVersion":"0.4.0","interfaces":[{"name":"lo"}],"ips":[{"version":"","interface":0,"address":"2001:db8::1/64","gateway":"2001:db8::1"}],"dns":{}}');
  });
  test('no cniVersion: read in the config version (0.1.0 when the list has none)', () => {
    expect(decodeResult({ ip4: { ip: '198.18.0.2/24' } }, '0.1.0')).toMatchObject({ version: '0.1.0' });
    expect(goMarshal(decodeResult({ ip4: { ip: '198.18.0.2/24' } }, '0.1.0').value)).toBe('{"cniVersion":"0.1.0","ip4":{"ip":"198.18.0.2/24"},"dns":{}}');
  });
  test('a 0.2.0 result without IPs is a valid result (what libcni makes of the reference loopback\'s output)', () => {
    const r = decodeResult({ cniVersion: '0.2.0', interfaces: [{ name: 'lo' }], ips: [{ address: '127.0.0.1/8' }] }, '0.2.0');
    expect(printResult(r)).toBe('{\n    "cniVersion": "0.2.0",\n    "dns": {}\n}');
    expect(resultMap(r)).toEqual({ cniVersion: '0.2.0', dns: {} });
  });
  test('1.0.0 and 1.1.0 always carry "dns":{}; only 1.1.0 keeps the fields spec 1.1.0 added', () => {
    const raw = { interfaces: [{ name: 'eth0', mtu: 1400, socketPath: '/s' }], routes: [{ dst: '0.0.0.0/0', mtu: 1400, table: 0 }] };
    expect(goMarshal(decodeResult({ ...raw, cniVersion: '1.0.0' }, '1.0.0').value)).toBe('{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}');
    expect(goMarshal(decodeResult({ ...raw, cniVersion: '1.1.0' }, '1.1.0').value)).toBe('{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400,"socketPath":"/s"}],"routes":[{"dst":"0.0.0.0/0","mtu":1400,"table":0}],"dns":{}}');
  });
  test('an invalid result is still refused', () => {
    expect(() => decodeResult({ cniVersion: '1.0.0', ips: [{ address: 'nonsense' }] }, '1.0.0')).toThrow('ips[0].address must be an address with a prefix length');
  });
});
