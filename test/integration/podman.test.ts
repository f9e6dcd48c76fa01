// podman 4 (Debian 12's 4.3, CNI network backend) on our directory alone: cni_plugin_dirs holds our
// bin directory and nothing else, so no reference plugin is reachable. podman runs in a scratch host
// netns (nsenter --net) and a private mount namespace whose /run, /var/lib, /var/tmp, /etc/cni/net.d
// and /sys/fs/cgroup are fresh tmpfs: container storage (vfs), netns files, CNI cache, IPAM leases and
// network configs all vanish with it, and nothing reaches the machine's root netns or disk. The image
// is made here (`podman import` of busybox-static), no registry is involved.
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, binDir, delNetns, linkedPlugins, missingPlugins, nsName } from '../support/cni';

jest.setTimeout(180000);

/**
 * The list `podman network create` writes with the CNI backend (podman 4.3: libpod/network/cni),
 * as types; the first test checks podman still writes exactly this, so the skip below is honest.
 */
const PODMAN_DEFAULT = { plugins: [{ type: 'bridge', ipam: { type: 'host-local' } }, { type: 'portmap' }, { type: 'firewall' }, { type: 'tuning' }] };
const IMAGE = 'localhost/cnikit-busybox:1';
const REFERENCE_DIRS = ['/usr/libexec/cni', '/usr/lib/cni', '/usr/local/lib/cni', '/opt/cni/bin'];
/** Where our plugins log (CNIKIT_LOG_FILE), inside the private /run. */
const PLUGIN_LOG = '/run/cnikit-plugins.log';
const PAGE = 'published through cnikit';

class Podman {
  readonly host = nsName('pdm-h');
  private readonly work = mkdtempSync(join(tmpdir(), 'pdm-'));
  private holder?: ChildProcess;
  private server?: ChildProcess;

  /** Starts the namespace holder (a `sleep` in the host netns and the private mount namespace). */
  async start(): Promise<void> {
    if ((await execa('podman', ['--version'], { reject: false })).exitCode !== 0) throw new Error('podman is not installed (Debian 12: apt-get install podman; .ci/run installs it)');
    await addNetns(this.host);
    // containers.conf: the CNI backend, our directory only, no cgroups (none are needed; crun refuses
    // this machine's hybrid v1/v2 layout even then, hence the empty tmpfs over /sys/fs/cgroup below).
    writeFileSync(
      join(this.work, 'containers.conf'),
      [
        '[containers]',
        'cgroups = "disabled"',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = [${JSON.stringify(binDir())}]`,
        'network_config_dir = "/etc/cni/net.d"',
        '[engine]',
        // Also here, not only in the CLI's environment: the teardown may run in the `podman container
        // cleanup` that conmon starts, which reads this file but need not inherit the CLI's environment.
        `env = ["CNIKIT_LOG=debug", "CNIKIT_LOG_FILE=${PLUGIN_LOG}"]`,
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        'runtime = "crun"',
        '',
      ].join('\n'),
    );
    // the image: busybox-static as /bin/busybox, its applets as links, one page for httpd
    const root = join(this.work, 'rootfs');
    mkdirSync(join(root, 'bin'), { recursive: true });
    mkdirSync(join(root, 'www'));
    copyFileSync('/usr/bin/busybox', join(root, 'bin', 'busybox'));
    for (const a of ['sh', 'ping', 'sleep', 'httpd', 'cat']) symlinkSync('busybox', join(root, 'bin', a));
    writeFileSync(join(root, 'www', 'index.html'), PAGE);
    await execa('tar', ['-C', root, '-cf', join(this.work, 'image.tar'), '.']);

    // podman's built-in cni_plugin_dirs (/usr/libexec/cni, /usr/lib/cni, /usr/local/lib/cni,
    // /opt/cni/bin) are hidden too, so a reference plugin cannot be reached even by a fallback
    const hidden = REFERENCE_DIRS.filter((d) => existsSync(d));
    const mounts = ['/run', '/var/lib', '/var/tmp', '/etc/cni/net.d', '/sys/fs/cgroup', ...hidden].map((d) => `mount -t tmpfs tmpfs ${d}`).join(' && ');
    this.holder = spawn('nsenter', [`--net=/var/run/netns/${this.host}`, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', `${mounts} && mkdir /run/netns && echo ready && exec sleep 100000`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((res, rej) => {
      let err = '';
      this.holder!.stderr!.on('data', (d) => (err += d));
      this.holder!.stdout!.once('data', () => res());
      this.holder!.once('exit', (code) => rej(new Error(`namespace holder exited ${code}: ${err}`)));
    });
    const imp = await this.podman('import', join(this.work, 'image.tar'), IMAGE);
    if (imp.code !== 0) throw new Error(`podman import: ${imp.stderr}`);
  }

