// `npm run install-plugins -- --dir DIR`: the executable and one link per name, replacing what was there.
import { execa } from 'execa';
import { copyFileSync, lstatSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { binDir } from '../support/cni';

const root = resolve(__dirname, '..', '..');

describe('install-plugins', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cnikit-install-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('copies cnikit and links every plugin and tool name to it, replacing existing files', async () => {
    copyFileSync('/usr/lib/cni/bridge', join(dir, 'bridge')); // a reference binary already installed
    writeFileSync(join(dir, 'portmap'), 'not ours'); // names we do not implement stay untouched
    const r = await execa('node', [join(root, 'build.mjs'), '--install', '--dir', dir], {
      env: { CNIKIT_DIST: resolve(binDir(), '..') },
    });
    expect(r.stdout).toMatch(/installed .*cnikit with links: /);
    const names = (await execa(join(binDir(), 'cnikit'), ['--list'])).stdout.split('\n').filter(Boolean);
    expect(names).toEqual(expect.arrayContaining(['bridge', 'host-local', 'cnitool']));
    for (const n of names) {
      expect(lstatSync(join(dir, n)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(dir, n))).toBe('cnikit');
    }
    expect(lstatSync(join(dir, 'portmap')).isFile()).toBe(true);
    const v = await execa(join(dir, 'bridge'), [], { env: { CNI_COMMAND: 'VERSION' }, extendEnv: false });
    expect(JSON.parse(v.stdout).supportedVersions).toHaveLength(7);
  });
});
