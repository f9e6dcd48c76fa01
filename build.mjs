#!/usr/bin/env node
// Build: esbuild bundles main.ts, then `bun build --compile --bytecode` makes one executable
// dist/bin/cnikit with a link per plugin name (bun's start is ~7 ms against Node's ~24 ms).
//   node build.mjs                      build into dist/ (CNIKIT_DIST overrides)
//   node build.mjs --install [--dir D]  build if needed, then install into D (default /opt/cni/bin)
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = resolve(process.env.CNIKIT_DIST || join(root, 'dist'));
const bin = join(dist, 'bin');
const exe = join(bin, 'cnikit');
const bun = join(root, 'node_modules', '.bin', 'bun');

async function compile() {
  mkdirSync(bin, { recursive: true });
  const bundle = join(dist, 'cnikit.mjs');
  await build({
    entryPoints: [join(root, 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'esnext',
    minify: true,
    external: ['bun:ffi'],
    outfile: bundle,
    logLevel: 'warning',
  });
  const tmp = `${exe}.tmp`;
  // --compile-jit-policy raises JSC's tier-up thresholds: a plugin lives ~20 ms, so compiling hot
  // code pays off rarely and the JIT's start-up does not (host-local CHECK 19.5-21.9 ms -> 12.2-14.2 ms
  // with 10, same run; VERSION 17.7 -> 15.8 ms). Hot loops (index rebuilds) still tier up.
  // No .env/bunfig.toml autoloading: a compiled bun binary otherwise reads them from its working
  // directory, so a `.env` wherever kubelet runs would inject CNI_* variables into every plugin.
  const args = ['build', '--compile', '--bytecode', '--minify', '--compile-jit-policy=10', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig'];
  execFileSync(bun, [...args, bundle, '--outfile', tmp], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  renameSync(tmp, exe);
  rmSync(`${tmp}`, { force: true });
  return link(bin);
}

/** Links every plugin name the executable reports to it, and removes links to names it no longer has. */
function link(dir) {
  const target = join(dir, 'cnikit');
  const names = execFileSync(exe, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (f !== 'cnikit' && lstatSync(p).isSymbolicLink() && !names.includes(f)) unlinkSync(p);
  }
  for (const n of names) {
    // Link under a temporary name, then rename over: an exec of /opt/cni/bin/<name> during an
    // install (replacing the reference's binary, say) always finds a plugin.
    const tmp = join(dir, `.${n}.${process.pid}`);
    if (isLink(tmp)) unlinkSync(tmp);
    symlinkSync('cnikit', tmp);
    renameSync(tmp, join(dir, n));
  }
  if (!existsSync(target)) throw new Error(`missing ${target}`);
  return names;
}

function isLink(p) {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function install(dir) {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, `.cnikit.${process.pid}`);
  copyFileSync(exe, tmp);
  renameSync(tmp, join(dir, 'cnikit')); // atomic: a running kubelet never execs a half-copied file
  return link(dir);
}

const args = process.argv.slice(2);
if (args[0] === '--install') {
  const i = args.indexOf('--dir');
  const dir = resolve(i >= 0 ? args[i + 1] : '/opt/cni/bin');
  if (!existsSync(exe) || statSync(exe).size === 0) await compile();
  const names = install(dir);
  console.log(`installed ${join(dir, 'cnikit')} with links: ${names.join(' ')}`);
} else {
  const names = await compile();
  console.log(`built ${exe} (${(statSync(exe).size / 1e6).toFixed(0)} MB) with links: ${names.join(' ')}`);
}