  /** Everything removed: containers, then the holder (its mount namespace goes with it), the netns. */
  async stop(): Promise<void> {
    if (this.holder?.pid) {
      await this.podman('rm', '--all', '--force', '--time', '0');
      this.server?.kill('SIGKILL');
      this.holder.kill('SIGKILL');
    }
    await delNetns(this.host);
    rmSync(this.work, { recursive: true, force: true });
  }

  /** A command inside the host netns and the private mount namespace. */
  async sh(...cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const r = await execa('nsenter', ['-t', String(this.holder!.pid), '-m', '-n', ...cmd], {
      // podman's libcni hands its environment to the plugins: ours log each verb to PLUGIN_LOG
      env: { PATH: process.env.PATH, CONTAINERS_CONF: join(this.work, 'containers.conf'), TMPDIR: '/var/tmp', CNIKIT_LOG: 'debug', CNIKIT_LOG_FILE: PLUGIN_LOG },
      extendEnv: false,
      reject: false,
      timeout: 120000,
    });
    return { code: r.exitCode ?? -1, stdout: String(r.stdout).trim(), stderr: String(r.stderr).trim() };
  }

  /** Starts `plugin-server` in these namespaces (where podman execs the plugins); resolves with its pid once it listens. */
  async startPluginServer(): Promise<number> {
    const c = spawn('nsenter', ['-t', String(this.holder!.pid), '-m', '-n', join(binDir(), 'plugin-server')], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.server = c;
    await new Promise<void>((res, rej) => {
      let err = '';
      c.stderr!.on('data', (d) => (err += d) && err.includes('listening on') && res());
      c.once('exit', (code) => rej(new Error(`plugin-server exited ${code}: ${err}`)));
    });
    return c.pid!;
  }

  podman(...args: string[]) {
    return this.sh('podman', '--storage-driver', 'vfs', ...args);
  }

  /** `podman run -d` of the busybox image (limits podman's defaults would raise above ours kept). */
  async run(name: string, net: string, extra: string[], ...cmd: string[]): Promise<void> {
    const r = await this.podman('run', '-d', '--name', name, '--network', net, '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', ...extra, IMAGE, ...cmd);
    expect({ run: name, code: r.code, stderr: r.stderr }).toEqual({ run: name, code: 0, stderr: '' });
  }

  async ipOf(name: string, net: string): Promise<string> {
    const r = await this.podman('inspect', name, '--format', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^198\.18\.\d+\.\d+$/);
    return r.stdout;
  }
}

async function withPodman(fn: (p: Podman) => Promise<void>): Promise<void> {
  const p = new Podman();
  try {
    await p.start();
    await fn(p);
  } finally {
    await p.stop();
  }
}

/** Two containers on `net` ping each other by address; returns their addresses. */
async function twoPing(p: Podman, net: string): Promise<[string, string]> {
  await p.run('a', net, [], 'sleep', '1000');
  await p.run('b', net, [], 'sleep', '1000');
  const [a, b] = [await p.ipOf('a', net), await p.ipOf('b', net)];
  expect(a).not.toBe(b);
  expect((await leases(p, net)).sort()).toEqual([a, b].sort());
  expect(await p.podman('exec', 'a', 'ping', '-c1', '-W2', b)).toMatchObject({ code: 0 });
  expect(await p.podman('exec', 'b', 'ping', '-c1', '-W2', a)).toMatchObject({ code: 0 });
  return [a, b];
}

/**
 * The plugins of ours that ran `verb` for podman (from their CNIKIT_LOG_FILE lines, "<name>[pid] VERB"),
 * and that no reference plugin directory is visible to podman.
 */
async function oursRan(p: Podman, verb: 'ADD' | 'DEL'): Promise<string[]> {
  return [...new Set((await ranBy(p, verb)).map(([name]) => name))].sort();
}

/** [plugin, pid of the process that ran it] for each log line of `verb`, after checking no reference plugin directory is visible. */
async function ranBy(p: Podman, verb: 'ADD' | 'DEL'): Promise<[string, number][]> {
  for (const d of REFERENCE_DIRS) expect((await p.sh('ls', '-A', d)).stdout).toBe('');
  const log = (await p.sh('cat', PLUGIN_LOG)).stdout;
  return [...log.matchAll(new RegExp(`^\\S+ ([a-z-]+)\\[(\\d+)\\] ${verb} `, 'gm'))].map((m) => [m[1]!, Number(m[2])]);
}

/** host-local's leases of `net` (podman's default dataDir, in the private /var/lib). */
async function leases(p: Podman, net: string): Promise<string[]> {
  return (await p.sh('ls', `/var/lib/cni/networks/${net}`)).stdout.split('\n').filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
}

/** After every container is removed: no veth, no lease, nothing in the netfilter tables naming them. */
async function expectNothingLeft(p: Podman, net: string, addrs: string[], port?: number): Promise<void> {
  expect(await p.podman('rm', '--all', '--force', '--time', '0')).toMatchObject({ code: 0 });
  expect((await p.sh('ip', '-o', 'link', 'show', 'type', 'veth')).stdout).toBe('');
  expect(await leases(p, net)).toEqual([]);
  const rules = (await p.sh('iptables-save')).stdout + (await p.sh('nft', 'list', 'ruleset')).stdout;
  for (const a of addrs) expect(rules).not.toContain(`${a} `);
  for (const a of addrs) expect(rules).not.toContain(`${a}/32`);
  if (port) expect(rules).not.toContain(String(port));
}

const missing = missingPlugins(PODMAN_DEFAULT, linkedPlugins());

test('the harness on a list our plugins cover (bridge with ipMasq + tuning): two containers ping each other, removal leaves nothing; `podman network create` writes bridge + portmap + firewall + tuning', () =>
  withPodman(async (p) => {
    const created = await p.podman('network', 'create', '--disable-dns', '--subnet', '198.18.94.0/24', 'cnikit-default');
    expect(created).toMatchObject({ code: 0 });
    const list = JSON.parse((await p.sh('cat', '/etc/cni/net.d/cnikit-default.conflist')).stdout);
    expect(list.plugins.map((x: { type: string; ipam?: { type: string } }) => [x.type, x.ipam?.type].filter(Boolean).join('/'))).toEqual(['bridge/host-local', 'portmap', 'firewall', 'tuning']);
    // removed again (by hand: podman does not load a list naming a plugin it cannot find, and warns
    // about it on every later command)
    expect(await p.sh('rm', '/etc/cni/net.d/cnikit-default.conflist')).toMatchObject({ code: 0 });

    const bt = {
      cniVersion: '1.0.0',
      name: 'cnikit-bt',
      plugins: [
        { type: 'bridge', bridge: 'cni-bt0', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '198.18.95.0/24', gateway: '198.18.95.1' }]] } },
        { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.arp_filter': '1' } },
      ],
    };
    expect(missingPlugins(bt, linkedPlugins())).toEqual([]);
    expect(await p.sh('sh', '-c', `cat > /etc/cni/net.d/cnikit-bt.conflist <<'EOF'\n${JSON.stringify(bt)}\nEOF`)).toMatchObject({ code: 0 });
    const addrs = await twoPing(p, 'cnikit-bt');
    expect(await oursRan(p, 'ADD')).toEqual(['bridge', 'host-local', 'tuning']);
    // tuning ran: its sysctl is set in the container
    expect((await p.podman('exec', 'a', 'cat', '/proc/sys/net/ipv4/conf/eth0/arp_filter')).stdout).toBe('1');
    // bridge ran with ipMasq: the containers' masquerade is in the host netns
    const rules = (await p.sh('iptables-save', '-t', 'nat')).stdout + (await p.sh('nft', 'list', 'ruleset')).stdout;
    for (const a of addrs) expect(rules).toContain(a);
    await expectNothingLeft(p, 'cnikit-bt', addrs);
    expect(await oursRan(p, 'DEL')).toEqual(['bridge', 'host-local', 'tuning']);
  }));

