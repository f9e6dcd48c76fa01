#!/usr/bin/env node
// Build: esbuild bundles main.ts, then `bun build --compile --bytecode` makes one executable
// dist/bin/cnikit with a link per plugin name (bun's start is ~7 ms against Node's ~24 ms).
// Run `node build.mjs --help` for the command line.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const root = dirname(fileURLToPath(import.meta.url));
const dist = resolve(process.env.CNIKIT_DIST || join(root, 'dist'));
const bin = join(dist, 'bin');
const exe = join(bin, 'cnikit');
const bun = join(root, 'node_modules', '.bin', 'bun');
const DEFAULT_DIR = '/opt/cni/bin';

const HELP = `usage: node build.mjs [--install [--dir DIR]]
  (no flags)       build dist/bin/cnikit and its links (CNIKIT_DIST=DIR builds into DIR/bin)
  --install        build if there is no executable yet, then install into DIR: cnikit is copied
                   (atomically) and every plugin and tool name becomes a symlink to it
  --dir DIR        the install directory (default ${DEFAULT_DIR}); --dir=DIR works too
  -h, --help       print this help and do nothing else
npm scripts: npm run build; npm run install-plugins -- --dir DIR
`;

// The bun runtime's own environment variables that change what a compiled executable runs:
// BUN_OPTIONS adds command-line flags (--preload x.js runs x.js first), BUN_INSPECT and
// BUN_INSPECT_CONNECT_TO open a debugger that evaluates anything, BUN_INSPECT_PRELOAD preloads a
// module, BUN_BE_BUN turns the executable into the bun CLI, and BUN_BYTECODE_ORDER_OUT and
// BUN_BYTECODE_DIGEST_OUT write a profile to any path they name (as root, over whatever is there).
// bun has no build flag to turn them off
// (only .env and bunfig.toml autoloading have one), so the build disables them in the runtime it
// embeds: each is looked up by its NUL-terminated name with getenv(3), and a name whose first byte
// is NUL matches no variable (glibc and musl return NULL for an empty name).
const RUNTIME_ENV_VARS = ['BUN_OPTIONS', 'BUN_INSPECT', 'BUN_INSPECT_CONNECT_TO', 'BUN_INSPECT_PRELOAD', 'BUN_BE_BUN', 'BUN_BYTECODE_ORDER_OUT', 'BUN_BYTECODE_DIGEST_OUT'];

// The build-ID trailer; shared/self.ts reads it (same magic, same length).
const TRAILER_MAGIC = '\ncnikit-build-id:';

function usageError(msg) {
  process.stderr.write(`build.mjs: ${msg} (see node build.mjs --help)\n`);
  process.exit(2);
}

