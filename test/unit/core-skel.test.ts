// The protocol core (shared/skel.ts runPlugin) as the spec and the Go skel define it (issue 3, point 5):
// environment, stdin, version negotiation, result printing per version, error JSON.
import * as z from 'zod/mini';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin, type CmdArgs, type Env, type Plugin, type Verb } from '../../shared/cni/skel';
import { asCniError, CniError, errorMessage, wrapError } from '../../shared/cni/errors';
import { formatResult, type Result } from '../../shared/cni/types';
import { parseConfig } from '../../shared/cni/config';
import { SUPPORTED_VERSIONS } from '../../shared/cni/version';
import { jsonSyntaxError } from '../../shared/cni/json';
import { SyscallError } from '../../shared/linux/libc';
import { createLogger, loggerFromEnv, silentLogger, type LogLevel } from '../../shared/log';

const VERSIONS = [...SUPPORTED_VERSIONS];
const ABOUT = 'CNI core-test plugin v0';

const RESULT: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'eth0', mac: '0a:58:c6:12:00:05', mtu: 1400, sandbox: '/var/run/netns/x', socketPath: '/run/s.sock', pciID: '0000:00:1f.6' }],
  ips: [
    { interface: 0, address: '198.18.0.5/24', gateway: '198.18.0.1' },
    { interface: 0, address: 'fd00:1::5/64', gateway: 'fd00:1::1' },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '198.18.0.1' },
    { dst: 'fd00:2::/64', gw: 'fd00:1::1', mtu: 1300, advmss: 1240, priority: 5, table: 100, scope: 0 },
  ],
  dns: { nameservers: ['198.18.0.53'], search: ['a.test'] },
};

/** A small plugin recording what the core handed it; `behave` lets a test make a verb fail. */
function testPlugin(behave: Partial<Record<'add' | 'del' | 'check' | 'gc' | 'status', (a: CmdArgs) => unknown>> = {}, withGcStatus = true) {
  const calls: Array<{ verb: string; args: CmdArgs }> = [];
  const rec = (verb: 'add' | 'del' | 'check' | 'gc' | 'status') => async (a: CmdArgs) => {
    calls.push({ verb, args: a });
    const b = behave[verb];
    return b ? b(a) : undefined;
  };
  const plugin: Plugin = {
    name: 'core-test',
    about: ABOUT,
    funcs: {
      add: async (a) => {
        calls.push({ verb: 'add', args: a });
        return behave.add ? ((await behave.add(a)) as Result) : RESULT;
      },
      del: rec('del') as (a: CmdArgs) => Promise<void>,
      check: rec('check') as (a: CmdArgs) => Promise<void>,
      ...(withGcStatus ? { gc: rec('gc') as (a: CmdArgs) => Promise<void>, status: rec('status') as (a: CmdArgs) => Promise<void> } : {}),
    },
  };
  return { plugin, calls };
}

const FULL_ENV = {
  CNI_CONTAINERID: 'ctr-1',
  CNI_NETNS: '/var/run/netns/core-does-not-exist',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
};

function envFor(command: string | undefined, over: Record<string, string | undefined> = {}): Env {
  return { ...(command === undefined ? {} : { CNI_COMMAND: command }), ...FULL_ENV, ...over };
}

const conf = (o: Record<string, unknown> = {}) => Buffer.from(JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'core-test', ...o }));

async function run(p: Plugin, env: Env, stdin: Buffer | (() => Buffer) = conf()) {
  const out = await runPlugin(p, env, typeof stdin === 'function' ? stdin : () => stdin);
  const json = out.stdout ? JSON.parse(out.stdout) : undefined;
  return { ...out, json };
}

/** Asserts the exact error envelope: exit 1, {cniVersion, code, msg[, details]} on stdout, nothing on stderr. */
function expectError(o: Awaited<ReturnType<typeof run>>, code: number, msg: string | RegExp, cniVersion = '1.1.0') {
  expect(o.exitCode).toBe(1);
  expect(o.stderr).toBe('');
  expect(o.stdout.endsWith('\n')).toBe(true);
  expect(o.json.code).toBe(code);
  if (typeof msg === 'string') expect(o.json.msg).toBe(msg);
  else expect(o.json.msg).toMatch(msg);
  expect(o.json.cniVersion).toBe(cniVersion);
  expect(Object.keys(o.json).filter((k) => !['cniVersion', 'code', 'msg', 'details'].includes(k))).toEqual([]);
  expect(o.stdout).not.toMatch(/\n\s+at /); // never a stack trace
}

