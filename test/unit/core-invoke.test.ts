// Delegation to IPAM plugins (shared/invoke.ts; spec §4, Go pkg/invoke): find `type` in CNI_PATH,
// exec it with the same env and the complete stdin config, forward its stderr, return its result or error.
// The delegates are small shell scripts in a temp dir that record what they were given.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { basename, join as pjoin } from 'node:path';
import { delegateAdd, delegateCheck, delegateDel, delegateGC, delegateStatus, findInPath, inProcessExecutor } from '../../shared/cni/invoke';
import { processExecutor, type Executor } from '../../shared/cni/exec';
import { isOwnExecutable } from '../../shared/self';
import { CniError } from '../../shared/cni/errors';
import type { CmdArgs, Plugin } from '../../shared/cni/skel';
import { silentLogger } from '../../shared/log';

let dir: string; // CNI_PATH dir 1
let dir2: string; // CNI_PATH dir 2
let rec: string; // where fakes record env/stdin/stderr target

function script(d: string, name: string, body: string, mode = 0o755): void {
  const f = join(d, name);
  writeFileSync(f, `#!/bin/sh\n${body}\n`);
  chmodSync(f, mode);
}

// Every fake records its environment, stdin and what its fd 2 is, under $REC/<name>.*
const RECORD = 'env > "$REC/$(basename "$0").env"; cat > "$REC/$(basename "$0").stdin"; readlink /proc/self/fd/2 > "$REC/$(basename "$0").fd2"';

