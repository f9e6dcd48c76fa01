// The protocol core through the BUILT executable (issue 3, point 5): every bad input gives the exact
// CNI error JSON on stdout, exit 1, nothing on stderr; VERSION and the bare invocation; the multi-call
// entry. Everything runs inside a scratch netns (prefix core-), with host-local's dataDir in a temp dir,
// so even a validation bug that let a handler run could not touch the machine.
import { execa } from 'execa';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, ALL_VERSIONS, binDir, delNetns, linkedPlugins, nsName, runCni, type RunResult } from '../support/cni';

// Every plugin the executable links (`cnikit --list` minus the tools), so each new plugin gets the
// protocol tests the day it is linked; REQUIRED are the ones that must be there.
const REQUIRED = ['host-local', 'static', 'bridge', 'ptp', 'loopback', 'tuning'] as const;
const PLUGINS = linkedPlugins();
const built = (p: string) => existsSync(join(binDir(), p));
const SUPPORTED = '["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]';

let ns = ''; // scratch "host" netns the plugins run in
let cns = ''; // scratch container netns (CNI_NETNS), distinct from the host one (else code 8)
let dataDir = '';

beforeAll(async () => {
  if (!built('cnikit')) throw new Error(`no built executable in ${binDir()}: run CNIKIT_DIST=... node build.mjs first`);
  ns = nsName('core-h');
  await addNetns(ns);
  cns = nsName('core-c');
  await addNetns(cns);
  dataDir = mkdtempSync(join(tmpdir(), 'core-protocol-'));
});