describe('CNI_COMMAND', () => {
  test.each(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'])('%s reaches its handler', async (cmd) => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor(cmd));
    expect(o.exitCode).toBe(0);
    expect(calls.map((c) => c.verb)).toEqual([cmd.toLowerCase()]);
    expect(o.stdout).toBe(cmd === 'ADD' ? JSON.stringify(formatResult(RESULT, '1.1.0'), null, 4) + '\n' : '');
    expect(o.stderr).toBe('');
  });

  test.each(['FOO', 'add', 'Add', ' ADD', 'ADD ', 'VERSIONS', 'DELETE'])('unknown %j → code 4 naming it', async (cmd) => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor(cmd));
    expectError(o, 4, `unknown CNI_COMMAND: ${cmd}`);
    expect(o.json.details).toBe('expected one of ADD, DEL, CHECK, VERSION, GC, STATUS');
    expect(calls).toEqual([]);
  });
});

describe('bare invocation (no CNI_COMMAND)', () => {
  test.each([
    ['unset', undefined],
    ['empty', ''],
  ])('%s: about + protocol versions on stderr, exit 0, stdin untouched', async (_label, cmd) => {
    const { plugin, calls } = testPlugin();
    const o = await runPlugin(plugin, envFor(cmd), () => {
      throw new Error('stdin must not be read');
    });
    expect(o).toEqual({
      exitCode: 0,
      stdout: '',
      // From the sources there is no build ID: the version line says "dev".
      stderr: `core-test: cnikit dev\n${ABOUT}\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n`,
    });
    expect(calls).toEqual([]);
  });
});

describe('VERSION', () => {
  const EXPECTED = '{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n';
  test.each([
    ['no other env', { CNI_COMMAND: 'VERSION' }],
    ['full env', envFor('VERSION')],
  ])('prints every supported version (%s), ignores stdin', async (_l, env) => {
    const { plugin, calls } = testPlugin();
    const o = await runPlugin(plugin, env, () => {
      throw new Error('stdin must not be read');
    });
    expect(o).toEqual({ exitCode: 0, stdout: EXPECTED, stderr: '' });
    expect(calls).toEqual([]);
  });
  test.each(VERSIONS)('same answer whatever the config asks (%s)', async (v) => {
    const o = await run(testPlugin().plugin, { CNI_COMMAND: 'VERSION' }, Buffer.from(JSON.stringify({ cniVersion: v })));
    expect(o.stdout).toBe(EXPECTED);
  });
});

describe('required environment variables (code 4)', () => {
  // The Go skel's table, plus GC/STATUS (spec 1.1.0) which need only CNI_PATH.
  const REQUIRED: Record<Exclude<Verb, 'VERSION'>, string[]> = {
    ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
    CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
    DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
    GC: ['CNI_PATH'],
    STATUS: ['CNI_PATH'],
  };
  const ALL = ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'];
  const rows: Array<[string, string, boolean]> = [];
  for (const [verb, req] of Object.entries(REQUIRED)) for (const k of ALL) rows.push([verb, k, req.includes(k)]);

  test.each(rows)('%s without %s → required: %s', async (verb, key, required) => {
    for (const absent of [undefined, '']) {
      const { plugin, calls } = testPlugin();
      const o = await run(plugin, envFor(verb, { [key]: absent }));
      if (required) {
        expectError(o, 4, `required env variables [${key}] missing`);
        expect(calls).toEqual([]);
      } else {
        expect(o.exitCode).toBe(0);
        expect(calls).toHaveLength(1);
      }
    }
  });

  test('every missing variable is named, in order', async () => {
    const o = await run(testPlugin().plugin, { CNI_COMMAND: 'ADD' });
    expectError(o, 4, 'required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing');
  });

  test('env is checked before stdin is read', async () => {
    const o = await run(testPlugin().plugin, { CNI_COMMAND: 'DEL' }, () => {
      throw new Error('stdin must not be read');
    });
    expectError(o, 4, 'required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing');
  });

  test('DEL without CNI_NETNS hands the handler an empty netns (IPAM must still be released)', async () => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor('DEL', { CNI_NETNS: undefined }));
    expect(o.exitCode).toBe(0);
    expect(calls[0]!.args.netns).toBe('');
  });
});

