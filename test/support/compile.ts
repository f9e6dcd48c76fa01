// A test entry compiled the way build.mjs compiles the product (esbuild, then `bun build --compile
// --bytecode` with the same flags), for code that needs bun:ffi and a real kernel.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

/** Compiles `entry` to `<dir>/harness` and returns its path; the bundle is removed (the executable must not find its code on disk). */
export async function compileLikeTheProduct(entry: string, dir: string): Promise<string> {
  const bundle = join(dir, 'harness.mjs');
  await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'esnext', minify: true, external: ['bun:ffi'], outfile: bundle, logLevel: 'warning' });
  const exe = join(dir, 'harness');
  const bun = join(root, 'node_modules', '.bin', 'bun');
  const flags = ['--compile', '--bytecode', '--minify', '--compile-jit-policy=10', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig'];
  execFileSync(bun, ['build', ...flags, bundle, '--outfile', exe], { stdio: ['ignore', 'ignore', 'inherit'] });
  rmSync(bundle);
  return exe;
}