afterAll(async () => {
  if (ns) await delNetns(ns);
  if (cns) await delNetns(cns);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const ENV = () => ({
  CNI_CONTAINERID: 'core-ctr-1',
  CNI_NETNS: `/var/run/netns/${cns}`,
  CNI_IFNAME: 'eth0',
  CNI_PATH: binDir(),
});

const config = (o: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: 'core-net',
  type: 'bridge',
  bridge: 'core-br0',
  ipam: { type: 'host-local', subnet: '198.18.7.0/24', dataDir },
  ...o,
});

async function run(plugin: string, command: string, env: Record<string, string | undefined>, cfg: unknown = config()): Promise<RunResult> {
  return runCni(plugin, { command, config: cfg, env, hostNetns: ns });
}

function expectError(r: RunResult, code: number, msg: string | RegExp, cniVersion = '1.1.0'): void {
  expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({ exitCode: 1, stderr: '' });
  expect(r.json).toBeDefined();
  expect(r.json.code).toBe(code);
  if (typeof msg === 'string') expect(r.json.msg).toBe(msg);
  else expect(r.json.msg).toMatch(msg);
  expect(r.json.cniVersion).toBe(cniVersion);
  expect(r.stdout).not.toMatch(/\bat .*:\d+:\d+/); // no stack frames anywhere
  expect(r.stdout).not.toMatch(/node_modules|\/\$bunfs\//);
}

describe.each(PLUGINS)('%s: bad input is rejected before any handler runs', (plugin) => {
  beforeAll(() => {
    if (!built(plugin)) throw new Error(`${plugin} is not built in ${binDir()}`);
  });

  test.each(['FOO', 'add', 'DELETE'])('CNI_COMMAND=%s → code 4 naming it', async (cmd) => {
    const r = await run(plugin, cmd, ENV());
    expectError(r, 4, `unknown CNI_COMMAND: ${cmd}`);
  });

  test.each([
    ['ADD', 'CNI_CONTAINERID'],
    ['ADD', 'CNI_NETNS'],
    ['ADD', 'CNI_IFNAME'],
    ['ADD', 'CNI_PATH'],
    ['CHECK', 'CNI_NETNS'],
    ['DEL', 'CNI_CONTAINERID'],
    ['DEL', 'CNI_IFNAME'],
    ['GC', 'CNI_PATH'],
    ['STATUS', 'CNI_PATH'],
  ])('%s without %s → code 4', async (verb, key) => {
    const r = await run(plugin, verb, { ...ENV(), [key]: undefined });
    expectError(r, 4, `required env variables [${key}] missing`);
  });

  test('ADD with nothing set names every variable', async () => {
    const r = await run(plugin, 'ADD', {});
    expectError(r, 4, 'required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing');
  });

  test.each(['-x', 'a/b', '../../etc', 'a b'])('CNI_CONTAINERID %j → code 4', async (id) => {
    const r = await run(plugin, 'ADD', { ...ENV(), CNI_CONTAINERID: id });
    expectError(r, 4, `invalid characters in CNI_CONTAINERID ${JSON.stringify(id)}`);
  });

  test.each([
    ['a'.repeat(16), 'interface name is too long (at most 15 bytes)'],
    ['..', 'interface name is . or ..'],
    ['eth/0', 'interface name contains / or : or whitespace characters'],
    ['eth:0', 'interface name contains / or : or whitespace characters'],
    ['eth 0', 'interface name contains / or : or whitespace characters'],
  ])('CNI_IFNAME %j → code 4', async (name, why) => {
    const r = await run(plugin, 'DEL', { ...ENV(), CNI_IFNAME: name });
    expectError(r, 4, `invalid CNI_IFNAME ${JSON.stringify(name)}: ${why}`);
  });

  test('a stdin read failure (stdin is a directory) → code 5', async () => {
    const file = join(binDir(), plugin);
    const r = await execa('ip', ['netns', 'exec', ns, 'sh', '-c', 'exec "$0" < /', file], {
      env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', ...ENV() },
      extendEnv: false,
      reject: false,
    });
    const res: RunResult = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json: JSON.parse(String(r.stdout)) };
    expectError(res, 5, /^error reading from stdin: .*EISDIR/);
  });

  test.each([
    ['empty', '', 'invalid JSON: empty input'],
    ['truncated', '{"cniVersion":"1.0.0","name":', 'invalid JSON: unexpected end of input at line 1, column 30'],
    ['not JSON', 'name=core-net', "invalid JSON: unexpected 'n' at line 1, column 1"],
    ['a trailing comma', '{"name":"core-net",\n}', "invalid JSON: expected a quoted member name, found '}' at line 2, column 1"],
    ['two values', '{} {}', "invalid JSON: unexpected '{' after the end of the JSON value at line 1, column 4"],
    ['a JSON list', '[]', 'expected a JSON object'],
  ])('stdin %s → code 6, the fault in our words (not the engine\'s)', async (_l, text, details) => {
    const r = await run(plugin, 'ADD', ENV(), text);
    expectError(r, 6, 'error decoding network config from stdin');
    expect(r.json.details).toBe(details);
  });

  test.each([
    [{ name: undefined }, 'missing network name'],
    [{ name: '' }, 'missing network name'],
    [{ name: '../etc' }, 'invalid network name "../etc"'],
    [{ name: 'my net' }, 'invalid network name "my net"'],
  ])('config %j → code 7', async (over, msg) => {
    const r = await run(plugin, 'ADD', ENV(), config(over));
    expectError(r, 7, msg);
  });

  test.each(['0.5.0', '2.0.0', '1.0'])('cniVersion %j → code 1 listing what we support', async (v) => {
    const r = await run(plugin, 'ADD', ENV(), config({ cniVersion: v }));
    expectError(r, 1, 'incompatible CNI versions', v);
    expect(r.json.details).toBe(`config is "${v}", plugin supports ${SUPPORTED}`);
  });

  test.each(['0.1.0', '0.2.0', '0.3.0', '0.3.1'])('CHECK with config %s → code 1', async (v) => {
    const r = await run(plugin, 'CHECK', ENV(), config({ cniVersion: v }));
    expectError(r, 1, 'config version does not allow CHECK', v);
  });

  test.each(['0.4.0', '1.0.0'])('GC and STATUS with config %s → code 1', async (v) => {
    expectError(await run(plugin, 'GC', ENV(), config({ cniVersion: v })), 1, 'config version does not allow GC', v);
    expectError(await run(plugin, 'STATUS', ENV(), config({ cniVersion: v })), 1, 'config version does not allow STATUS', v);
  });

  test('no cniVersion means 0.1.0: CHECK refused for it', async () => {
    const r = await run(plugin, 'CHECK', ENV(), config({ cniVersion: undefined }));
    expectError(r, 1, 'config version does not allow CHECK', '0.1.0');
  });

  test('CNI_NETNS that is the plugin\'s own netns → code 8', async () => {
    const r = await run(plugin, 'ADD', { ...ENV(), CNI_NETNS: '/proc/self/ns/net' });
    expectError(r, 8, 'CNI_NETNS "/proc/self/ns/net" is the plugin\'s own network namespace');
  });

  test.each(ALL_VERSIONS)('VERSION (config %s) lists all 7 versions', async (v) => {
    const r = await run(plugin, 'VERSION', {}, { cniVersion: v });
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(r.stdout.trim()).toBe(`{"cniVersion":"1.1.0","supportedVersions":${SUPPORTED}}`);
  });

  test('VERSION ignores stdin and other env', async () => {
    const r = await run(plugin, 'VERSION', { CNI_CONTAINERID: '-bad', CNI_IFNAME: '..' }, 'not json');
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual({ cniVersion: '1.1.0', supportedVersions: JSON.parse(SUPPORTED) });
  });

  test('bare invocation: about + protocol versions on stderr, exit 0, nothing on stdout', async () => {
    for (const command of [undefined, '']) {
      const r = await runCni(plugin, { command: command as unknown as string, env: { CNI_COMMAND: command }, hostNetns: ns });
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(new RegExp(`^${plugin}: cnikit \\S+ \\(build [0-9a-f]{12}\\)$`));
      expect(lines[1]!.length).toBeGreaterThan(0);
      expect(lines[2]).toBe('CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0');
    }
  });
});

describe('results are printed in the config version (host-local ADD/DEL end to end)', () => {
  test.each(ALL_VERSIONS)('%s', async (v) => {
    const env = { ...ENV(), CNI_CONTAINERID: `core-v${v.replace(/\./g, '')}` };
    const cfg = config({ cniVersion: v });
    const add = await run('host-local', 'ADD', env, cfg);
    expect({ exitCode: add.exitCode, stderr: add.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(add.json.cniVersion).toBe(v);
    if (v === '0.1.0' || v === '0.2.0') {
      expect(add.json.ip4.ip).toMatch(/^198\.18\.7\.\d+\/24$/);
      expect(add.json.ips).toBeUndefined();
      expect(add.json.dns).toEqual({});
    } else {
      expect(add.json.ips).toHaveLength(1);
      expect(add.json.ips[0].address).toMatch(/^198\.18\.7\.\d+\/24$/);
      expect(add.json.ips[0].version).toBe(v.startsWith('0.') ? '4' : undefined);
      expect(add.json.dns).toEqual(v.startsWith('0.') ? {} : undefined);
    }
    const del = await run('host-local', 'DEL', env, cfg);
    expect({ exitCode: del.exitCode, stdout: del.stdout, stderr: del.stderr }).toEqual({ exitCode: 0, stdout: '', stderr: '' });
  });
});

describe('cnikit multi-call entry', () => {
  const cnikit = () => join(binDir(), 'cnikit');
  test('--list names every required plugin, one per line, and each has a link', async () => {
    const r = await execa(cnikit(), ['--list'], { reject: false });
    expect(r.exitCode).toBe(0);
    const names = String(r.stdout).split('\n');
    for (const p of REQUIRED) expect(names).toContain(p);
    for (const n of names) expect(existsSync(join(binDir(), n))).toBe(true);
  });
  test('no argument: usage on stderr, exit 2, nothing on stdout', async () => {
    const r = await execa(cnikit(), [], { reject: false, env: { CNI_COMMAND: 'ADD' } });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('usage: cnikit <plugin>');
    expect(r.stderr).toContain('host-local');
  });
  test('an unknown name: says which, exit 2', async () => {
    const r = await execa(cnikit(), ['no-such-plugin'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('unknown plugin "no-such-plugin"');
  });
  test('`cnikit <name>` behaves as the link', async () => {
    const r = await execa(cnikit(), ['bridge'], { reject: false, env: { CNI_COMMAND: 'VERSION' }, extendEnv: false });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(String(r.stdout))).toEqual({ cniVersion: '1.1.0', supportedVersions: JSON.parse(SUPPORTED) });
  });
  test('an error through `cnikit <name>` is the same CNI error JSON', async () => {
    const r = await execa(cnikit(), ['host-local'], { reject: false, env: { CNI_COMMAND: 'BOGUS' }, extendEnv: false, input: '' });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('');
    expect(JSON.parse(String(r.stdout))).toMatchObject({ code: 4, msg: 'unknown CNI_COMMAND: BOGUS' });
  });
});

describe('--version', () => {
  const line = (name: string) => new RegExp(`^${name}: cnikit \\d+\\.\\d+\\.\\d+ \\(build [0-9a-f]{12}\\)$`);
  test('cnikit --version: one line with the version and build ID, exit 0', async () => {
    const r = await execa(join(binDir(), 'cnikit'), ['--version'], { reject: false });
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^cnikit \d+\.\d+\.\d+ \(build [0-9a-f]{12}\)$/);
  });
  test.each([...PLUGINS, 'cnitool'])('%s --version: the about line with the build version on stdout, exit 0', async (name) => {
    const r = await execa(join(binDir(), name), ['--version'], { reject: false, env: { PATH: process.env.PATH }, extendEnv: false });
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(String(r.stdout).split('\n')[0]).toMatch(line(name));
  });
});

describe('a result that cannot be written', () => {
  const bridge = () => join(binDir(), 'bridge');
  test('stdout is a pipe closed early (VERSION | true): exit 1, one log line, no stack trace or source', async () => {
    // `true` has exited before the plugin writes: the write fails with EPIPE.
    const r = await execa('sh', ['-c', '{ sleep 0.3; "$0"; echo "exit=$?" >&2; } | true', bridge()], {
      env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' },
      extendEnv: false,
      reject: false,
    });
    expect(r.stderr).toMatch(/^\S+ bridge\[\d+\] warn: cannot write the result to stdout: EPIPE\nexit=1$/);
  });
  test('stdout closed when the plugin starts: exit 1, not a silent 0', async () => {
    const r = await execa('sh', ['-c', '"$0" >&-; echo "exit=$?"', bridge()], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' }, extendEnv: false, reject: false });
    expect(r.stdout).toBe('exit=1');
    expect(r.stderr).toMatch(/^\S+ bridge\[\d+\] warn: cannot write the result to stdout: stdout was closed when the plugin started$/);
  });
  test.each([['cnikit', '--version'], ['cnikit', '--list'], ['cnitool', '--version'], ['bridge', '--version']])(
    '%s %s into a pipe closed early: exit 1, at most one line, no stack trace or source',
    async (name, arg) => {
      const r = await execa('sh', ['-c', '{ sleep 0.3; "$0" "$1"; echo "exit=$?" >&2; } | true', join(binDir(), name), arg], { env: { PATH: process.env.PATH }, extendEnv: false, reject: false });
      const lines = r.stderr.split('\n');
      expect(lines[lines.length - 1]).toBe('exit=1');
      expect(lines.length).toBeLessThanOrEqual(2);
      expect(r.stderr).not.toMatch(/\bat |\$bunfs|\| /);
    },
  );
  test('stdout redirected to /dev/null by the caller is written as usual (exit 0)', async () => {
    const r = await execa('sh', ['-c', '"$0" > /dev/null; echo "exit=$?"', bridge()], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' }, extendEnv: false, reject: false });
    expect([r.stdout, r.stderr]).toEqual(['exit=0', '']);
  });
});

describe('debug logging (CNIKIT_LOG, CNIKIT_LOG_FILE)', () => {
  const hostLocal = (env: Record<string, string | undefined>) =>
    run('host-local', 'ADD', { ...ENV(), CNI_CONTAINERID: 'core-log', ...env }, config({ ipam: { type: 'host-local', subnet: '198.18.8.0/24', dataDir } }));
  afterEach(async () => {
    await run('host-local', 'DEL', { ...ENV(), CNI_CONTAINERID: 'core-log' }, config({ ipam: { type: 'host-local', subnet: '198.18.8.0/24', dataDir } }));
  });

  test('off by default: nothing on stderr', async () => {
    const r = await hostLocal({});
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
  });
  test('CNIKIT_LOG=debug: the verb\'s steps with timings on stderr; stdout is still exactly the result', async () => {
    const r = await hostLocal({ CNIKIT_LOG: 'debug' });
    expect(r.exitCode).toBe(0);
    expect(r.json.ips[0].address).toMatch(/^198\.18\.8\.\d+\/24$/);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^\S+Z host-local\[\d+\] ADD debug: containerID="core-log" netns="\/var\/run\/netns\/core-c-[0-9a-f]+" ifName="eth0" stdin \d+ bytes, \d+\.\d ms after exec$/);
    expect(lines).toContainEqual(expect.stringMatching(/ ADD debug: ADD: \d+\.\d ms$/));
    expect(lines[lines.length - 1]).toMatch(/^\S+Z host-local\[\d+\] debug: exit 0, \d+\.\d ms after exec$/);
  });
  test('CNIKIT_LOG_FILE: the lines go to the file (0600), none to stderr', async () => {
    const file = join(dataDir, 'cnikit.log');
    const r = await hostLocal({ CNIKIT_LOG: 'debug', CNIKIT_LOG_FILE: file });
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    const { readFileSync, statSync } = await import('node:fs');
    expect(readFileSync(file, 'utf8')).toMatch(/ ADD debug: ADD: \d+\.\d ms\n.* debug: exit 0, \d+\.\d ms after exec\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
  test('a failing verb logs its CNI error at debug', async () => {
    const r = await run('host-local', 'ADD', { ...ENV(), CNIKIT_LOG: 'debug' }, '{"name":');
    expect(r.json.code).toBe(6);
    expect(r.stderr).toContain('ADD debug: error code 6: error decoding network config from stdin (invalid JSON: unexpected end of input at line 1, column 9)');
  });
});
