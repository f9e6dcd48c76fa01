// `cnikit plugin-server`: plugins exec'd in a host netns hand their verbs to the server running there,
// which runs them warm and in-process. Real namespaces, the built executable; the server and the
// plugins it serves enter the scratch host netns with `nsenter --net` (one mount namespace), as a
// runtime and a node's server would share the host's.
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ipj, Lab, type CallOpts } from './bridge-harness';
import { binDir } from '../support/cni';

jest.setTimeout(120000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A running `plugin-server` in a scratch host netns. */
class PluginServer {
  stderr = '';
  private exited: Promise<number | null>;
  private constructor(private readonly child: ChildProcess) {
    child.stderr!.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((res) => child.on('exit', (code) => res(code)));
  }

  /** Starts it with `args` and resolves once it listens; rejects with its stderr when it exits first. */
  static start(host: string, args: string[] = []): Promise<PluginServer> {
    const s = new PluginServer(spawn('nsenter', [`--net=/var/run/netns/${host}`, join(binDir(), 'plugin-server'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] }));
    return new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`plugin-server did not listen within 10 s: ${s.stderr}`)), 10000);
      s.child.stderr!.on('data', () => s.stderr.includes('listening on') && (clearTimeout(timer), res(s)));
      void s.exited.then((code) => (clearTimeout(timer), rej(new Error(`plugin-server exited ${code}: ${s.stderr}`))));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends `signal` and resolves with the exit code (null when a signal ended it). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

let lab: Lab | undefined;
let server: PluginServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  await lab?.dispose();
  lab = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const scratch = (prefix: string): string => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};

/** The process tag of a debug log's lines: `<plugin>[<pid>]` of whoever ran the verb. */
const ranIn = (stderr: string, plugin: string): number[] => [...new Set([...stderr.matchAll(new RegExp(`${plugin}\\[(\\d+)\\]`, 'g'))].map((m) => Number(m[1])))];

const DEBUG = { CNIKIT_LOG: 'debug' };
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** host-local's config on `subnet` with data under the lab; its store (and lock file) made by a DEL. */
async function hostLocal(subnet: string): Promise<Record<string, unknown>> {
  const conf = { cniVersion: '1.0.0', name: 'brnet', type: 'host-local', ipam: { type: 'host-local', dataDir: lab!.dataDir, subnet, lockTimeoutMs: 20000 } };
  expect((await lab!.call('DEL', conf, { plugin: 'host-local', nsenter: true })).exitCode).toBe(0);
  return conf;
}

/** Holds host-local's store lock (flock(1) and its sleep, one process group) until the returned function is first called. */
async function holdStoreLock(): Promise<() => Promise<void>> {
  const holder = execa('flock', [join(lab!.dataDir, 'brnet', 'lock'), 'sleep', '30'], { reject: false, detached: true, stdio: 'ignore' });
  await sleep(300);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    process.kill(-holder.pid!, 'SIGKILL');
    await holder;
  };
}