describe('CNI_CONTAINERID', () => {
  test.each(['a', 'A', '0', 'ctr-1', 'a_b.c-d', 'f'.repeat(64), 'K8S.pod_1-x'])('%j accepted', async (id) => {
    for (const verb of ['ADD', 'DEL', 'CHECK']) {
      const { plugin, calls } = testPlugin();
      const o = await run(plugin, envFor(verb, { CNI_CONTAINERID: id }));
      expect(o.exitCode).toBe(0);
      expect(calls[0]!.args.containerID).toBe(id);
    }
  });
  test.each(['-abc', '_a', '.a', 'a b', 'a/b', '../x', 'a;b', 'a:b', 'ä', 'a\n', 'a\tb', '*'])('%j → code 4 naming it', async (id) => {
    for (const verb of ['ADD', 'DEL', 'CHECK']) {
      const { plugin, calls } = testPlugin();
      const o = await run(plugin, envFor(verb, { CNI_CONTAINERID: id }));
      expectError(o, 4, `invalid characters in CNI_CONTAINERID ${JSON.stringify(id)}`);
      expect(o.json.details).toBe('allowed: ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$');
      expect(calls).toEqual([]);
    }
  });
  test('GC and STATUS do not look at it', async () => {
    for (const verb of ['GC', 'STATUS']) {
      const o = await run(testPlugin().plugin, envFor(verb, { CNI_CONTAINERID: '../../etc', CNI_IFNAME: 'a/b' }));
      expect(o.exitCode).toBe(0);
    }
  });
});

describe('CNI_IFNAME', () => {
  test.each(['eth0', 'e', 'a'.repeat(15), 'net1.100', '...', 'eth-0_1', 'éééééíí' /* 14 bytes */])('%j accepted', async (name) => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor('ADD', { CNI_IFNAME: name }));
    expect(o.exitCode).toBe(0);
    expect(calls[0]!.args.ifName).toBe(name);
  });
  test.each([
    ['a'.repeat(16), 'interface name is too long (at most 15 bytes)'],
    ['éééééééé', 'interface name is too long (at most 15 bytes)'], // 8 characters, 16 bytes: IFNAMSIZ counts bytes
    ['.', 'interface name is . or ..'],
    ['..', 'interface name is . or ..'],
    ['a/b', 'interface name contains / or : or whitespace characters'],
    ['a:b', 'interface name contains / or : or whitespace characters'],
    ['a b', 'interface name contains / or : or whitespace characters'],
    ['a\tb', 'interface name contains / or : or whitespace characters'],
    ['eth0\n', 'interface name contains / or : or whitespace characters'],
    ['a\u00a0b', 'interface name contains / or : or whitespace characters'],
    ['a\u0085b', 'interface name contains / or : or whitespace characters'], // Go's unicode.IsSpace
  ])('%j → code 4: %s', async (name, why) => {
    for (const verb of ['ADD', 'DEL', 'CHECK']) {
      const { plugin, calls } = testPlugin();
      const o = await run(plugin, envFor(verb, { CNI_IFNAME: name }));
      expectError(o, 4, `invalid CNI_IFNAME ${JSON.stringify(name)}: ${why}`);
      expect(calls).toEqual([]);
    }
  });
});

