// Installing: `npm run install-plugins -- --dir DIR` (node build.mjs's command line), the executable
// and one link per name; and copies of the executable (what `cp dist/bin/* DIR/` makes) still run
// our own IPAM in-process, recognised by the build ID the build appends.
import { execa } from 'execa';
import { copyFileSync, existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { binDir } from '../support/cni';
import { Lab } from './bridge-harness';

const root = resolve(__dirname, '..', '..');
const distEnv = { CNIKIT_DIST: resolve(binDir(), '..') };

const buildMjs = (args: string[], env: Record<string, string> = distEnv) =>
  execa('node', [join(root, 'build.mjs'), ...args], { env, reject: false });

describe('install-plugins', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cnikit-install-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('copies cnikit and links every plugin and tool name to it, replacing existing files', async () => {
    copyFileSync('/usr/lib/cni/bridge', join(dir, 'bridge')); // a reference binary already installed
    copyFileSync(join(binDir(), 'cnikit'), join(dir, 'host-local')); // an earlier `cp` of ours
    const linked = (await execa(join(binDir(), 'cnikit'), ['--list'])).stdout.split('\n');
    const foreign = readdirSync('/usr/lib/cni').find((n) => !linked.includes(n))!; // a reference plugin we do not ship
    writeFileSync(join(dir, foreign), 'not ours'); // names we do not implement stay untouched
    symlinkSync('/usr/lib/cni/dhcp', join(dir, 'third-party')); // and so do other plugins' links
    symlinkSync('cnikit', join(dir, 'dropped')); // a link of ours to a name we no longer ship goes
    const r = await buildMjs(['--install', '--dir', dir]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/installed .*cnikit with links: /);
    const names = (await execa(join(binDir(), 'cnikit'), ['--list'])).stdout.split('\n').filter(Boolean);
    expect(names).toEqual(expect.arrayContaining(['bridge', 'host-local', 'cnitool']));
    for (const n of names) {
      expect(lstatSync(join(dir, n)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(dir, n))).toBe('cnikit');
    }
    expect(lstatSync(join(dir, foreign)).isFile()).toBe(true);
    expect(readlinkSync(join(dir, 'third-party'))).toBe('/usr/lib/cni/dhcp');
    expect(existsSync(join(dir, 'dropped'))).toBe(false);
    const v = await execa(join(dir, 'bridge'), [], { env: { CNI_COMMAND: 'VERSION' }, extendEnv: false });
    expect(JSON.parse(v.stdout).supportedVersions).toHaveLength(7);
  });

  test('--dir=DIR installs into DIR (not into /opt/cni/bin)', async () => {
    const before = existsSync('/opt/cni/bin/cnikit') ? statSync('/opt/cni/bin/cnikit').mtimeMs : null;
    const r = await buildMjs(['--install', `--dir=${dir}`]);
    expect(r.exitCode).toBe(0);
    expect(readdirSync(dir)).toEqual(expect.arrayContaining(['cnikit', 'bridge', 'host-local', 'cnitool']));
    expect(existsSync('/opt/cni/bin/cnikit') ? statSync('/opt/cni/bin/cnikit').mtimeMs : null).toBe(before);
  });

  test.each([
    [['--install', '--dir'], /^build\.mjs: .*--dir.*argument missing/],
    [['--install', '--dir='], /^build\.mjs: --dir needs a directory/],
    [['--install', '--bogus'], /^build\.mjs: Unknown option '--bogus'/],
    [['--dir', '/tmp/x'], /^build\.mjs: --dir is for --install/],
    [['extra'], /^build\.mjs: Unexpected argument 'extra'/],
  ])('%j: one line on stderr, exit 2, nothing built or installed', async (args, want) => {
    const dist = join(dir, 'dist');
    const r = await buildMjs(args, { CNIKIT_DIST: dist });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(want);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(dist)).toBe(false);
  });

  test.each([['--help'], ['-h']])('%s prints the help and builds nothing', async (flag) => {
    const dist = join(dir, 'dist');
    const r = await buildMjs([flag], { CNIKIT_DIST: dist });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('usage: node build.mjs');
    expect(r.stdout).toContain('--dir DIR');
    expect(existsSync(dist)).toBe(false);
  });

  test('the executable ends with its build ID, which --version shows', async () => {
    const exe = readFileSync(join(binDir(), 'cnikit'));
    const m = /\ncnikit-build-id:([0-9a-f]{32})$/.exec(exe.subarray(exe.length - 64).toString('latin1'));
    expect(m).not.toBeNull();
    const v = await execa(join(binDir(), 'cnikit'), ['--version']);
    expect(v.stdout).toBe(`cnikit ${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version} (build ${m![1]!.slice(0, 12)})`);
  });
});

describe('copies of the executable', () => {
  let lab: Lab | undefined;
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cnikit-copies-'));
  });
  afterEach(async () => {
    await lab?.dispose();
    lab = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  test('bridge and host-local as plain copies in CNI_PATH: ADD and DEL run host-local in-process (no second exec)', async () => {
    for (const n of ['bridge', 'host-local']) copyFileSync(join(binDir(), 'cnikit'), join(dir, n));
    expect(lstatSync(join(dir, 'host-local')).isSymbolicLink()).toBe(false);
    lab = await Lab.create(1);
    const env = { PATH: process.env.PATH!, CNI_CONTAINERID: 'copies', CNI_NETNS: `/var/run/netns/${lab.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: dir };
    for (const verb of ['ADD', 'DEL']) {
      const trace = join(dir, `trace-${verb}`);
      const r = await execa('nsenter', [`--net=/var/run/netns/${lab.host}`, 'strace', '-f', '-qq', '-e', 'trace=execve', '-o', trace, join(dir, 'bridge')], {
        input: JSON.stringify(lab.conf()),
        env: { ...env, CNI_COMMAND: verb },
        extendEnv: false,
        reject: false,
      });
      expect([verb, r.exitCode, r.stderr]).toEqual([verb, 0, '']);
      const execs = readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes('execve('));
      expect(execs).toHaveLength(1); // the bridge itself, nothing else
      expect(execs[0]).toContain(join(dir, 'bridge'));
      expect(lab.leases()).toEqual(verb === 'ADD' ? ['198.18.0.2'] : []);
    }
  });

  test('a file of another build is exec\'d, not run in-process', async () => {
    copyFileSync(join(binDir(), 'cnikit'), join(dir, 'bridge'));
    // Same bytes but a different build ID: not provably the same code, so it runs as its own process.
    const other = readFileSync(join(binDir(), 'cnikit'));
    other.write('0'.repeat(32), other.length - 32, 'latin1');
    writeFileSync(join(dir, 'host-local'), other, { mode: 0o755 });
    lab = await Lab.create(1);
    const trace = join(dir, 'trace');
    const r = await execa('nsenter', [`--net=/var/run/netns/${lab.host}`, 'strace', '-f', '-qq', '-e', 'trace=execve', '-o', trace, join(dir, 'bridge')], {
      input: JSON.stringify(lab.conf()),
      env: { PATH: process.env.PATH!, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'other', CNI_NETNS: `/var/run/netns/${lab.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: dir },
      extendEnv: false,
      reject: false,
    });
    expect(r.exitCode).toBe(0);
    const execs = readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes('execve('));
    expect(execs.filter((l) => l.includes(join(dir, 'host-local')))).toHaveLength(1);
    expect(lab.leases()).toEqual(['198.18.0.2']);
  });
});