test("podman's chain (bridge with ipMasq, portmap, firewall, tuning) served by the plugin server gives the results, rules and pod state a run in-process gives, and its DEL leaves no rule of the pod and what the in-process DEL leaves", async () => {
  lab = await Lab.create(1);
  const [pod] = lab.pods as [string];
  server = await PluginServer.start(lab.host, ['--threads', '2']);
  const run = scratch('ps-run-');
  const chain = [
    { cniVersion: '1.0.0', name: 'podnet', type: 'bridge', bridge: 'cni-ps0', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'static', addresses: [{ address: '198.18.7.10/24', gateway: '198.18.7.1' }], routes: [{ dst: '0.0.0.0/0' }] } },
    { cniVersion: '1.0.0', name: 'podnet', type: 'portmap', capabilities: { portMappings: true }, dataDir: join(run, 'portmap'), runtimeConfig: { portMappings: [{ hostPort: 18099, containerPort: 80, protocol: 'tcp' }] } },
    { cniVersion: '1.0.0', name: 'podnet', type: 'firewall', dataDir: join(run, 'firewall') },
    { cniVersion: '1.0.0', name: 'podnet', type: 'tuning', dataDir: join(run, 'tuning'), sysctl: { 'net.ipv4.conf.eth0.accept_redirects': '0' } },
  ];
  const tables = async (): Promise<string> =>
    (await execa('ip', ['netns', 'exec', lab!.host, 'iptables-save'])).stdout
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/ \[\d+:\d+\]$/, ''))
      .join('\n');
  // The host veth's name and the MACs are random per ADD.
  const noMacs = (r: Json): Json => JSON.parse(JSON.stringify(r).replace(/"mac":"[0-9a-f:]+"/g, '"mac":"-"').replace(/"veth[0-9a-f]{8}"/g, '"veth-"'));

  /** ADD of the chain, CHECK, DEL twice; what each step printed and the state after ADD and after DEL. */
  const cycle = async (o: CallOpts) => {
    let prev: Json = undefined;
    const pids: number[] = [];
    for (const c of chain) {
      const r = await lab!.call('ADD', prev ? { ...c, prevResult: prev } : c, { ...o, plugin: c.type, env: { ...o.env, ...DEBUG } });
      expect([c.type, r.exitCode, r.stdout.slice(0, 300)]).toEqual([c.type, 0, expect.any(String)]);
      pids.push(...ranIn(r.stderr, c.type));
      prev = r.json;
    }
    const added = { result: noMacs(prev), tables: await tables(), addrs: (await ipj(pod, '-4', 'addr', 'show', 'eth0'))[0].addr_info, redirects: (await execa('ip', ['netns', 'exec', pod, 'sysctl', '-n', 'net.ipv4.conf.eth0.accept_redirects'])).stdout };
    for (const c of chain) expect((await lab!.call('CHECK', { ...c, prevResult: prev }, { ...o, plugin: c.type })).stdout).toBe('');
    for (const c of [...chain].reverse()) for (let i = 0; i < 2; i++) expect((await lab!.call('DEL', { ...c, prevResult: prev }, { ...o, plugin: c.type })).exitCode).toBe(0);
    const deleted = await tables();
    expect(deleted).not.toMatch(/198\.18\.7\.|18099|CNI-DN-|CNI-SN-|CNI-[0-9a-f]{24}/);
    expect(await ipj(pod, 'link', 'show', 'eth0').catch(() => [])).toEqual([]);
    return { added, deleted, pids };
  };

  const served = await cycle({ nsenter: true });
  const here = await cycle({ nsenter: true, env: { CNIKIT_PLUGIN_SERVER: 'off' } });
  // Every verb of the served cycle ran in the server's process; none of the other cycle did.
  expect(served.pids).toEqual([server.pid, server.pid, server.pid, server.pid]);
  expect(here.pids).not.toContain(server.pid);
  expect(here.pids).toHaveLength(4);
  expect(served.added).toEqual(here.added);
  expect(served.deleted).toBe(here.deleted); // what both leave: the shared chains (CNI-FORWARD, CNI-HOSTPORT-*), as the reference does
  expect(served.added.tables).toContain('--dport 18099 -j DNAT --to-destination 198.18.7.10:80');
  expect(served.added.redirects).toBe('0');
});

test("a plugin error through the server is the CNI error JSON and exit code the plugin gives in-process; DEL without a netns is served too; a delegated host-local's log lines reach the plugin's stderr", async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host);
  const bad = { cniVersion: '1.0.0', name: 'brnet', type: 'bridge', bridge: 'cni0', mtu: 'big', ipam: { type: 'host-local', dataDir: lab.dataDir, subnet: '198.18.8.0/24' } };
  const served = await lab.call('ADD', bad, { nsenter: true, env: DEBUG });
  const here = await lab.call('ADD', bad, { nsenter: true, env: { CNIKIT_PLUGIN_SERVER: 'off' } });
  expect(ranIn(served.stderr, 'bridge')).toEqual([server.pid]);
  expect([served.exitCode, served.stdout]).toEqual([1, here.stdout]);
  expect(served.json.code).toBe(7);
  const del = await lab.call('DEL', lab.conf(), { nsenter: true, pod: '', env: DEBUG });
  expect([del.exitCode, del.stdout, ranIn(del.stderr, 'bridge')]).toEqual([0, '', [server.pid]]);
  const add = await lab.call('ADD', lab.conf(), { nsenter: true, env: DEBUG });
  expect([add.exitCode, ranIn(add.stderr, 'bridge'), ranIn(add.stderr, 'host-local')]).toEqual([0, [server.pid], [server.pid]]);
  expect(server.stderr).not.toContain('host-local[');
});