describe('CNI_ARGS, CNI_PATH and the environment reach the handler unchanged', () => {
  test('CmdArgs fields', async () => {
    const { plugin, calls } = testPlugin();
    const env = envFor('ADD', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p', CNI_PATH: '/a:/b', OTHER: 'x' });
    const stdin = conf({ cniVersion: '0.4.0', ipam: { type: 'host-local' } });
    await run(plugin, env, stdin);
    const a = calls[0]!.args;
    expect(a).toMatchObject({ command: 'ADD', containerID: 'ctr-1', netns: FULL_ENV.CNI_NETNS, ifName: 'eth0', args: 'IgnoreUnknown=1;K8S_POD_NAME=p', path: '/a:/b', cniVersion: '0.4.0' });
    expect(a.stdinData.equals(stdin)).toBe(true);
    expect(a.conf).toEqual(JSON.parse(stdin.toString()));
    expect(a.env).toEqual(env);
  });
});

describe('stdin', () => {
  test('a read failure → code 5', async () => {
    const o = await run(testPlugin().plugin, envFor('ADD'), () => {
      throw Object.assign(new Error('EISDIR: illegal operation on a directory, read'), { code: 'EISDIR' });
    });
    expectError(o, 5, 'error reading from stdin: EISDIR: illegal operation on a directory, read');
  });
  test.each([
    ['empty', ''],
    ['truncated', '{"cniVersion":"1.0.0","name":'],
    ['not JSON', 'cniVersion=1.0.0'],
    ['trailing garbage', '{"name":"n"} x'],
  ])('%s → code 6', async (_l, text) => {
    for (const verb of ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']) {
      const { plugin, calls } = testPlugin();
      const o = await run(plugin, envFor(verb), Buffer.from(text));
      expectError(o, 6, 'error decoding network config from stdin');
      expect(typeof o.json.details).toBe('string');
      expect(calls).toEqual([]);
    }
  });
  test.each([['null'], ['[]'], ['"x"'], ['42'], ['true']])('JSON %s that is not an object → code 6', async (text) => {
    const o = await run(testPlugin().plugin, envFor('ADD'), Buffer.from(text));
    expectError(o, 6, 'error decoding network config from stdin');
    expect(o.json.details).toBe('expected a JSON object');
  });
  test.each([
    [{}, 'missing network name'],
    [{ name: '' }, 'missing network name'],
    [{ name: null }, 'missing network name'],
  ])('%j → code 7 %s', async (over, msg) => {
    for (const verb of ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']) {
      const { plugin, calls } = testPlugin();
      const c = { cniVersion: '1.1.0', type: 'core-test', ...over };
      const o = await run(plugin, envFor(verb), Buffer.from(JSON.stringify(c)));
      expectError(o, 7, msg);
      expect(calls).toEqual([]);
    }
  });
  test.each(['-net', 'my net', '../net', 'a/b', 'ä', 5, true, ['n'], { n: 1 }])('name %j → code 7 naming it', async (name) => {
    const o = await run(testPlugin().plugin, envFor('ADD'), conf({ name }));
    expectError(o, 7, `invalid network name ${JSON.stringify(name)}`);
  });
});

describe('versions', () => {
  test.each(VERSIONS)('ADD and DEL work with config %s; ADD prints that version', async (v) => {
    const { plugin } = testPlugin();
    const add = await run(plugin, envFor('ADD'), conf({ cniVersion: v }));
    expect(add.exitCode).toBe(0);
    expect(add.json).toEqual(formatResult(RESULT, v));
    expect(add.json.cniVersion).toBe(v);
    const del = await run(plugin, envFor('DEL'), conf({ cniVersion: v }));
    expect(del).toMatchObject({ exitCode: 0, stdout: '' });
  });

  test.each(VERSIONS)('CHECK needs 0.4.0 or later (%s)', async (v) => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor('CHECK'), conf({ cniVersion: v }));
    if (['0.4.0', '1.0.0', '1.1.0'].includes(v)) {
      expect(o).toMatchObject({ exitCode: 0, stdout: '' });
      expect(calls[0]!.args.cniVersion).toBe(v);
    } else {
      expectError(o, 1, 'config version does not allow CHECK', v);
      expect(o.json.details).toBe(`config is "${v}", CHECK needs 0.4.0 or later`);
      expect(calls).toEqual([]);
    }
  });

  test.each(VERSIONS.flatMap((v) => [['GC', v] as const, ['STATUS', v] as const]))('%s needs 1.1.0 (%s)', async (verb, v) => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor(verb), conf({ cniVersion: v }));
    if (v === '1.1.0') {
      expect(o).toMatchObject({ exitCode: 0, stdout: '' });
      expect(calls).toHaveLength(1);
    } else {
      expectError(o, 1, `config version does not allow ${verb}`, v);
      expect(calls).toEqual([]);
    }
  });

  test.each(['0.5.0', '1.2.0', '2.0.0', '0.0.1', '1.0', 'v1.0.0', '1.0.0-rc1', 'latest'])('unsupported %j → code 1 listing what we support', async (v) => {
    for (const verb of ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']) {
      const { plugin, calls } = testPlugin();
      const o = await run(plugin, envFor(verb), conf({ cniVersion: v }));
      // The error echoes the config's version (spec: "the same value as provided by the configuration").
      expectError(o, 1, 'incompatible CNI versions', v);
      expect(o.json.details).toBe(`config is "${v}", plugin supports ["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]`);
      expect(calls).toEqual([]);
    }
  });

  test.each([[{}], [{ cniVersion: '' }], [{ cniVersion: null }]])('config %j without a version means 0.1.0', async (over) => {
    const { plugin, calls } = testPlugin();
    const c: Record<string, unknown> = { name: 'net1', type: 'core-test', ...over };
    const o = await run(plugin, envFor('ADD'), Buffer.from(JSON.stringify(c)));
    expect(o.exitCode).toBe(0);
    expect(calls[0]!.args.cniVersion).toBe('0.1.0');
    expect(o.json).toEqual({ cniVersion: '0.1.0', ip4: { ip: '198.18.0.5/24', gateway: '198.18.0.1', routes: [{ dst: '0.0.0.0/0', gw: '198.18.0.1' }] }, ip6: { ip: 'fd00:1::5/64', gateway: 'fd00:1::1', routes: [{ dst: 'fd00:2::/64', gw: 'fd00:1::1' }] }, dns: { nameservers: ['198.18.0.53'], search: ['a.test'] } });
    // ...so CHECK is refused for it.
    expectError(await run(plugin, envFor('CHECK'), Buffer.from(JSON.stringify(c))), 1, 'config version does not allow CHECK', '0.1.0');
  });

  test.each([1, 1.1, true, ['1.0.0'], { v: 1 }])('cniVersion %j that is not a string → code 6', async (v) => {
    const o = await run(testPlugin().plugin, envFor('ADD'), conf({ cniVersion: v }));
    expectError(o, 6, `invalid cniVersion ${JSON.stringify(v)}: expected a string`);
  });
});

