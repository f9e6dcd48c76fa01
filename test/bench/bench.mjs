#!/usr/bin/env node
// The benchmark: our plugins against the reference (/usr/lib/cni), measured side by side in one run
// (A/B alternating, the order flipped every round), each case driven the same way through the real
// libcni (test/go/libcni-driver) inside a scratch host netns. Not a test: prints ratios ours/reference.
//   node test/bench/bench.mjs [--json] [--rounds N] [--ours-dir DIR] [--busy-pods N] [--only version,bridge,host-local,...]
// --ours-dir defaults to $CNIKIT_DIST/bin or dist/bin. Cases whose plugin is not built are skipped.
// The chain groups (podman-default, podman-busy, containerd-default, containerd-kube, ptp, loopback, and
// each *-served with our plugin server running) run the runtimes' real lists
// with CNI_PATH = one side's directory alone, and count the processes each side execs per pod (strace).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const USAGE = `usage: node test/bench/bench.mjs [--json] [--rounds N] [--ours-dir DIR] [--busy-pods N] [--only GROUP,...]
  --json          one JSON document on stdout instead of the table
  --rounds N      alternating rounds per case (default 10)
  --ours-dir DIR  our plugins (default $CNIKIT_DIST/bin or dist/bin)
  --busy-pods N   pods already attached in podman-busy (default 50, at most 250)
  --only G,...    groups: version, bridge, host-local, podman-default, podman-busy, containerd-default,
                  containerd-kube, ptp, loopback, podman-served, containerd-served, ptp-served,
                  loopback-served, bridge-served, docker-plugin, cnm, overlay (default: all)
`;
let args;
try {
  args = parseArgs({
    options: { json: { type: 'boolean' }, rounds: { type: 'string' }, 'ours-dir': { type: 'string' }, 'busy-pods': { type: 'string' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (e) {
  process.stderr.write(`bench: ${e.message}\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const count = (name, dflt, max = Infinity) => {
  const n = Number(args[name] ?? dflt);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    process.stderr.write(`bench: --${name} must be a whole number ${max === Infinity ? 'above 0' : `from 1 to ${max}`}, not ${JSON.stringify(args[name])}\n`);
    process.exit(2);
  }
  return n;
};
const JSON_OUT = !!args.json;
const ROUNDS = count('rounds', '10');
// Case groups to run (all by default): version, bridge (add, del, cycle, concurrent-64, peak RSS), host-local,
// and the chains: podman-default, podman-busy, containerd-default, ptp, loopback.
// *-served: a list of the group named, with our plugin server (`cnikit plugin-server`) running in our
// side's host netns, so each plugin our side execs hands its verb to the warm server. The server
// serves clients of its own mount namespace only, and `ip netns exec` makes a new one per command,
// so in these groups both sides' drivers enter the host netns with `nsenter --net` instead.
const SERVED = { 'podman-served': 'podman-default', 'containerd-served': 'containerd-default', 'ptp-served': 'ptp', 'loopback-served': 'loopback', 'bridge-served': 'bridge' };
const CHAIN_GROUPS = ['podman-default', 'podman-busy', 'containerd-default', 'containerd-kube', 'ptp', 'loopback', ...Object.keys(SERVED)];
// podman-busy: podman-default's cycle on a node where this many pods (each publishing a port) are
// already attached, with the same side's plugins: their rules are in the tables every verb reads.
// containerd-kube: containerd-default's cycle with kube-proxy's iptables rules for KUBE_SERVICES
// services (two endpoints each, as kube-proxy 1.2x writes them) in both sides' nat tables.
const KUBE_SERVICES = 1000;
const BUSY_PODS = count('busy-pods', '50', 250); // the list's /24 holds 253 pods, the timed one included
const ONLY = (args.only ?? ['version', 'bridge', 'host-local', ...CHAIN_GROUPS].join(',')).split(',');
const GROUPS = ['version', 'bridge', 'host-local', ...CHAIN_GROUPS, 'docker-plugin', 'cnm', 'overlay'];
for (const g of ONLY)
  if (!GROUPS.includes(g)) {
    process.stderr.write(`bench: --only: no group ${JSON.stringify(g)} (groups: ${GROUPS.join(', ')})\n`);
    process.exit(2);
  }