test("16 bridge ADDs started at once through a 4-thread server all succeed with distinct addresses, served, and their DELs release every lease", async () => {
  lab = await Lab.create(16);
  server = await PluginServer.start(lab.host, ['--threads', '4']);
  const conf = lab.conf({}, ['198.18.9.0/24']);
  const adds = await Promise.all(lab.pods.map((p) => lab!.call('ADD', conf, { pod: p, nsenter: true, env: DEBUG })));
  expect(adds.map((r) => r.exitCode)).toEqual(Array(16).fill(0));
  expect(new Set(adds.flatMap((r) => ranIn(r.stderr, 'bridge')))).toEqual(new Set([server.pid]));
  expect(new Set(adds.map((r) => r.json.ips[0].address)).size).toBe(16);
  expect(lab.leases()).toHaveLength(16);
  const dels = await Promise.all(lab.pods.map((p) => lab!.call('DEL', conf, { pod: p, nsenter: true })));
  expect(dels.map((r) => r.exitCode)).toEqual(Array(16).fill(0));
  expect(lab.leases()).toEqual([]);
});

test('a plugin in another mount namespace (ip netns exec), of another executable file, with another umask or fewer capabilities, a relative CNI_PATH entry, CNIKIT_PLUGIN_SERVER=off or its stdout closed runs itself, with the same result', async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host);
  const lo = { cniVersion: '1.0.0', name: 'lo', type: 'loopback' };
  const call = (o: CallOpts) => lab!.call('ADD', lo, { plugin: 'loopback', ...o, env: { ...DEBUG, ...o.env } });
  const served = await call({ nsenter: true });
  expect(ranIn(served.stderr, 'loopback')).toEqual([server.pid]);

  const otherMnt = await call({});
  expect(otherMnt.stderr).toContain('the plugin server declined (the client runs in another mount namespace); running here');
  const copy = join(scratch('ps-copy-'), 'loopback');
  copyFileSync(join(binDir(), 'cnikit'), copy);
  const otherExe = await call({ nsenter: true, binary: copy });
  expect(otherExe.stderr).toContain("the plugin server declined (the client's executable is not the server's");
  const off = await call({ nsenter: true, env: { CNIKIT_PLUGIN_SERVER: 'off' } });
  const relative = await call({ nsenter: true, cniPath: `${binDir()}:bin` });
  expect(relative.stderr).toContain('the plugin server declined (a relative path in CNI_PATH or CNIKIT_LOG_FILE)');
  const umask = await call({ nsenter: true, wrap: ['sh', '-c', 'umask 077; exec "$0"'] });
  const fewerCaps = await call({ nsenter: true, wrap: ['setpriv', '--bounding-set=-sys_module'] });
  for (const r of [umask, fewerCaps]) expect(r.stderr).toContain("the plugin server declined (the client's umask, capabilities, seccomp filter or security label are not the server's)");
  for (const r of [otherMnt, otherExe, off, relative, umask, fewerCaps]) {
    expect(ranIn(r.stderr, 'loopback')).not.toContain(server.pid);
    expect([r.exitCode, r.json]).toEqual([0, served.json]);
  }
  // A closed stdout: the plugin itself reports that its result cannot be written (exit 1).
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: `/var/run/netns/${lab.pods[0]}`, CNI_IFNAME: 'lo', CNI_PATH: binDir(), ...DEBUG };
  const closed = await execa('nsenter', [`--net=/var/run/netns/${lab.host}`, 'sh', '-c', `exec "$0" >&-`, join(binDir(), 'loopback')], { input: JSON.stringify(lo), env, reject: false });
  expect(closed.exitCode).toBe(1);
  expect(closed.stderr).toContain('the plugin server declined (stdout was closed when the plugin started)');
  expect(closed.stderr).toContain('cannot write the result to stdout: stdout was closed when the plugin started');
});

test("only clients of the server's uid are served, and a listener of another uid on the server's name gets no config from a plugin", async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host);
  const asNobody = (script: string) =>
    execa('nsenter', [`--net=/var/run/netns/${lab!.host}`, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', script], { reject: false, timeout: 20000 });
  // The answer to a client of uid 65534, which sends nothing: declined before anything is read.
  const answer = await asNobody(
    "import socket,struct\ns=socket.socket(socket.AF_UNIX)\ns.connect('\\0cnikit/plugin-server')\nn=struct.unpack('<I',s.recv(4))[0]\nprint(s.recv(n).decode())",
  );
  expect(JSON.parse(answer.stdout)).toEqual({ declined: "the client's uid 65534 is not the server's (0)" });

  await server.stop();
  server = undefined;
  // A squatter of uid 65534 on the name: it counts the bytes any client sends it.
  const squatter = execa('nsenter', [`--net=/var/run/netns/${lab.host}`, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-u', '-c',
    "import socket\ns=socket.socket(socket.AF_UNIX)\ns.bind('\\0cnikit/plugin-server')\ns.listen(8)\nprint('listening',flush=True)\nn=0\nwhile True:\n  c,_=s.accept()\n  c.settimeout(0.5)\n  try:\n    while True:\n      d=c.recv(65536)\n      if not d: break\n      n+=len(d)\n  except Exception: pass\n  print('got',n,flush=True)\n"], { reject: false });
  try {
    await new Promise<void>((res) => squatter.stdout!.on('data', (d: Buffer) => String(d).includes('listening') && res()));
    const r = await lab.call('ADD', { cniVersion: '1.0.0', name: 'lo', type: 'loopback' }, { plugin: 'loopback', nsenter: true, env: DEBUG });
    expect(r.exitCode).toBe(0);
    expect(r.json.ips[0].address).toBe('127.0.0.1/8');
    await new Promise((res) => setTimeout(res, 700));
  } finally {
    squatter.kill('SIGKILL');
  }
  // It was connected to (a connect cannot tell) and closed on at once: not one byte reached it.
  expect((await squatter).stdout).toBe('listening\ngot 0');
});