describe('results: the plugin builds 1.1.0, the core prints the config version', () => {
  test('ADD output is indented JSON ending in a newline', async () => {
    const o = await run(testPlugin().plugin, envFor('ADD'), conf({ cniVersion: '1.0.0' }));
    expect(o.stdout).toBe(JSON.stringify(formatResult(RESULT, '1.0.0'), null, 4) + '\n');
  });
  test.each(VERSIONS)('an L2-only result (no IP) at %s', async (v) => {
    const l2: Result = { cniVersion: '1.1.0', interfaces: [{ name: 'br0', mac: '0a:58:c6:12:00:01' }] };
    const o = await run(testPlugin({ add: () => l2 }).plugin, envFor('ADD'), conf({ cniVersion: v }));
    if (v === '0.1.0' || v === '0.2.0') {
      // The Go converter cannot express it in 0.1/0.2 and the Go skel reports that as code 999.
      expectError(o, 999, 'cannot convert: no valid IP addresses', v);
    } else {
      expect(o.exitCode).toBe(0);
      expect(o.json.interfaces).toEqual([{ name: 'br0', mac: '0a:58:c6:12:00:01' }]);
      expect(o.json.ips).toBeUndefined();
    }
  });
});

describe('errors from handlers', () => {
  test.each(VERSIONS)('a CniError keeps code, msg, details; cniVersion is the config version (%s)', async (v) => {
    const p = testPlugin({ add: () => { throw new CniError(11, 'try again later', 'lock held by 123'); } }).plugin;
    const o = await run(p, envFor('ADD'), conf({ cniVersion: v }));
    expectError(o, 11, 'try again later', v);
    expect(o.json.details).toBe('lock held by 123');
  });
  test('no details key when there are none', async () => {
    const p = testPlugin({ del: () => { throw new CniError(7, 'bad'); } }).plugin;
    const o = await run(p, envFor('DEL'));
    expect(o.json).toEqual({ cniVersion: '1.1.0', code: 7, msg: 'bad' });
  });
  test.each(['add', 'del', 'check', 'gc', 'status'] as const)('an unexpected exception in %s → code 999, one line, no stack', async (verb) => {
    const boom = () => {
      const e = new Error('kaboom: first line\nsecond line');
      e.stack = 'Error: kaboom\n    at secret (/x.ts:1:1)';
      throw e;
    };
    const p = testPlugin({ [verb]: boom }).plugin;
    const o = await run(p, envFor(verb.toUpperCase()));
    expectError(o, 999, 'kaboom: first line');
    expect(o.stdout).not.toContain('secret');
    expect(o.stdout).not.toContain('second line');
  });
  test.each([
    ['a string', 'just a string', 'just a string'],
    ['an empty Error', new Error(''), 'internal error'],
    ['a TypeError', new TypeError("Cannot read properties of undefined (reading 'x')"), 'internal error (TypeError); CNIKIT_LOG=debug logs where'],
    ['a number', 42, '42'],
  ])('throwing %s → code 999 %j', async (_l, thrown, msg) => {
    const p = testPlugin({ add: () => { throw thrown; } }).plugin;
    expectError(await run(p, envFor('ADD')), 999, msg);
  });
  test('a rejected promise is caught the same way', async () => {
    const p = testPlugin({ check: () => Promise.reject(new RangeError('out of range')) }).plugin;
    expectError(await run(p, envFor('CHECK')), 999, 'internal error (RangeError); CNIKIT_LOG=debug logs where');
  });

  // Config validation through parseConfig, as a plugin's add would do it.
  const Schema = z.strictObject({
    cniVersion: z.optional(z.string()),
    name: z.string(),
    type: z.string(),
    mtu: z.optional(z.number().check(z.int(), z.minimum(576))),
    mode: z.optional(z.enum(['bridge', 'l2'])),
  });
  const parsing = testPlugin({ add: (a) => { parseConfig(Schema, a.conf); return RESULT; } }).plugin;
  test.each([
    [{ mtu: 'big' }, 7, /^invalid config: field "mtu" = "big": /],
    [{ mtu: 100 }, 7, /^invalid config: field "mtu" = 100: /],
    [{ mode: 'x' }, 7, /^invalid config: field "mode" = "x": /],
    [{ bogus: [1] }, 2, /^unsupported field "bogus" = \[1\]$/],
  ])('config %j → code %i naming field and value', async (over, code, msg) => {
    expectError(await run(parsing, envFor('ADD'), conf(over)), code, msg);
  });
});