beforeAll(() => {
  const root = mkdtempSync(join(tmpdir(), 'core-invoke-'));
  dir = join(root, 'bin1');
  dir2 = join(root, 'bin2');
  rec = join(root, 'rec');
  for (const d of [dir, dir2, rec]) mkdirSync(d);
  const v1 = JSON.stringify({ cniVersion: '1.0.0', ips: [{ address: '198.18.0.7/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['198.18.0.53'] } });
  script(dir, 'ok-ipam', `${RECORD}\necho "ok-ipam says hi" >&2\necho '${v1}'`);
  // An older IPAM answering a 1.0.0 config in 0.2.0 shape, naming its version (libcni honours it).
  script(dir, 'old-ipam', `${RECORD}\necho '{"cniVersion":"0.2.0","ip4":{"ip":"198.18.0.8/24","gateway":"198.18.0.1","routes":[{"dst":"0.0.0.0/0"}]}}'`);
  // No cniVersion in the result: it is read in the config's version.
  script(dir, 'unversioned-ipam', `${RECORD}\necho '{"ips":[{"version":"4","address":"198.18.0.9/24"}]}'`);
  script(dir, 'err-ipam', `${RECORD}\necho '{"cniVersion":"1.0.0","code":11,"msg":"no free address","details":"range 198.18.0.0/24 full"}'\nexit 1`);
  script(dir, 'err-nodetails', `${RECORD}\necho '{"code":7,"msg":"bad ipam config"}'\nexit 3`);
  script(dir, 'garbage-fail', `${RECORD}\necho 'panic: runtime error'\nexit 2`);
  script(dir, 'garbage-ok', `${RECORD}\necho 'not json at all'`);
  script(dir, 'bad-result', `${RECORD}\necho '{"cniVersion":"1.0.0","ips":[{"address":"nonsense"}]}'`);
  script(dir, 'silent-fail', `${RECORD}\nexit 1`);
  script(dir, 'silent-ok', RECORD);
  script(dir, 'no-stdin-read', 'exit 0'); // exits without reading stdin: no EPIPE may escape
  script(dir, 'quiet-ok', `${RECORD}\nexit 0`);
  // lookup order and what counts as a plugin
  script(dir, 'not-exec', 'echo {}', 0o644);
  script(dir2, 'not-exec', `${RECORD}\necho '{"cniVersion":"1.0.0"}'`);
  mkdirSync(join(dir, 'a-dir'));
  script(dir2, 'a-dir', `${RECORD}\necho '{"cniVersion":"1.0.0"}'`);
  script(dir2, 'ok-ipam', 'echo should-not-run >&2; exit 9'); // shadowed by dir/ok-ipam
  // our "own executable" under another name (process.execPath is node here)
  symlinkSync(process.execPath, join(dir, 'self-ipam'));
});

afterAll(() => {
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const CONF = { cniVersion: '1.0.0', name: 'net1', type: 'bridge', bridge: 'cni0', ipam: { type: 'ok-ipam', subnet: '198.18.0.0/24' } };

function cmdArgs(over: Partial<CmdArgs> = {}, conf: Record<string, unknown> = CONF): CmdArgs {
  const stdinData = Buffer.from(JSON.stringify(conf));
  const env = {
    PATH: process.env.PATH,
    REC: rec,
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'ctr-1',
    CNI_NETNS: '/var/run/netns/x',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p',
    CNI_PATH: `${dir}:${dir2}`,
    EXTRA_VAR: 'kept',
  };
  return {
    command: 'ADD',
    containerID: 'ctr-1',
    netns: '/var/run/netns/x',
    ifName: 'eth0',
    args: env.CNI_ARGS,
    path: env.CNI_PATH,
    stdinData,
    conf,
    cniVersion: String(conf.cniVersion),
    env,
    executor: processExecutor,
    log: silentLogger,
    ...over,
  };
}

function recorded(name: string): { env: Record<string, string>; stdin: string; fd2: string } {
  const env: Record<string, string> = {};
  for (const line of readFileSync(join(rec, `${name}.env`), 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return { env, stdin: readFileSync(join(rec, `${name}.stdin`), 'utf8'), fd2: readFileSync(join(rec, `${name}.fd2`), 'utf8').trim() };
}

async function rejection(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a rejection');
}

describe('findInPath', () => {
  test('first match in CNI_PATH order', () => {
    expect(findInPath('ok-ipam', `${dir}:${dir2}`)).toBe(join(dir, 'ok-ipam'));
    expect(findInPath('ok-ipam', `${dir2}:${dir}`)).toBe(join(dir2, 'ok-ipam'));
    expect(findInPath('ok-ipam', `::${dir}:`)).toBe(join(dir, 'ok-ipam')); // empty entries skipped
  });
  test('skips a directory and a non-executable file of that name (Go: regular files only)', () => {
    expect(findInPath('a-dir', `${dir}:${dir2}`)).toBe(join(dir2, 'a-dir'));
    expect(findInPath('not-exec', `${dir}:${dir2}`)).toBe(join(dir2, 'not-exec'));
  });
  test.each([
    ['', 'no plugin name provided'],
    ['a/b', 'invalid plugin name "a/b": must not contain "/"'],
    ['../bin1/ok-ipam', 'invalid plugin name "../bin1/ok-ipam": must not contain "/"'],
    ['/bin/sh', 'invalid plugin name "/bin/sh": must not contain "/"'],
  ])('name %j → code 7: %s', (name, msg) => {
    expect(() => findInPath(name, dir)).toThrow(new CniError(7, msg));
  });
  test.each(['.', '..', 'missing'])('%j is not found → code 7 listing the path', (name) => {
    let e: unknown;
    try {
      findInPath(name, `${dir}:${dir2}`);
    } catch (x) {
      e = x;
    }
    expect(e).toEqual(new CniError(7, `failed to find plugin "${name}" in path [${dir} ${dir2}]`));
    expect((e as CniError).code).toBe(7);
  });
  test('an empty CNI_PATH finds nothing', () => {
    expect(() => findInPath('ok-ipam', '')).toThrow('failed to find plugin "ok-ipam" in path []');
  });
});

describe('delegateAdd', () => {
  test('same env with CNI_COMMAND=ADD, the complete stdin config, stderr forwarded, result upconverted', async () => {
    const a = cmdArgs();
    const r = await delegateAdd('ok-ipam', a);
    expect(r).toEqual({ cniVersion: '1.1.0', ips: [{ address: '198.18.0.7/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['198.18.0.53'] } });
    const got = recorded('ok-ipam');
    for (const [k, v] of Object.entries(a.env)) if (k !== 'PATH') expect([k, got.env[k]]).toEqual([k, v]);
    expect(got.env.CNI_COMMAND).toBe('ADD');
    expect(got.stdin).toBe(a.stdinData.toString()); // the whole config, not just "ipam"
    expect(got.fd2).toBe(readlinkSync('/proc/self/fd/2')); // its stderr is ours: forwarded as is
  });
  test('a result in another version than the config is read in its own version (libcni fixupResultVersion)', async () => {
    expect(await delegateAdd('old-ipam', cmdArgs())).toEqual({ cniVersion: '1.1.0', ips: [{ address: '198.18.0.8/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  });
  test('a result without cniVersion is read in the config version', async () => {
    const conf = { ...CONF, cniVersion: '0.4.0' };
    expect(await delegateAdd('unversioned-ipam', cmdArgs({}, conf))).toEqual({ cniVersion: '1.1.0', ips: [{ address: '198.18.0.9/24' }] });
  });
  test('its error JSON becomes our error: code, msg, details', async () => {
    const e = await rejection(delegateAdd('err-ipam', cmdArgs()));
    expect([e.code, e.message, e.details]).toEqual([11, 'no free address', 'range 198.18.0.0/24 full']);
    const e2 = await rejection(delegateAdd('err-nodetails', cmdArgs()));
    expect([e2.code, e2.message, e2.details]).toEqual([7, 'bad ipam config', '']);
  });
  test('garbage with a failing exit → code 999 naming plugin, exit code and output', async () => {
    const e = await rejection(delegateAdd('garbage-fail', cmdArgs()));
    expect([e.code, e.message]).toEqual([999, 'plugin "garbage-fail" failed (exit code 2) but its output is not a CNI error: "panic: runtime error"']);
  });
  test('nothing with a failing exit → code 999 "no error message"', async () => {
    const e = await rejection(delegateAdd('silent-fail', cmdArgs()));
    expect([e.code, e.message]).toEqual([999, 'plugin "silent-fail" failed with no error message (exit code 1)']);
  });
  test.each([
    ['garbage-ok', 'plugin "garbage-ok" returned unparsable result "not json at all\\n"'],
    ['silent-ok', 'plugin "silent-ok" returned unparsable result ""'],
  ])('%s: success exit without a result → code 6', async (name, msg) => {
    const e = await rejection(delegateAdd(name, cmdArgs()));
    expect([e.code, e.message]).toEqual([6, msg]);
  });
  test('a result with a garbage address → code 6 naming it', async () => {
    const e = await rejection(delegateAdd('bad-result', cmdArgs()));
    expect([e.code, e.message]).toEqual([6, 'failed to parse result: ips[0].address must be an address with a prefix length, got "nonsense"']);
  });
  test('a delegate that is not found → code 7', async () => {
    const e = await rejection(delegateAdd('nope', cmdArgs()));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`failed to find plugin "nope" in path [${dir} ${dir2}]`);
  });
  test('a delegate exiting without reading stdin is not an error by itself', async () => {
    await expect(delegateDel('no-stdin-read', cmdArgs({}, { ...CONF, big: 'x'.repeat(1 << 20) }))).resolves.toBeUndefined();
  });
});

describe('DEL, CHECK, GC and STATUS are delegated with their own CNI_COMMAND', () => {
  test.each([
    ['DEL', delegateDel],
    ['CHECK', delegateCheck],
    ['GC', delegateGC],
    ['STATUS', delegateStatus],
  ] as const)('%s', async (verb, fn) => {
    const a = cmdArgs({ command: verb });
    await expect(fn('quiet-ok', a)).resolves.toBeUndefined();
    const got = recorded('quiet-ok');
    expect(got.env.CNI_COMMAND).toBe(verb);
    expect(got.env.CNI_CONTAINERID).toBe('ctr-1');
    expect(got.stdin).toBe(a.stdinData.toString());
    const e = await rejection(fn('err-ipam', a));
    expect([e.code, e.message]).toEqual([11, 'no free address']);
    expect(recorded('err-ipam').env.CNI_COMMAND).toBe(verb);
    expect((await rejection(fn('silent-fail', a))).code).toBe(999);
  });
});

describe('in-process executor: the binary found is our own executable', () => {
  test('runs the resolved plugin in-process with the delegated env and stdin; other plugins are exec\'d', async () => {
    expect(realpathSync(join(dir, 'self-ipam'))).toBe(realpathSync(process.execPath));
    const seen: CmdArgs[] = [];
    const plugin: Plugin = {
      name: 'self-ipam',
      about: 'in-process',
      funcs: {
        add: (a) => {
          seen.push(a);
          return { cniVersion: '1.1.0', ips: [{ address: '198.18.0.10/24' }] };
        },
        del: (a) => void seen.push(a),
        check: (a) => void seen.push(a),
        gc: (a) => void seen.push(a),
        status: () => {
          throw new CniError(50, 'not ready', '', { cause: new Error('backend down') });
        },
      },
    };
    const asked: string[] = [];
    // what main.ts passes: our executable (by identity) under one of our plugin names
    const executor = inProcessExecutor((file) => {
      if (!isOwnExecutable(file)) return undefined;
      asked.push(basename(file));
      return basename(file) === 'self-ipam' ? plugin : undefined;
    }, processExecutor);
    const a = cmdArgs({ executor });
    expect(await delegateAdd('self-ipam', a)).toEqual({ cniVersion: '1.1.0', ips: [{ address: '198.18.0.10/24' }] });
    expect(asked).toEqual(['self-ipam']);
    expect(seen[0]!.command).toBe('ADD');
    expect(seen[0]!.stdinData.equals(a.stdinData)).toBe(true);
    expect(seen[0]!.env.EXTRA_VAR).toBe('kept');
    expect(seen[0]!.executor).toBe(executor); // its own delegations go through the same executor
    await delegateDel('self-ipam', cmdArgs({ command: 'DEL', executor }));
    expect(seen[1]!.command).toBe('DEL');
    // the core's rules apply in-process too: GC needs a 1.1.0 config
    const gc = await rejection(delegateGC('self-ipam', cmdArgs({ command: 'GC', executor })));
    expect([gc.code, gc.message]).toEqual([1, 'config version does not allow GC']);
    // the plugin's own error object arrives, cause kept
    const st = await rejection(delegateStatus('self-ipam', cmdArgs({ command: 'STATUS', executor }, { ...CONF, cniVersion: '1.1.0' })));
    expect([st.code, st.message, (st.cause as Error).message]).toEqual([50, 'not ready', 'backend down']);
    // a plugin that is not ours is exec'd by the fallback
    await delegateAdd('ok-ipam', a);
    expect(asked).not.toContain('ok-ipam');
    expect(recorded('ok-ipam').env.CNI_COMMAND).toBe('ADD');
  });

  test('safe inside a long-running caller: no process.exit, nothing written to stdout', async () => {
    const exit = jest.spyOn(process, 'exit').mockImplementation((() => {
      throw new Error('process.exit called');
    }) as never);
    const write = jest.spyOn(process.stdout, 'write');
    const plugin: Plugin = { name: 'self-ipam', about: 'x', funcs: { add: () => ({ cniVersion: '1.1.0' }), del: () => undefined, check: () => undefined } };
    const executor = inProcessExecutor((file) => (isOwnExecutable(file) ? plugin : undefined), processExecutor);
    try {
      await delegateAdd('self-ipam', cmdArgs({ executor }));
      const e = await rejection(delegateAdd('self-ipam', cmdArgs({ executor }, { ...CONF, cniVersion: '9.9.9' })));
      expect(e.code).toBe(1);
      expect(exit).not.toHaveBeenCalled();
      expect(write).not.toHaveBeenCalled();
    } finally {
      exit.mockRestore();
      write.mockRestore();
    }
  });

  test('a cancelled call does not start the plugin', async () => {
    const add = jest.fn(() => ({ cniVersion: '1.1.0' }));
    const plugin: Plugin = { name: 'self-ipam', about: 'x', funcs: { add, del: () => undefined, check: () => undefined } };
    const executor = inProcessExecutor(() => plugin, processExecutor);
    const e = await executor.exec({ file: 'x', env: {}, stdin: Buffer.from('{}'), signal: AbortSignal.abort(new Error('pod gone')) }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CniError);
    expect(((e as CniError).cause as Error).message).toBe('pod gone');
    expect(add).not.toHaveBeenCalled();
  });
});

describe('processExecutor', () => {
  const run = (body: string, over: Partial<Parameters<Executor['exec']>[0]> = {}) => {
    script(dir, 'ex', body);
    return processExecutor.exec({ file: pjoin(dir, 'ex'), env: { PATH: process.env.PATH }, stdin: Buffer.from('{}'), ...over });
  };
  test('stdout on exit 0; stderr to onStderr and quoted when stdout is empty', async () => {
    expect(await run('echo \'{"cniVersion":"1.0.0"}\'')).toBe('{"cniVersion":"1.0.0"}\n');
    const chunks: string[] = [];
    const e = await run('echo oops >&2; exit 1', { onStderr: (c) => void chunks.push(c.toString()) }).catch((x: unknown) => x);
    expect((e as CniError).message).toBe('netplugin failed (exit code 1): "oops"');
    expect(chunks.join('')).toBe('oops\n');
  });
  test('a run past timeoutMs is killed: code 999 naming the limit', async () => {
    const t0 = Date.now();
    const e = await run('sleep 5', { timeoutMs: 200, label: 'plugin "ex"' }).catch((x: unknown) => x);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect([(e as CniError).code, (e as CniError).message]).toEqual([999, `plugin "ex" ${pjoin(dir, 'ex')} did not finish within 200 ms and was killed`]);
  });
  test('an AbortSignal kills the run; the reason is the cause', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('runtime shutting down')), 100);
    const t0 = Date.now();
    const e = await run('sleep 5', { signal: ac.signal }).catch((x: unknown) => x);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect((e as CniError).message).toMatch(/was cancelled: runtime shutting down$/);
    expect(((e as CniError).cause as Error).message).toBe('runtime shutting down');
  });
  test('a spawn failure keeps the errno error as cause', async () => {
    script(dir, 'bad-interp', '', 0o755);
    writeFileSync(join(dir, 'bad-interp'), '#!/nonexistent/interpreter\n');
    const e = await processExecutor.exec({ file: join(dir, 'bad-interp'), env: {}, stdin: Buffer.alloc(0) }).catch((x: unknown) => x);
    expect((e as CniError).message).toMatch(/^failed to exec netplugin .*bad-interp: /);
    expect(((e as CniError).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
  test('a child left behind holding our pipes does not hold up the result', async () => {
    const t0 = Date.now();
    expect(await run('(sleep 5 &); echo \'{"cniVersion":"1.0.0"}\'', { onStderr: () => {} })).toBe('{"cniVersion":"1.0.0"}\n');
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});