test('a listener of another uid that fills its backlog and never accepts does not hang a plugin: it runs its verb itself at once', async () => {
  lab = await Lab.create(1);
  const squatter = execa('nsenter', [`--net=/var/run/netns/${lab.host}`, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-u', '-c',
    "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind('\\0cnikit/plugin-server')\ns.listen(0)\nfill=[]\nfor i in range(2):\n  c=socket.socket(socket.AF_UNIX)\n  c.setblocking(False)\n  try: c.connect('\\0cnikit/plugin-server')\n  except OSError: pass\n  fill.append(c)\nprint('full',flush=True)\ntime.sleep(60)\n"], { reject: false });
  try {
    await new Promise<void>((res) => squatter.stdout!.on('data', (d: Buffer) => String(d).includes('full') && res()));
    const t0 = Date.now();
    const r = await lab.call('ADD', { cniVersion: '1.0.0', name: 'lo', type: 'loopback' }, { plugin: 'loopback', nsenter: true });
    expect([r.exitCode, r.json.ips[0].address]).toEqual([0, '127.0.0.1/8']);
    expect(Date.now() - t0).toBeLessThan(3000);
  } finally {
    squatter.kill('SIGKILL');
    await squatter;
  }
});

test('a verb whose server goes away before it answers is a CNI error (code 999) and is not run again by the plugin', async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host);
  const conf = await hostLocal('198.18.10.0/24');
  const release = await holdStoreLock(); // the served ADD waits in the server
  try {
    const add = lab.call('ADD', conf, { plugin: 'host-local', nsenter: true });
    await sleep(700);
    await server.stop('SIGKILL');
    server = undefined;
    const r = await add;
    expect(r.exitCode).toBe(1);
    expect(r.json.code).toBe(999);
    expect(r.json.msg).toMatch(/^the plugin server's connection was lost during the verb \(.*\); its outcome is unknown$/);
  } finally {
    await release();
  }
  expect(lab.leases()).toEqual([]);
});

test('with every thread busy longer than a plugin waits for an answer (1 s), a new plugin runs its verb itself; the verbs in flight finish, served', async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host, ['--threads', '2']);
  const conf = await hostLocal('198.18.12.0/24');
  const release = await holdStoreLock();
  let held: Awaited<ReturnType<Lab['call']>>[];
  try {
    const adds = ['c1', 'c2'].map((id) => lab!.call('ADD', conf, { plugin: 'host-local', id, nsenter: true, env: DEBUG }));
    await sleep(500);
    const t0 = Date.now();
    const lo = await lab.call('ADD', { cniVersion: '1.0.0', name: 'lo', type: 'loopback' }, { plugin: 'loopback', nsenter: true, env: DEBUG });
    const waited = Date.now() - t0;
    expect([lo.exitCode, lo.json.ips[0].address]).toEqual([0, '127.0.0.1/8']);
    expect(ranIn(lo.stderr, 'loopback')).not.toContain(server.pid);
    expect(waited).toBeGreaterThanOrEqual(1000);
    expect(waited).toBeLessThan(5000);
    await release();
    held = await Promise.all(adds);
  } finally {
    await release();
  }
  expect(held.map((r) => [r.exitCode, ranIn(r.stderr, 'host-local')])).toEqual([[0, [server.pid]], [0, [server.pid]]]);
  expect(lab.leases()).toHaveLength(2);
});