describe('GC and STATUS without handlers succeed silently (Go skel, nil handler)', () => {
  test.each(['GC', 'STATUS'])('%s', async (verb) => {
    const o = await run(testPlugin({}, false).plugin, envFor(verb));
    expect(o).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
  });
});

describe('CNI_NETNS that is our own netns → code 8 (checked before the handler)', () => {
  test.each(['ADD', 'CHECK', 'DEL'])('%s', async (verb) => {
    const { plugin, calls } = testPlugin();
    const o = await run(plugin, envFor(verb, { CNI_NETNS: '/proc/self/ns/net' }));
    expectError(o, 8, 'CNI_NETNS "/proc/self/ns/net" is the plugin\'s own network namespace');
    expect(calls).toEqual([]);
  });
  test.each(['1', 'true', 'TRUE'])('CNI_NETNS_OVERRIDE=%s skips it', async (ov) => {
    const o = await run(testPlugin().plugin, envFor('ADD', { CNI_NETNS: '/proc/self/ns/net', CNI_NETNS_OVERRIDE: ov }));
    expect(o.exitCode).toBe(0);
  });
});

describe('stdin is only needed once and is checked in order', () => {
  test('config errors come after env errors and stdin errors', async () => {
    // bad env wins over bad JSON
    expectError(await run(testPlugin().plugin, envFor('ADD', { CNI_IFNAME: undefined }), Buffer.from('{')), 4, 'required env variables [CNI_IFNAME] missing');
    // bad JSON wins over a bad container ID
    expectError(await run(testPlugin().plugin, envFor('ADD', { CNI_CONTAINERID: '-x' }), Buffer.from('{')), 6, 'error decoding network config from stdin');
  });
});

describe('JSON faults in our words (jsonSyntaxError)', () => {
  test.each([
    ['', 'empty input'],
    [' \n\t', 'empty input'],
    ['{', 'unexpected end of input at line 1, column 2'],
    ['{"a":1,}', "expected a quoted member name, found '}' at line 1, column 8"],
    ['{"a" 1}', "expected ':', found '1' at line 1, column 6"],
    ['{"a":1 "b":2}', "expected ',' or '}', found '\"' at line 1, column 8"],
    ['[1,2', 'unexpected end of input at line 1, column 5'],
    ['[1 2]', "expected ',' or ']', found '2' at line 1, column 4"],
    ['{"a":\n  tru}', "unexpected 't' at line 2, column 3"],
    ['{"a":"x', 'unterminated string at line 1, column 8'],
    ['{"a":"tab\there"}', 'unescaped control character U+0009 in a string at line 1, column 10'],
    ['{"a":"\\q"}', 'invalid escape in a string at line 1, column 8'],
    ['{"a":"\\u12G4"}', 'invalid \\u escape in a string at line 1, column 8'],
    ['{"a":01}', "expected ',' or '}', found '1' at line 1, column 7"],
    ['{"a":-}', 'invalid number at line 1, column 6'],
    ['{"a":1.}', "expected ',' or '}', found '.' at line 1, column 7"],
    ['{"a":NaN}', "unexpected 'N' at line 1, column 6"],
    ["{'a':1}", "expected a quoted member name, found ''' at line 1, column 2"],
    ['{"é":ü}', 'unexpected character U+00FC at line 1, column 6'],
    ['{} x', "unexpected 'x' after the end of the JSON value at line 1, column 4"],
    ['['.repeat(600), 'nested deeper than 512 levels at line 1, column 513'],
  ])('%j → %s', (text, want) => {
    expect(() => JSON.parse(text)).toThrow(); // each case is one the parser refuses
    expect(jsonSyntaxError(text)).toBe(want);
  });
  test('a text the parser accepts has no fault to name', () => {
    expect(jsonSyntaxError('{"a":[1,-2.5e3,true,false,null,"\\u00e9\\n"]}')).toBe('not valid JSON');
  });
  test("the CNI error carries our description, not the parser's message", async () => {
    const o = await run(testPlugin().plugin, envFor('ADD'), Buffer.from('{"name":"n",}'));
    expectError(o, 6, 'error decoding network config from stdin');
    expect(o.json.details).toBe("invalid JSON: expected a quoted member name, found '}' at line 1, column 13");
  });
});