// The etcd3 client (overlay agent) loads its gRPC definitions from proto/rpc.proto next to its own
// file when its module loads, a file the single executable does not carry. The build parses them
// once (the same loader and options) and the bundle builds the definitions from that JSON instead.
const embedEtcdProtos = {
  name: 'embed-etcd-protos',
  setup(b) {
    b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      const call = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {';
      if (!src.includes(call)) throw new Error(`${args.path}: the etcd3 proto loading changed; update embedEtcdProtos in build.mjs`);
      const require = createRequire(args.path);
      const { loadProtosWithOptionsSync } = require('@grpc/proto-loader/build/src/util');
      const root = loadProtosWithOptionsSync(join(dirname(args.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
      const json = JSON.stringify(root.toJSON());
      // A string for JSON.parse, not an object literal: cheaper to carry in the bundle than ~100 KB of code.
      return { contents: src.replace(call, `(0, proto_loader_1.fromJSON)(JSON.parse(${JSON.stringify(json)}), {`), loader: 'js' };
    });
  },
};

const ETCD3_BUNDLE = 'etcd3.mjs';

/** `etcd3` in our sources becomes the sibling bundle ./etcd3.mjs (built by compile() below). */
const etcd3Apart = {
  name: 'etcd3-apart',
  setup(b) {
    b.onResolve({ filter: /^etcd3$/ }, () => ({ path: `./${ETCD3_BUNDLE}`, external: true }));
  },
};

async function compile() {
  mkdirSync(bin, { recursive: true });
  // esbuild splits the bundle (one chunk per dynamic import(): cnm, its Docker plugin, the overlay
  // agent...) and `bun build --compile --splitting` keeps those chunks apart inside the executable,
  // so a plugin's start-up parses only the code plugins use (loopback VERSION 20.9 -> 15.6 ms mean
  // when cnm, the Docker plugin and the overlay sat in one 323 KB bundle).
  const js = join(dist, 'js');
  rmSync(js, { recursive: true, force: true });
  const bundle = join(js, 'main.js');
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  await build({
    entryPoints: [join(root, 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'esnext',
    minify: true,
    external: ['bun:ffi'],
    define: { __CNIKIT_VERSION__: JSON.stringify(version) },
    outdir: js,
    splitting: true,
    logLevel: 'warning',
    plugins: [etcd3Apart],
  });
  // The etcd client (~570 KB with gRPC and protobufjs) is its own bundle: the main one only has a
  // dynamic import() of it, and `bun build --splitting` keeps it a separate chunk of the executable,
  // so a plugin's start-up does not load it (measured: 2 ms of CPU per exec when it was inline).
  await build({
    // etcd3 is CommonJS: an ESM entry re-exports by name what our code imports.
    stdin: { contents: "export { Etcd3, isRecoverableError } from 'etcd3';", resolveDir: root, loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'esnext',
    minify: true,
    outfile: join(js, ETCD3_BUNDLE),
    logLevel: 'warning',
    plugins: [embedEtcdProtos],
    // grpc-js and friends are CommonJS that call require() for node built-ins: give the ESM bundle one.
    banner: { js: "import { createRequire as __cnikitCreateRequire } from 'node:module'; const require = __cnikitCreateRequire(import.meta.url);" },
  });
  const tmp = `${exe}.tmp`;
  // --compile-jit-policy raises JSC's tier-up thresholds: a plugin lives ~20 ms, so compiling hot
  // code pays off rarely and the JIT's start-up does not (host-local CHECK 19.5-21.9 ms -> 12.2-14.2 ms
  // with 10, same run; VERSION 17.7 -> 15.8 ms). Hot loops (index rebuilds) still tier up.
  // No .env/bunfig.toml autoloading: a compiled bun binary otherwise reads them from its working
  // directory, so a `.env` wherever kubelet runs would inject CNI_* variables into every plugin.
  const args = ['build', '--compile', '--bytecode', '--splitting', '--format', 'esm', '--minify', '--compile-jit-policy=10', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig'];
  execFileSync(bun, [...args, bundle, '--outfile', tmp], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const data = readFileSync(tmp);
  disableRuntimeEnv(tmp, data);
  appendBuildId(tmp, data);
  renameSync(tmp, exe);
  return link(bin);
}

/** Makes the runtime embedded in `file` (its bytes in `data`) blind to RUNTIME_ENV_VARS; fails the build if it cannot. */
function disableRuntimeEnv(file, data) {
  const fd = openSync(file, 'r+');
  try {
    for (const name of RUNTIME_ENV_VARS) {
      const key = Buffer.from(`\0${name}\0`);
      const at = data.indexOf(key);
      if (at < 0 || data.indexOf(key, at + 1) >= 0)
        throw new Error(`${file}: expected the bun runtime to hold the name ${name} once; this bun release lays its runtime out differently, so the build cannot disable ${name}`);
      data[at + 1] = 0;
      writeSync(fd, data, at + 1, 1, at + 1);
    }
  } finally {
    closeSync(fd);
  }
}

/** Appends the trailer: magic + the first 128 bits (hex) of the SHA-256 of the executable's bytes (`data`). */
function appendBuildId(file, data) {
  const id = createHash('sha256').update(data).digest('hex').slice(0, 32);
  appendFileSync(file, TRAILER_MAGIC + id);
}

/** Links every plugin name the executable reports to it, and removes links to names it no longer has. */
function link(dir) {
  const target = join(dir, 'cnikit');
  const names = execFileSync(exe, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  // A name we no longer ship goes, but only if it is our link: other plugins' links in the same
  // directory (/opt/cni/bin holds third-party plugins too) are not ours to remove.
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (f !== 'cnikit' && !names.includes(f) && isLink(p) && readlinkSync(p) === 'cnikit') unlinkSync(p);
  }
  for (const n of names) {
    // Link under a temporary name, then rename over: an exec of /opt/cni/bin/<name> during an
    // install (replacing the reference's binary, or an earlier copy of ours) always finds a plugin.
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

// One copy of the executable and a symlink per name: a copy per name would cost 112 MB each, and
// hard links would keep the old executable alive under some names after an upgrade renames a new
// cnikit into place.
function install(dir) {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, `.cnikit.${process.pid}`);
  copyFileSync(exe, tmp);
  renameSync(tmp, join(dir, 'cnikit')); // atomic: a running kubelet never execs a half-copied file
  return link(dir);
}

let opts;
try {
  opts = parseArgs({
    options: {
      install: { type: 'boolean' },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (e) {
  usageError(e.message);
}
if (opts.help) {
  process.stdout.write(HELP);
} else if (opts.install) {
  if (opts.dir === '') usageError('--dir needs a directory');
  const dir = resolve(opts.dir ?? DEFAULT_DIR);
  if (!existsSync(exe) || statSync(exe).size === 0) await compile();
  const names = install(dir);
  console.log(`installed ${join(dir, 'cnikit')} with links: ${names.join(' ')}`);
} else {
  if (opts.dir !== undefined) usageError('--dir is for --install');
  const names = await compile();
  console.log(`built ${exe} (${(statSync(exe).size / 1e6).toFixed(0)} MB) with links: ${names.join(' ')}`);
}