test("an ADD whose plugin process was killed while the server ran it (a runtime's timeout) is taken back once it finishes: no lease stays", async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host);
  const conf = await hostLocal('198.18.13.0/24');
  const log = join(scratch('ps-log-'), 'plugins.log');
  const release = await holdStoreLock();
  try {
    const env = { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'killed', CNI_NETNS: `/var/run/netns/${lab.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir(), CNIKIT_LOG: 'debug', CNIKIT_LOG_FILE: log };
    const add = execa('nsenter', [`--net=/var/run/netns/${lab.host}`, join(binDir(), 'host-local')], { input: JSON.stringify(conf), env, extendEnv: false, reject: false });
    await sleep(500);
    add.kill('SIGKILL');
    expect((await add).signal).toBe('SIGKILL');
  } finally {
    await release();
  }
  for (let i = 0; i < 50 && !/host-local\[\d+\] DEL debug: DEL: /.test(readFileSync(log, 'utf8')); i++) await sleep(100);
  const lines = readFileSync(log, 'utf8');
  // The server ran the ADD to its end (a lease was taken), then its DEL.
  expect(lines).toMatch(new RegExp(`host-local\\[${server.pid}\\] ADD debug: ADD: `));
  expect(lines).toMatch(new RegExp(`host-local\\[${server.pid}\\] DEL debug: DEL: `));
  expect(lab.leases()).toEqual([]);
});

test('SIGTERM: the server takes no new verb, lets the verb in flight finish, then exits 0', async () => {
  lab = await Lab.create(1);
  server = await PluginServer.start(lab.host, ['--threads', '2']);
  const conf = await hostLocal('198.18.11.0/24');
  const release = await holdStoreLock();
  let add: Promise<Awaited<ReturnType<Lab['call']>>>;
  const exited = (async () => {
    add = lab!.call('ADD', conf, { plugin: 'host-local', nsenter: true, env: DEBUG });
    await sleep(700);
    return server!.stop('SIGTERM');
  })();
  try {
    await sleep(1200);
    // Stopping, the server waits for the ADD; a new verb meanwhile runs itself.
    const lo = await lab.call('ADD', { cniVersion: '1.0.0', name: 'lo', type: 'loopback' }, { plugin: 'loopback', nsenter: true, env: DEBUG });
    expect(lo.exitCode).toBe(0);
    expect(ranIn(lo.stderr, 'loopback')).not.toContain(server.pid);
    expect(lab.leases()).toEqual([]);
  } finally {
    await release();
  }
  const r = await add!;
  expect([r.exitCode, ranIn(r.stderr, 'host-local')]).toEqual([0, [server.pid]]);
  expect(lab.leases()).toEqual([r.json.ips[0].address.split('/')[0]]);
  expect(await exited).toBe(0);
  server = undefined;
});

test('plugin-server: a bad option is one usage line naming it (exit 2), --version prints the build, a second server in the netns exits 1 saying one listens, SIGTERM stops it with 0', async () => {
  lab = await Lab.create(0);
  const bin = join(binDir(), 'plugin-server');
  const enter = ['nsenter', `--net=/var/run/netns/${lab.host}`];
  for (const [bad, says] of [
    [['--threads', '0'], '--threads: "0" is not a number from 1 to 64'],
    [['--threads', '65'], '--threads: "65" is not a number from 1 to 64'],
    [['--threads', 'x'], '--threads: "x" is not a number from 1 to 64'],
    [['--threads'], "Option '--threads <value>' argument missing"],
    [['--bogus'], "Unknown option '--bogus'"],
    [['extra'], "Unexpected argument 'extra'"],
  ] as const) {
    const r = await execa(enter[0]!, [...enter.slice(1), bin, ...bad], { reject: false });
    expect([bad, r.exitCode, r.stderr]).toEqual([bad, 2, `plugin-server: ${says} (see plugin-server --help)`]);
  }
  const version = await execa(enter[0]!, [...enter.slice(1), bin, '--version'], { reject: false });
  expect([version.exitCode, version.stdout]).toEqual([0, (await execa(join(binDir(), 'cnikit'), ['--version'])).stdout]);
  const help = await execa(enter[0]!, [...enter.slice(1), bin, '--help'], { reject: false });
  expect([help.exitCode, help.stdout]).toEqual([0, expect.stringContaining('usage: plugin-server [--threads N]')]);
  server = await PluginServer.start(lab.host);
  const second = await execa(enter[0]!, [...enter.slice(1), bin], { reject: false });
  expect([second.exitCode, second.stderr]).toEqual([1, 'plugin-server: cannot listen on @cnikit/plugin-server: another plugin server already listens in this network namespace']);
  expect(await server.stop('SIGTERM')).toBe(0);
  server = undefined;
});