describe('Logger (shared/log.ts)', () => {
  const capture = (level: LogLevel | 'off') => {
    const lines: string[] = [];
    let t = 0;
    const log = createLogger({ level, write: (l) => lines.push(l), name: 'p[1]', now: () => (t += 2.5) });
    return { log, lines };
  };
  test('writes its level and the more severe ones, one tagged line each', () => {
    const { log, lines } = capture('info');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('two\nlines');
    expect(lines.map((l) => l.replace(/^\S+ /, ''))).toEqual(['p[1] info: i\n', 'p[1] warn: w\n', 'p[1] error: two\\nlines\n']);
    expect(log.enabled('debug')).toBe(false);
    expect(log.enabled('info')).toBe(true);
  });
  test('child scopes nest', () => {
    const { log, lines } = capture('debug');
    log.child('ADD').child('ipam').debug('x');
    expect(lines[0]).toMatch(/^\S+Z p\[1\] ADD ipam debug: x\n$/);
  });
  test('step times sync and async work, and failures, at debug; rethrows unchanged', async () => {
    const { log, lines } = capture('debug');
    expect(log.step('sync', () => 7)).toBe(7);
    await expect(log.step('async', async () => 8)).resolves.toBe(8);
    const boom = new Error('boom');
    expect(() =>
      log.step('bad', () => {
        throw boom;
      }),
    ).toThrow(boom);
    await expect(log.step('bad-async', () => Promise.reject(boom))).rejects.toBe(boom);
    expect(lines.map((l) => l.replace(/^\S+ p\[1\] debug: /, ''))).toEqual(['sync: 2.5 ms\n', 'async: 2.5 ms\n', 'bad: failed after 2.5 ms\n', 'bad-async: failed after 2.5 ms\n']);
  });
  test('off: step only runs the function and nothing is written', () => {
    const { log, lines } = capture('off');
    expect(log.step('x', () => 1)).toBe(1);
    log.error('e');
    expect(lines).toEqual([]);
    expect(silentLogger.enabled('error')).toBe(false);
  });
  test.each([
    [undefined, 'warn'],
    ['debug', 'debug'],
    ['DEBUG', 'debug'],
    ['off', 'off'],
    ['verbose', 'warn'],
  ] as const)('CNIKIT_LOG=%s → level %s', (v, want) => {
    const log = loggerFromEnv({ CNIKIT_LOG: v }, 'x');
    const levels = (['error', 'warn', 'info', 'debug'] as const).filter((l) => log.enabled(l));
    expect(levels).toEqual({ off: [], warn: ['error', 'warn'], debug: ['error', 'warn', 'info', 'debug'] }[want]);
  });
  test('runPlugin hands the handler a logger scoped to the verb and logs the steps through it', async () => {
    const { log, lines } = capture('debug');
    const { plugin, calls } = testPlugin({ del: (a) => a.log.info('from the handler') });
    const o = await runPlugin(plugin, envFor('DEL'), () => conf(), { log });
    expect(o.exitCode).toBe(0);
    expect(calls).toHaveLength(1);
    const text = lines.map((l) => l.replace(/^\S+ /, ''));
    expect(text[0]).toMatch(/^p\[1\] DEL debug: containerID="ctr-1" netns="\/var\/run\/netns\/core-does-not-exist" ifName="eth0" stdin \d+ bytes, \d+\.\d ms after exec\n$/);
    expect(text).toContain('p[1] DEL info: from the handler\n');
    expect(text).toContainEqual(expect.stringMatching(/^p\[1\] DEL debug: DEL: \d+\.\d ms\n$/));
  });
  test('an engine error: the CNI error says internal error, the debug log has the original and where', async () => {
    const { log, lines } = capture('debug');
    const p = testPlugin({ add: () => (null as unknown as { family: string }).family as unknown as Result }).plugin;
    const o = await runPlugin(p, envFor('ADD'), () => conf(), { log });
    expect(JSON.parse(o.stdout)).toEqual({ cniVersion: '1.1.0', code: 999, msg: 'internal error (TypeError); CNIKIT_LOG=debug logs where' });
    expect(lines.join('')).toMatch(/ADD debug: unexpected TypeError: Cannot read properties of null \(reading 'family'\)\\n\s+at /);
  });
  test('an error of our own kinds underneath (a kernel refusal: SyscallError) is logged as the cause, not as unexpected', async () => {
    const { log, lines } = capture('debug');
    const p = testPlugin({
      add: () => {
        throw wrapError(new SyscallError('setns', 1), 'entering the pod netns');
      },
    }).plugin;
    const o = await runPlugin(p, envFor('ADD'), () => conf(), { log });
    expect(JSON.parse(o.stdout).msg).toBe('entering the pod netns: setns: operation not permitted');
    expect(lines.join('')).toMatch(/ADD debug: cause SyscallError: setns: operation not permitted\\n\s+at /);
    expect(lines.join('')).not.toContain('unexpected');
  });
  test('an engine error wrapped with context (wrapError) is logged through the cause chain too', async () => {
    const { log, lines } = capture('debug');
    const p = testPlugin({
      add: () => {
        try {
          return (null as unknown as { family: Result }).family;
        } catch (e) {
          throw wrapError(e, 'failed to allocate for range 0');
        }
      },
    }).plugin;
    const o = await runPlugin(p, envFor('ADD'), () => conf(), { log });
    expect(JSON.parse(o.stdout).msg).toBe('failed to allocate for range 0: internal error (TypeError); CNIKIT_LOG=debug logs where');
    expect(lines.join('')).toMatch(/ADD debug: unexpected TypeError: Cannot read properties of null \(reading 'family'\)/);
  });
});

