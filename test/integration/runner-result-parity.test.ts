// Issue 10 item 3: what `cnitool add` prints and what it caches are libcni's bytes, on every
// version, for results with and without IPs — the result is kept in the version its plugin printed
// (runner/result.ts), never converted before it is printed or cached. Compared with the real libcni
// (test/go/libcni-driver, Debian 1.1.2) running the same list in the same scratch namespaces.
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_VERSIONS, binDir, withNetns } from '../support/cni';
import { drivers, REFERENCE, type Driver } from '../go/drivers';

const [OURS, LIBCNI] = drivers() as [Driver, Driver];

interface Ctx {
  base: string;
  host: string; // scratch host netns
  ctr: string; // container netns path
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  cache: string | null; // the cache file's bytes, without the `netns` field libcni 1.1.2 predates
}

/** One `add` (then `del`, so the next run starts clean) through driver `d`, inside the host netns. */
async function add(d: Driver, c: Ctx, cniPath: string, list: Record<string, unknown>): Promise<Run> {
  const dir = join(c.base, 'net.d');
  const cacheDir = join(c.base, `cache-${d.name}`);
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(c.base, 'ipam'), { recursive: true, force: true }); // same address for both runners
  mkdirSync(dir);
  writeFileSync(join(dir, '10-net.conflist'), JSON.stringify(list));
  const env = { PATH: process.env.PATH, NETCONFPATH: dir, CNI_PATH: cniPath, CNI_CACHEDIR: cacheDir };
  const run = (cmd: string) => execa('nsenter', [`--net=/var/run/netns/${c.host}`, d.file, cmd, list.name as string, c.ctr], { env, extendEnv: false, reject: false, timeout: 30000, stripFinalNewline: false });
  const r = await run('add');
  const results = join(cacheDir, 'results');
  const files = existsSync(results) ? readdirSync(results) : [];
  const cache = files.length ? readFileSync(join(results, files[0]!), 'utf8').replace(/,"netns":"[^"]*"/, '') : null;
  await run('del');
  rmSync(cacheDir, { recursive: true, force: true });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), cache };
}

// Veth names and MACs are random per run: compare everything else byte for byte.
const sameMacs = (r: Run): Run => {
  const fix = (s: string): string => s.replace(/(?<="mac": ?")[0-9a-f:]{17}(?=")/g, 'MAC').replace(/(?<=")veth[0-9a-f]{8}(?=")/g, 'vethX');
  return { ...r, stdout: fix(r.stdout), cache: r.cache && fix(r.cache) };
};

async function withCtx(fn: (c: Ctx) => Promise<void>): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'rn-parity-'));
  try {
    await withNetns(['rp-h', 'rp-c'], ([host, ctr]) => fn({ base, host: host!, ctr: `/var/run/netns/${ctr}` }));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

/** The three kinds of result: IPs with routes; IP-less at 0.1.0/0.2.0 (loopback); interfaces only (L2 bridge). */
const CASES = {
  'IP result (host-local)': (c: Ctx) => ({
    type: 'host-local',
    ipam: { type: 'host-local', subnet: '198.18.22.0/24', dataDir: join(c.base, 'ipam'), routes: [{ dst: '198.19.0.0/16', gw: '198.18.22.1' }] },
  }),
  // The reference loopback prints a 1.0.0-shaped result under the config's version: for 0.1.0/0.2.0
  // libcni reads it as a result without any IP; from 0.3.0 its IPs have no "version".
  'loopback (IP-less at 0.1.0/0.2.0)': () => ({ type: 'loopback' }),
  'IP-less result (bridge without IPAM)': () => ({ type: 'bridge', bridge: 'rpbr0' }),
} as const;

describe.each(Object.entries(CASES))('%s', (_label, plugin) => {
  test.each(ALL_VERSIONS)('cniVersion %s: stdout, exit code and cache file are libcni\'s bytes', (version) =>
    withCtx(async (c) => {
      const list = { cniVersion: version, name: 'rp-net', plugins: [plugin(c)] };
      const ours = sameMacs(await add(OURS, c, REFERENCE, list));
      const theirs = sameMacs(await add(LIBCNI, c, REFERENCE, list));
      expect(ours).toEqual(theirs);
    }),
  );
});

test('a list without cniVersion (0.1.0 for results): libcni\'s bytes', () =>
  withCtx(async (c) => {
    const list = { name: 'rp-net', plugins: [{ type: 'loopback' }] };
    const ours = await add(OURS, c, REFERENCE, list);
    expect(ours.code).toBe(0);
    expect(ours).toEqual(await add(LIBCNI, c, REFERENCE, list));
  }));

// libcni 1.1.2 cannot read a 1.1.0 result; libcni ≥ 1.2 reads 1.0.0 and 1.1.0 into one struct. So
// with our plugins (which speak 1.1.0), a 1.1.0 list must give libcni's 1.0.0 bytes with the version changed.
const hasOurs = existsSync(join(binDir(), 'host-local'));
(hasOurs ? test : test.skip)('cniVersion 1.1.0 with our host-local: libcni\'s 1.0.0 bytes with only the version changed', () =>
  withCtx(async (c) => {
    const plugin = CASES['IP result (host-local)'](c);
    const path = `${binDir()}:${REFERENCE}`;
    const ours = await add(OURS, c, path, { cniVersion: '1.1.0', name: 'rp-net', plugins: [plugin] });
    const theirs = await add(LIBCNI, c, path, { cniVersion: '1.0.0', name: 'rp-net', plugins: [plugin] });
    expect(theirs.code).toBe(0);
    const asV11 = (s: string): string => s.replace(/"cniVersion": ?"1\.0\.0"/g, (m) => m.replace('1.0.0', '1.1.0'));
    const config = (s: string | null): string => s!.replace(/"config":"[^"]*",/, '');
    expect(ours.stdout).toBe(asV11(theirs.stdout));
    expect(config(ours.cache)).toBe(asV11(config(theirs.cache)));
  }));