const want = (group) => ONLY.includes(group);
const OURS = resolve(args['ours-dir'] ?? join(process.env.CNIKIT_DIST ? resolve(process.env.CNIKIT_DIST) : join(root, 'dist'), 'bin'));
const REF = '/usr/lib/cni';
const DRIVER_DIR = join(root, 'test', 'go', 'libcni-driver');
const DRIVER = join(DRIVER_DIR, 'bin', 'libcni-driver');

// A CA bundle in NODE_EXTRA_CA_CERTS is read at every start of a Node/bun process: keep it out of
// the measurement so both sides start as they would under a runtime.
const ENV = { ...process.env };
delete ENV.NODE_EXTRA_CA_CERTS;

const log = (s) => process.stderr.write(`${s}\n`);
// A closed pipe (`| head`) must not end the run before it removes its namespaces and daemons.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
const hex = () => randomBytes(4).toString('hex');
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Runs a command; resolves with its wall time in ms, rejects with its output on failure. */
function timed(cmd, args, { env = ENV, input = '', timeoutMs = 30000 } = {}) {
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    // own process group, so a hung plugin under `ip netns exec` + the driver can be killed whole
    const c = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const timer = setTimeout(() => {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      rej(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms (killed)`));
    }, timeoutMs);
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('error', rej);
    c.on('close', (code) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) res({ ms, out, err });
      else rej(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${(out + err).trim().slice(0, 500)}`));
    });
    c.stdin.on('error', () => {});
    c.stdin.end(input);
  });
}

const ip = (...a) => execFileSync('ip', a, { stdio: ['ignore', 'ignore', 'pipe'] });
const netnsAdd = (n) => {
  ip('netns', 'add', n);
  ip('-n', n, 'link', 'set', 'lo', 'up');
  return `/var/run/netns/${n}`;
};
const netnsDel = (n) => {
  try {
    ip('netns', 'del', n);
  } catch {
    /* already gone */
  }
};