describe('errorMessage: any thrown value as one line of our words', () => {
  test.each([
    [new TypeError("null is not an object (evaluating 'e.family')"), 'internal error (TypeError); CNIKIT_LOG=debug logs where'],
    [new RangeError('Maximum call stack size exceeded'), 'internal error (RangeError); CNIKIT_LOG=debug logs where'],
    [new Error('EACCES: permission denied\nmore'), 'EACCES: permission denied'],
    [new CniError(7, 'bad field'), 'bad field'],
    ['a string', 'a string'],
    [new Error(''), 'internal error'],
  ])('%p → %j', (e, want) => {
    expect(errorMessage(e)).toBe(want);
  });
});

describe('asCniError: the code of a failure that is not a CniError', () => {
  test("a transient failure underneath (kind 'try-again': xtables lock held, EAGAIN, a link wait that ran out) is code 11, anything else 999", () => {
    const lockHeld = Object.assign(new Error('iptables-restore: Another app is currently holding the xtables lock'), { kind: 'try-again' });
    expect(asCniError(lockHeld)).toMatchObject({ code: 11, message: lockHeld.message, cause: lockHeld });
    expect(asCniError(Object.assign(new Error('no such device'), { kind: 'not-found' }))).toMatchObject({ code: 999 });
    expect(asCniError(new Error('plain'))).toMatchObject({ code: 999 });
    expect(asCniError(null)).toMatchObject({ code: 999 });
    expect(wrapError(lockHeld, 'portmap ADD')).toMatchObject({ code: 11, message: `portmap ADD: ${lockHeld.message}` });
  });
});

describe('loggerFromEnv: one fd per log file for the whole process', () => {
  test('loggers made per call (a long-running caller) share the file: no fd per logger, every line lands', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnikit-log-'));
    const file = join(dir, 'plugins.log');
    const fds = (): number => readdirSync('/proc/self/fd').length;
    try {
      loggerFromEnv({ CNIKIT_LOG: 'info', CNIKIT_LOG_FILE: file }, 'warmup').info('first');
      const before = fds();
      for (let i = 0; i < 20; i++) loggerFromEnv({ CNIKIT_LOG: 'info', CNIKIT_LOG_FILE: file }, `call${i}`).info(`line ${i}`);
      expect(fds()).toBe(before);
      expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(21);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