const PORT = 18080;

/** podman's default list: two containers ping each other, a published port answers from the host netns and from a container, removal leaves nothing. */
async function defaultList(p: Podman, subnet: number): Promise<void> {
  expect(await p.podman('network', 'create', '--disable-dns', '--subnet', `198.18.${subnet}.0/24`, 'cnikit-default')).toMatchObject({ code: 0 });
  const addrs = await twoPing(p, 'cnikit-default');
  await p.run('web', 'cnikit-default', ['-p', `${PORT}:80`], 'httpd', '-f', '-p', '80', '-h', '/www');
  addrs.push(await p.ipOf('web', 'cnikit-default'));
  // firewall ran (podman writes no backend: iptables): each container's accept rules in CNI-FORWARD
  const filter = (await p.sh('iptables-save', '-t', 'filter')).stdout;
  for (const a of addrs) {
    expect(filter).toContain(`-A CNI-FORWARD -d ${a}/32 `);
    expect(filter).toContain(`-A CNI-FORWARD -s ${a}/32 `);
  }
  for (const target of [`198.18.${subnet}.1`, '127.0.0.1']) {
    const r = await p.sh('curl', '-sS', '--max-time', '5', `http://${target}:${PORT}/index.html`);
    expect({ target, code: r.code, body: r.stdout, stderr: r.stderr }).toEqual({ target, code: 0, body: PAGE, stderr: '' });
  }
  // the other container reaches the published port too (hairpin through the bridge)
  // (busybox-static's wget crashes in its resolver; nc speaks the one request)
  const hairpin = await p.podman('exec', 'a', 'sh', '-c', `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 198.18.${subnet}.1 ${PORT}`);
  expect({ code: hairpin.code, stderr: hairpin.stderr }).toEqual({ code: 0, stderr: '' });
  expect(hairpin.stdout).toMatch(new RegExp(`^HTTP/1\\.[01] 200 OK[^]*\\n${PAGE}$`));
  await expectNothingLeft(p, 'cnikit-default', addrs, PORT);
  for (const verb of ['ADD', 'DEL'] as const) expect(await oursRan(p, verb)).toEqual(['bridge', 'firewall', 'host-local', 'portmap', 'tuning']);
}

const skipped = missing.length ? ` (skipped: no ${missing.join(', ')} in cnikit --list)` : '';
(missing.length ? test.skip : test)(
  `podman network create's default list (bridge + portmap + firewall + tuning): two containers ping each other, a published port (-p) answers from the host netns, removal leaves nothing${skipped}`,
  () => withPodman((p) => defaultList(p, 96)),
);

(missing.length ? test.skip : test)(
  `the same with the plugin server running where podman execs the plugins: every verb of every plugin podman execs is run by the server${skipped}`,
  () =>
    withPodman(async (p) => {
      const server = await p.startPluginServer();
      await defaultList(p, 97);
      for (const verb of ['ADD', 'DEL'] as const) {
        const ran = await ranBy(p, verb);
        expect(ran.length).toBeGreaterThanOrEqual(15); // 3 containers x 5 plugins (host-local in-process, under the bridge)
        expect(ran.filter(([, pid]) => pid !== server)).toEqual([]);
      }
    }),
);
