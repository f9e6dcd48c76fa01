// The two list runners the integration suites drive every scenario through: our `cnitool` link and
// the real libcni (Debian's 1.1.2) behind the same command line (test/go/libcni-driver).
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { binDir } from '../support/cni';

const DRIVER_DIR = join(__dirname, 'libcni-driver');
export const LIBCNI_DRIVER = join(DRIVER_DIR, 'bin', 'libcni-driver');

/** Builds the Go driver when it is missing or older than its source (.ci/run builds it up front). */
export function ensureLibcniDriver(): string {
  const src = join(DRIVER_DIR, 'main.go');
  if (!existsSync(LIBCNI_DRIVER) || statSync(LIBCNI_DRIVER).mtimeMs < statSync(src).mtimeMs) {
    execFileSync('go', ['build', '-o', LIBCNI_DRIVER, '.'], {
      cwd: DRIVER_DIR,
      env: { ...process.env, GOPATH: '/usr/share/gocode', GO111MODULE: 'off', GOCACHE: process.env.GOCACHE || '/tmp/cnikit-gocache' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  return LIBCNI_DRIVER;
}

export interface Driver {
  name: 'cnitool' | 'libcni';
  file: string;
  /** libcni 1.1.2 implements spec 1.0.0: no GC, STATUS, cniVersions, disableGC, plugin fragments. */
  spec11: boolean;
}

export function drivers(): Driver[] {
  return [
    { name: 'cnitool', file: join(binDir(), 'cnitool'), spec11: true },
    { name: 'libcni', file: ensureLibcniDriver(), spec11: false },
  ];
}

export const REFERENCE = '/usr/lib/cni';

/**
 * CNI_PATH variants: the reference plugins alone, and ours alone (no reference plugin reachable, as
 * on a node running cnikit only) once our bridge and host-local are built. A list naming a plugin we
 * do not link is skipped on ours by the suite, with the plugin named (missingPlugins).
 */
export function pluginPaths(): Array<{ label: string; path: string }> {
  const out = [{ label: 'reference plugins', path: REFERENCE }];
  if (existsSync(join(binDir(), 'bridge')) && existsSync(join(binDir(), 'host-local'))) out.push({ label: 'our plugins', path: binDir() });
  return out;
}