function ensureDriver() {
  const src = join(DRIVER_DIR, 'main.go');
  if (!existsSync(DRIVER) || statSync(DRIVER).mtimeMs < statSync(src).mtimeMs) {
    log('building the libcni driver ...');
    execFileSync('go', ['build', '-o', DRIVER, '.'], {
      cwd: DRIVER_DIR,
      env: { ...process.env, GOPATH: '/usr/share/gocode', GO111MODULE: 'off', GOCACHE: process.env.GOCACHE || '/tmp/cnikit-gocache' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
}

/** The host-local store generator the host-local engineer wrote (TypeScript), bundled on the fly. */
async function leaseGenerator(work) {
  const { build } = await import('esbuild');
  const out = join(work, 'leases.cjs');
  await build({ entryPoints: [join(root, 'test', 'support', 'host-local-leases.ts')], bundle: true, platform: 'node', format: 'cjs', outfile: out, logLevel: 'warning' });
  return createRequire(import.meta.url)(out).writeReferenceStore;
}

const sides = { ours: OURS, reference: REF };
const has = (dir, ...names) => names.every((n) => existsSync(join(dir, n)));

/** The plugins our executable links: `cnikit --list` minus the tools its usage names. */
function ourPlugins() {
  const cnikit = join(OURS, 'cnikit');
  if (!existsSync(cnikit)) return [];
  const list = execFileSync(cnikit, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const help = spawnSync(cnikit, ['--help'], { encoding: 'utf8' }).stderr;
  const tools = (/^tools: (.*)$/m.exec(help)?.[1] ?? '').split(', ');
  return list.filter((n) => !tools.includes(n));
}

/**
 * The chain cases: what each runtime runs per pod, as networks in order (ADD in order, DEL reversed),
 * each { name, ifname, list, caps }. `s` is the side (own bridge, subnet, host port per side), `dataDir` its IPAM store,
 * `runDir` a directory on a tmpfs for what our portmap and firewall keep under /run by default.
 */
const loopbackNet = { name: 'cni-loopback', ifname: 'lo', list: { cniVersion: '0.3.1', name: 'cni-loopback', plugins: [{ type: 'loopback' }] } };
const CHAINS = {
  // podman 4's `podman network create` list (CNI backend), one port published (-p)
  'podman-default': (i, dataDir, runDir) => [
    {
      name: 'podman',
      ifname: 'eth0',
      caps: { portMappings: [{ hostPort: 18080 + i, containerPort: 80, protocol: 'tcp' }] },
      list: {
        cniVersion: '0.4.0',
        name: 'podman',
        plugins: [
          { type: 'bridge', bridge: `cni-podman${i}`, isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', dataDir, routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: `198.18.${200 + i}.0/24`, gateway: `198.18.${200 + i}.1` }]] } },
          // dataDir (ours: attachment records; the reference ignores the key): the bench's own, on a tmpfs
          // as their default /run/cni is on a node (this VM's /run is on its disk, hence /dev/shm)
          { type: 'portmap', capabilities: { portMappings: true }, dataDir: `${runDir}/portmap` },
          { type: 'firewall', dataDir: `${runDir}/firewall` },
          { type: 'tuning' },
        ],
      },
    },
  ],
  // the same list on its own bridge and subnet, timed with BUSY_PODS pods already on it
  'podman-busy': (i, dataDir, runDir) => CHAINS['podman-default'](i + 2, dataDir, runDir),
  // the same on its own bridge, subnets and port, timed with kube-proxy's rules in the nat table
  'containerd-kube': (i, dataDir, runDir) => CHAINS['containerd-default'](i + 2, dataDir, runDir),
  // containerd's CRI: its loopback network, then the node's list (containerd's example: bridge + portmap)
  'containerd-default': (i, dataDir, runDir) => [
    loopbackNet,
    {
      name: 'containerd-net',
      ifname: 'eth0',
      caps: { portMappings: [{ hostPort: 18090 + i, containerPort: 80, protocol: 'tcp' }] },
      list: {
        cniVersion: '1.0.0',
        name: 'containerd-net',
        plugins: [
          { type: 'bridge', bridge: `cni${i}`, isGateway: true, ipMasq: true, promiscMode: true, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: `198.18.${210 + i}.0/24` }], [{ subnet: `fd00:${210 + i}::/64` }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] } },
          { type: 'portmap', capabilities: { portMappings: true }, dataDir: `${runDir}/portmap` },
        ],
      },
    },
  ],
  // kind's main plugin: ptp with masquerade, host-local
  ptp: (i, dataDir) => [
    { name: 'ptp-net', ifname: 'eth0', list: { cniVersion: '1.0.0', name: 'ptp-net', plugins: [{ type: 'ptp', ipMasq: true, mtu: 1500, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: `198.18.${220 + i}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }] } }] } },
  ],
  loopback: () => [loopbackNet],
  // the bridge group's network (bridge + host-local) as a list; timed as a chain only when served
  bridge: (i, dataDir) => [
    { name: 'rn-bridge', ifname: 'eth0', list: { cniVersion: '1.0.0', name: 'rn-bridge', plugins: [{ type: 'bridge', bridge: `rnbs${i}`, isGateway: true, ipam: { type: 'host-local', subnet: `198.18.${230 + i}.0/24`, dataDir } }] } },
  ],
};

// the served groups: the same lists on their own bridges, subnets and ports
for (const [served, base] of Object.entries(SERVED)) CHAINS[served] = (i, dataDir, runDir) => CHAINS[base](i + 4, dataDir, runDir);

/**
 * The nat table kube-proxy (iptables mode) writes for `n` ClusterIP services of two endpoints each,
 * as an iptables-restore script: KUBE-SERVICES jumped to from PREROUTING and OUTPUT, per service a
 * KUBE-SVC chain choosing an endpoint with `-m statistic`, per endpoint a KUBE-SEP chain with its
 * DNAT. Service addresses in 198.19.0.0/16, endpoints in 198.18.100.0-198.18.115.255.
 */
function kubeProxyRules(n) {
  const id = (i) => String(i).padStart(6, '0');
  const out = ['*nat', ':KUBE-SERVICES - [0:0]'];
  for (let i = 0; i < n; i++) out.push(`:KUBE-SVC-${id(i)} - [0:0]`, `:KUBE-SEP-${id(i)}A - [0:0]`, `:KUBE-SEP-${id(i)}B - [0:0]`);
  out.push('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES', '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
  for (let i = 0; i < n; i++) {
    const [hi, lo] = [Math.floor(i / 250), (i % 250) + 1];
    const svc = `"default/svc${i}:http"`;
    out.push(
      `-A KUBE-SERVICES -d 198.19.${hi}.${lo}/32 -p tcp -m comment --comment ${svc} -m tcp --dport 80 -j KUBE-SVC-${id(i)}`,
      `-A KUBE-SVC-${id(i)} -m comment --comment ${svc} -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-${id(i)}A`,
      `-A KUBE-SVC-${id(i)} -m comment --comment ${svc} -j KUBE-SEP-${id(i)}B`,
      `-A KUBE-SEP-${id(i)}A -p tcp -m comment --comment ${svc} -m tcp -j DNAT --to-destination 198.18.${100 + hi}.${lo}:8080`,
      `-A KUBE-SEP-${id(i)}B -p tcp -m comment --comment ${svc} -m tcp -j DNAT --to-destination 198.18.${108 + hi}.${lo}:8080`,
    );
  }
  return `${out.join('\n')}\nCOMMIT\n`;
}

/** The plugin types a chain's networks name (main and IPAM). */
const chainTypes = (nets) => [...new Set(nets.flatMap((n) => n.list.plugins.flatMap((p) => [p.type, p.ipam?.type].filter(Boolean))))];

/** A netfilter tool: what the issue's "at most one netfilter exec per plugin per verb" counts. */
const NETFILTER = /^(ip6?tables(-legacy|-nft)?(-save|-restore)?|nft|ebtables|xtables-.*)$/;

/**
 * The processes an `strace -ff -e trace=execve,clone,... -o prefix` run exec'd (one file per pid):
 * { total, byProgram, netfilterByPlugin }. A process counts once per successful execve; a netfilter
 * tool is charged to its nearest ancestor that is one of `plugins` (the chain's types). The files are
 * removed.
 */
function countExecs(dir, prefix, plugins) {
  const byProgram = {};
  const netfilterByPlugin = {};
  const prog = new Map(); // pid → program it exec'd last
  const parent = new Map(); // child pid → pid
  const execs = []; // [pid, program]
  let total = 0;
  for (const f of readdirSync(dir).filter((n) => n.startsWith(`${prefix}.`))) {
    const pid = Number(f.slice(prefix.length + 1));
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      const e = /^execve\("([^"]+)".* = 0$/.exec(line);
      if (e) {
        const name = e[1].split('/').pop();
        total++;
        byProgram[name] = (byProgram[name] ?? 0) + 1;
        prog.set(pid, name);
        execs.push([pid, name]);
        continue;
      }
      const c = /^(?:clone3?|v?fork)\(.* = (\d+)$/.exec(line);
      if (c) parent.set(Number(c[1]), pid);
    }
    rmSync(join(dir, f));
  }
  for (const [pid, name] of execs) {
    if (!NETFILTER.test(name)) continue;
    let p = parent.get(pid);
    while (p !== undefined && !plugins.includes(prog.get(p))) p = parent.get(p);
    const owner = p === undefined ? '(none)' : prog.get(p);
    netfilterByPlugin[owner] = (netfilterByPlugin[owner] ?? 0) + 1;
  }
  return { total, byProgram, netfilterByPlugin };
}

async function main() {
  const results = [];
  const skip = (name, reason) => {
    results.push({ name, skipped: reason });
    log(`${name}: skipped (${reason})`);
  };
  const record = (name, a, b, extra = {}) => {
    const r = { name, ours_ms: round(median(a)), reference_ms: round(median(b)), ratio: round(median(a) / median(b), 2), ...extra };
    results.push(r);
    log(`${name}: ours ${r.ours_ms} ms, reference ${r.reference_ms} ms, ratio ${r.ratio}`);
  };

  // version: a plugin's start-up, VERSION needs no libcni
  if (!want('version')) {
    /* not asked for */
  } else if (!has(OURS, 'host-local')) skip('version', `${join(OURS, 'host-local')} not built`);
  else {
    const t = { ours: [], reference: [] };
    for (let i = 0; i < ROUNDS * 4; i++) {
      for (const s of i % 2 ? ['reference', 'ours'] : ['ours', 'reference'])
        t[s].push((await timed(join(sides[s], 'host-local'), [], { env: { ...ENV, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.1.0"}' })).ms);
    }
    record('version', t.ours, t.reference);
  }

  ensureDriver();
  const host = `rn-bench-${hex()}`;
  const work = mkdtempSync(join(tmpdir(), 'rn-bench-'));
  const volatile = mkdtempSync('/dev/shm/rn-bench-'); // a tmpfs, as /run on a node
  const ctrs = new Set();
  const servers = new Set(); // plugin servers (child processes) the served groups started
  const newCtr = () => {
    const n = `rn-bc-${hex()}`;
    ctrs.add(n);
    return netnsAdd(n);
  };
  const dropCtr = (path) => {
    const n = path.split('/').pop();
    netnsDel(n);
    ctrs.delete(n);
  };
  const cleanup = () => {
    for (const c of servers) c.kill('SIGTERM');
    for (const n of ctrs) netnsDel(n);
    netnsDel(host);
    rmSync(work, { recursive: true, force: true });
    rmSync(volatile, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  /** Runs one case; a failure (a plugin error, a hang) is reported for that case, never a number. */
  const guard = async (names, fn) => {
    try {
      await fn();
    } catch (e) {
      for (const name of names) if (!results.some((r) => r.name === name)) {
        results.push({ name, failed: e.message });
        log(`${name}: FAILED (${e.message})`);
      }
    }
  };
  try {
    netnsAdd(host);
    if (!args.only || want('docker-plugin')) await guard(['docker-endpoint', 'docker-endpoint-ours-execd', 'docker-endpoint-chain'], async () => (await import('./docker-plugin.mjs')).default({ OURS, REF, ROUNDS, host, work, record, skip, log }));
    // one conf dir, cache dir and IPAM store per side, each its own bridge and subnet
    const setup = {};
    for (const [s, i] of [['ours', 0], ['reference', 1]]) {
      const d = join(work, s);
      mkdirSync(join(d, 'net.d'), { recursive: true });
      const list = {
        cniVersion: '1.0.0',
        name: 'rn-bench',
        plugins: [{ type: 'bridge', bridge: `rnb${i}`, isGateway: true, ipam: { type: 'host-local', subnet: `198.18.${128 + i * 16}.0/20`, dataDir: join(d, 'ipam') } }],
      };
      writeFileSync(join(d, 'net.d', 'bench.conflist'), JSON.stringify(list));
      // host-local alone, on an empty store and on one with 20,000 leases
      for (const store of ['Empty', '20k']) {
        mkdirSync(join(d, `net${store}`), { recursive: true });
        writeFileSync(
          join(d, `net${store}`, 'bench.conflist'),
          JSON.stringify({ cniVersion: '1.0.0', name: 'rn-bench', plugins: [{ type: 'host-local', ipam: { type: 'host-local', subnet: `198.${18 + i}.0.0/16`, dataDir: join(d, `ipam${store}`) } }] }),
        );
      }
      setup[s] = { dir: d, env: { ...ENV, CNI_PATH: s === 'ours' ? `${OURS}:${REF}` : REF, CNI_CACHEDIR: join(d, 'cache'), NETCONFPATH: join(d, 'net.d') } };
    }
    const cni = (s, cmd, ns, envOver = {}) => timed('ip', ['netns', 'exec', host, DRIVER, cmd, 'rn-bench', ns], { env: { ...setup[s].env, ...envOver } });
    const order = (i) => (i % 2 ? ['reference', 'ours'] : ['ours', 'reference']);

    // add, del, add-del-cycle: bridge + host-local, a fresh container netns per round
    if (!want('bridge')) {
      /* not asked for */
    } else if (!has(OURS, 'bridge', 'host-local')) for (const n of ['add', 'del', 'add-del-cycle', 'concurrent-64', 'peak-rss-add']) skip(n, `${OURS}/bridge or host-local not built`);
    else await guard(['add', 'del', 'add-del-cycle', 'concurrent-64', 'peak-rss-add'], async () => {
      const t = { add: { ours: [], reference: [] }, del: { ours: [], reference: [] }, cycle: { ours: [], reference: [] } };
      for (let i = 0; i < ROUNDS + 1; i++) {
        for (const s of order(i)) {
          const ns = newCtr();
          const a = await cni(s, 'add', ns);
          const d = await cni(s, 'del', ns);
          dropCtr(ns);
          if (i === 0) continue; // warm-up: first bridge creation, page cache
          t.add[s].push(a.ms);
          t.del[s].push(d.ms);
          t.cycle[s].push(a.ms + d.ms);
        }
      }
      record('add', t.add.ours, t.add.reference);
      record('del', t.del.ours, t.del.reference);
      record('add-del-cycle', t.cycle.ours, t.cycle.reference);

      // concurrent-64: 64 ADDs at once (host-local's lock serialises the IPAM part), timed to the last
      await guard(['concurrent-64'], async () => {
        const c = { ours: [], reference: [] };
        for (let i = 0; i < 3; i++) {
          for (const s of order(i)) {
            const nss = Array.from({ length: 64 }, newCtr);
            const t0 = process.hrtime.bigint();
            try {
              await Promise.all(nss.map((ns) => cni(s, 'add', ns)));
              c[s].push(Number(process.hrtime.bigint() - t0) / 1e6);
            } finally {
              await Promise.allSettled(nss.map((ns) => cni(s, 'del', ns)));
              nss.forEach(dropCtr);
            }
          }
        }
        record('concurrent-64', c.ours, c.reference);
      });

      // peak RSS of one ADD: the plugin processes alone (max over bridge and its IPAM delegate), via
      // /usr/bin/time; the Go driver would otherwise set the floor
      const rss = { ours: [], reference: [] };
      for (let i = 0; i < 3; i++) {
        for (const s of order(i)) {
          const ns = newCtr();
          const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'rn-bench', type: 'bridge', bridge: `rnb${s === 'ours' ? 0 : 1}`, isGateway: true, ipam: { type: 'host-local', subnet: `198.18.${s === 'ours' ? 128 : 144}.0/20`, dataDir: join(setup[s].dir, 'ipam') } });
          const env = { ...setup[s].env, CNI_CONTAINERID: `rss${i}`, CNI_NETNS: ns, CNI_IFNAME: 'eth0' };
          const r = await timed('ip', ['netns', 'exec', host, '/usr/bin/time', '-f', 'RSS %M', join(sides[s], 'bridge')], { env: { ...env, CNI_COMMAND: 'ADD' }, input: conf });
          rss[s].push(Number(/RSS (\d+)/.exec(r.err)[1]) / 1024);
          await timed('ip', ['netns', 'exec', host, join(sides[s], 'bridge')], { env: { ...env, CNI_COMMAND: 'DEL' }, input: conf });
          dropCtr(ns);
        }
      }
      const r = { name: 'peak-rss-add', unit: 'MiB', ours_ms: null, reference_ms: null, ours_mib: round(median(rss.ours)), reference_mib: round(median(rss.reference)), ratio: round(median(rss.ours) / median(rss.reference), 2) };
      results.push(r);
      log(`peak-rss-add: ours ${r.ours_mib} MiB, reference ${r.reference_mib} MiB, ratio ${r.ratio}`);
    });

    // host-local alone: ADD and DEL on an empty store, then with 20,000 leases in the
    // reference-format store (the reference walks the whole store on every ADD and DEL).
    const hlCases = ['host-local-add-empty', 'host-local-del-empty', 'host-local-add-20k', 'host-local-del-20k', 'host-local-20k'];
    if (!want('host-local')) {
      /* not asked for */
    } else if (!has(OURS, 'host-local')) for (const n of hlCases) skip(n, `${join(OURS, 'host-local')} not built`);
    else await guard(hlCases, async () => {
      const gen = await leaseGenerator(work);
      const ns = newCtr();
      for (const store of ['empty', '20k']) {
        if (store === '20k') for (const [s, i] of [['ours', 0], ['reference', 1]]) gen(join(setup[s].dir, 'ipam20k'), 'rn-bench', `198.${18 + i}.0.0`, 20000);
        const t = { add: { ours: [], reference: [] }, del: { ours: [], reference: [] }, cycle: { ours: [], reference: [] } };
        for (let i = 0; i < ROUNDS + 1; i++) {
          for (const s of order(i)) {
            const env = { NETCONFPATH: join(setup[s].dir, store === '20k' ? 'net20k' : 'netEmpty') };
            const a = await cni(s, 'add', ns, env);
            const d = await cni(s, 'del', ns, env);
            if (i === 0) continue; // round 0 warms up (our lease index is built once)
            t.add[s].push(a.ms);
            t.del[s].push(d.ms);
            t.cycle[s].push(a.ms + d.ms);
          }
        }
        record(`host-local-add-${store}`, t.add.ours, t.add.reference);
        record(`host-local-del-${store}`, t.del.ours, t.del.reference);
        if (store === '20k') record('host-local-20k', t.cycle.ours, t.cycle.reference);
      }
      dropCtr(ns);
    });

    // The chains, ours alone against the reference alone: per side its own host netns, conf dir,
    // cache and IPAM store, CNI_PATH = that side's directory and nothing else. A round is one pod's
    // ADD of every network then DEL of every network, in a fresh pod netns; then one more pod under
    // strace counts the processes each side execs for it (the driver's own exec not counted).
    const linked = ourPlugins();
    for (const chain of CHAIN_GROUPS) {
      if (!want(chain)) continue;
      const missing = chainTypes(CHAINS[chain](0, '')).filter((t) => !linked.includes(t));
      if (missing.length) {
        skip(`${chain}-cycle`, `no ${missing.join(', ')}`);
        skip(`${chain}-execs`, `no ${missing.join(', ')}`);
        skip(`${chain}-netfilter-max`, `no ${missing.join(', ')}`);
        continue;
      }
      await guard([`${chain}-cycle`, `${chain}-execs`, `${chain}-netfilter-max`], async () => {
        const side = {};
        for (const [s, i] of [['ours', 0], ['reference', 1]]) {
          const d = join(work, `${chain}-${s}`);
          mkdirSync(join(d, 'net.d'), { recursive: true });
          const nets = CHAINS[chain](i, join(d, 'ipam'), join(volatile, `${chain}-${s}`));
          for (const n of nets) writeFileSync(join(d, 'net.d', `${n.name}.conflist`), JSON.stringify(n.list));
          const h = `rn-bench-${hex()}`;
          ctrs.add(h);
          netnsAdd(h);
          side[s] = { host: h, nets, dir: d, env: { ...ENV, CNI_PATH: sides[s], CNI_CACHEDIR: join(d, 'cache'), NETCONFPATH: join(d, 'net.d') } };
        }
        const served = Object.hasOwn(SERVED, chain);
        const enter = (h) => (served ? ['nsenter', `--net=/var/run/netns/${h}`] : ['ip', 'netns', 'exec', h]);
        const server = served ? await startPluginServer(side.ours.host) : undefined;
        if (server) servers.add(server);
        const run = (s, cmd, net, ns, wrap = []) =>
          timed(enter(side[s].host)[0], [...enter(side[s].host).slice(1), ...wrap, DRIVER, cmd, net.name, ns], {
            env: { ...side[s].env, CNI_IFNAME: net.ifname, ...(net.caps ? { CAP_ARGS: JSON.stringify(net.caps) } : {}) },
          });
        /** One pod's ADD of every network, then DEL of each in reverse: { add, del } in ms. */
        const cycle = async (s, wrap = () => []) => {
          const ns = newCtr();
          ip('netns', 'exec', ns.split('/').pop(), 'ip', 'link', 'set', 'lo', 'down'); // as a runtime's fresh sandbox
          let add = 0;
          let del = 0;
          try {
            for (const n of side[s].nets) add += (await run(s, 'add', n, ns, wrap('add'))).ms;
            for (const n of [...side[s].nets].reverse()) del += (await run(s, 'del', n, ns, wrap('del'))).ms;
          } finally {
            dropCtr(ns);
          }
          return { add, del };
        };
        if (chain === 'podman-busy') {
          for (const s of ['ours', 'reference']) {
            const [net] = side[s].nets;
            for (let k = 0; k < BUSY_PODS; k++) {
              const caps = { portMappings: [{ hostPort: 30000 + k, containerPort: 80, protocol: 'tcp' }] };
              await timed('ip', ['netns', 'exec', side[s].host, DRIVER, 'add', net.name, newCtr()], { env: { ...side[s].env, CNI_IFNAME: net.ifname, CAP_ARGS: JSON.stringify(caps) } });
            }
          }
          log(`${chain}: ${BUSY_PODS} pods attached on each side`);
        }
        if (chain === 'containerd-kube') {
          const rules = kubeProxyRules(KUBE_SERVICES);
          for (const s of ['ours', 'reference']) execFileSync('ip', ['netns', 'exec', side[s].host, 'iptables-restore', '--noflush'], { input: rules });
          log(`${chain}: kube-proxy's rules for ${KUBE_SERVICES} services in each side's nat table`);
        }
        const t = { ours: [], reference: [] };
        for (let i = 0; i < ROUNDS + 1; i++) {
          for (const s of order(i)) {
            const c = await cycle(s);
            if (i > 0) t[s].push(c.add + c.del); // round 0 warms up (bridge and chains created)
          }
        }
        record(`${chain}-cycle`, t.ours, t.reference);
        if (server) log(`${chain}: the plugin server's resident memory (${server.pid}): ${/VmRSS:\s*(.*)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))?.[1]}`);

        const execs = {};
        for (const s of ['ours', 'reference']) {
          await cycle(s, (verb) => ['strace', '-ff', '-qq', '-e', 'trace=execve,clone,clone3,fork,vfork', '-e', 'signal=none', '-o', join(side[s].dir, `strace-${verb}`)]);
          // every file is one process; each ADD/DEL's driver exec is not a plugin's
          const types = chainTypes(side[s].nets);
          const add = countExecs(side[s].dir, 'strace-add', types);
          const del = countExecs(side[s].dir, 'strace-del', types);
          const drivers = side[s].nets.length;
          for (const x of [add, del]) {
            x.total -= drivers;
            x.byProgram['libcni-driver'] -= drivers;
            if (!x.byProgram['libcni-driver']) delete x.byProgram['libcni-driver'];
          }
          execs[s] = {
            add: add.total,
            del: del.total,
            add_by_program: add.byProgram,
            del_by_program: del.byProgram,
            add_netfilter_by_plugin: add.netfilterByPlugin,
            del_netfilter_by_plugin: del.netfilterByPlugin,
            // the most netfilter processes one plugin exec'd in one verb (the issue's target: ≤ 1)
            netfilter_max: Math.max(0, ...Object.values(add.netfilterByPlugin), ...Object.values(del.netfilterByPlugin)),
          };
        }
        const r = {
          name: `${chain}-execs`,
          unit: 'execs',
          ours_ms: null,
          reference_ms: null,
          ours_execs: execs.ours,
          reference_execs: execs.reference,
          ratio: round((execs.ours.add + execs.ours.del) / (execs.reference.add + execs.reference.del), 2),
        };
        results.push(r);
        const nf = { name: `${chain}-netfilter-max`, unit: 'count', ours_ms: null, reference_ms: null, ours_count: execs.ours.netfilter_max, reference_count: execs.reference.netfilter_max, ratio: round(execs.ours.netfilter_max / Math.max(1, execs.reference.netfilter_max), 2) };
        results.push(nf);
        for (const s of ['ours', 'reference'])
          log(`${chain}-execs per pod, ${s}: ADD ${execs[s].add} ${JSON.stringify(execs[s].add_by_program)}, netfilter by plugin ${JSON.stringify(execs[s].add_netfilter_by_plugin)}; DEL ${execs[s].del} ${JSON.stringify(execs[s].del_by_program)}, netfilter by plugin ${JSON.stringify(execs[s].del_netfilter_by_plugin)}`);
      });
    }
    if (!args.only || want('cnm')) await (await import('./cnm.mjs')).benchCnm({ ours: OURS, rounds: ROUNDS, timed, record, skip, guard, log });
  } finally {
    cleanup();
  }
  return results;
}

/** Starts `plugin-server` in the netns `host` (nsenter: this mount namespace); resolves with the child once it listens. */
function startPluginServer(host) {
  return new Promise((res, rej) => {
    const c = spawn('nsenter', [`--net=/var/run/netns/${host}`, join(OURS, 'plugin-server')], { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => {
      err += d;
      if (err.includes('listening on')) res(c);
    });
    c.on('error', rej);
    c.on('exit', (code) => rej(new Error(`plugin-server exited ${code}: ${err.trim()}`)));
  });
}

function round(x, d = 1) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** "N execs (ADD a + DEL d)" for the table. */
const execCell = (e) => `${e.add + e.del} execs (ADD ${e.add} + DEL ${e.del})`;

const results = await main();
if (!args.only || want('overlay')) results.push(...(await (await import('./overlay.mjs')).overlayCases({ ours: OURS, rounds: ROUNDS, log })));
if (JSON_OUT) process.stdout.write(JSON.stringify({ cases: results }) + '\n');
else {
  const rows = results.map((r) =>
    r.skipped || r.failed
      ? [r.name, '-', '-', r.skipped ? `skipped: ${r.skipped}` : `FAILED: ${r.failed.slice(0, 160)}`]
      : r.unit === 'execs'
        ? [r.name, execCell(r.ours_execs), execCell(r.reference_execs), `${r.ratio}`]
        : r.unit === 'count'
        ? [r.name, `${r.ours_count}`, `${r.reference_count}`, `${r.ratio}`]
        : r.unit
        ? [r.name, `${r.ours_mib} MiB`, `${r.reference_mib} MiB`, `${r.ratio}`]
        : [r.name, `${r.ours_ms} ms`, `${r.reference_ms} ms`, `${r.ratio}`],
  );
  const head = ['case', 'ours', 'reference', 'ratio ours/ref'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  process.stdout.write([line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n');
  process.stdout.write(`(medians of ${ROUNDS} rounds${want('bridge') ? ', concurrent-64 and peak-rss of 3' : ''}; *-execs: processes exec'd per pod, one pod under strace; *-netfilter-max: most netfilter tools one plugin exec'd in one verb; ours = ${OURS}, reference = ${REF}, driven by ${DRIVER} = Debian libcni 1.1.2)\n`);
}
