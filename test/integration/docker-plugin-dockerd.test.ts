// `cnm docker-plugin` driven by a real dockerd 20.10 (issue 11 §3-4): dockerd and the plugin run
// wholly inside a scratch host netns with a private mount namespace (docker-plugin-harness.ts), the
// image is a `docker import` of busybox-static, the client is the 20.10 /usr/bin/docker. Each test
// checks what Docker users see (addresses, routes, pings, published ports) and what is left in the
// scratch host afterwards (links, leases, rules, scratch netns).
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Dockerd, PluginDaemon, Scratch } from './docker-plugin-harness';

const haveDocker = existsSync('/usr/sbin/dockerd') && existsSync('/usr/bin/docker');
const d = haveDocker ? describe : describe.skip;

let s: Scratch;
let plugin: PluginDaemon;
let docker: Dockerd;
let stateDir: string;
const P = `cnikit${process.pid}`; // unique: a running dockerd caches a plugin name's activation

const leases = (): string[] => {
  const root = join(stateDir, 'ipam');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((n) => readdirSync(join(root, n)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f) || /^[0-9a-f]*:[0-9a-f:]+$/.test(f)).map((f) => `${n}/${f}`));
};
const hostLinks = async (): Promise<string[]> => (await s.links()).filter((l) => l !== 'lo');
const addr4 = (out: string): string => /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? '';

jest.setTimeout(120_000);

beforeAll(async () => {
  if (!haveDocker) return;
  s = await Scratch.create('dpdock');
  stateDir = join(s.dir, 'state');
  const confDir = join(s.dir, 'conf');
  mkdirSync(confDir);
  writeFileSync(
    join(confDir, '10-chain.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'chain',
      plugins: [
        { type: 'bridge', bridge: 'chain0', isGateway: true, isDefaultGateway: true, ipMasq: true, capabilities: { ips: true }, ipam: { type: 'host-local', dataDir: join(stateDir, 'chain-ipam'), ranges: [[{ subnet: '198.18.40.0/22' }]] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  plugin = new PluginDaemon(s, P, { stateDir, confDir });
  await plugin.start();
  docker = new Dockerd(s);
  await docker.start();
  await docker.importBusybox();
}, 120_000);

afterAll(async () => {
  if (!haveDocker) return;
  try {
    await docker?.stop();
  } finally {
    await plugin?.stop('SIGTERM');
    await s?.destroy();
  }
}, 120_000);

d('docker network create -d <plugin> with Docker\'s IPAM', () => {
  test('two containers get eth0 with Docker\'s address, the gateway as default route, and ping each other', async () => {
    await docker.must(['network', 'create', '-d', P, '--subnet', '198.18.10.0/24', 'n1']);
    await docker.must(['run', '-d', '--name', 'c1', '--network', 'n1', 'bb', 'sleep', '600']);
    const ip1 = (await docker.must(['inspect', '-f', '{{.NetworkSettings.Networks.n1.IPAddress}}', 'c1'])).trim();
    // The containers' cgroups are under the suite's own parent (removed with dockerd), not the machine's "docker".
    expect(['/sys/fs/cgroup', '/sys/fs/cgroup/pids'].some((r) => existsSync(join(r, docker.cgroupParent)))).toBe(true);
    expect(ip1).toMatch(/^198\.18\.10\.\d+$/);
    expect(addr4(await docker.must(['exec', 'c1', 'ip', '-4', '-o', 'addr', 'show', 'eth0']))).toBe(ip1);
    expect(await docker.must(['exec', 'c1', 'ip', 'route'])).toMatch(/^default via 198\.18\.10\.1 dev eth0/m);
    const out = await docker.must(['run', '--rm', '--network', 'n1', 'bb', 'sh', '-c', `ping -c1 -W2 ${ip1} && ping -c1 -W2 198.18.10.1`]);
    expect(out).toMatch(/1 packets received[\s\S]*1 packets received/);
  });

  test('docker run --ip is honoured', async () => {
    const out = await docker.must(['run', '--rm', '--network', 'n1', '--ip', '198.18.10.77', 'bb', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(addr4(out)).toBe('198.18.10.77');
  });

  test('docker network connect of a running container adds eth1 on the second network; disconnect removes it and its host link and lease', async () => {
    await docker.must(['network', 'create', '-d', P, '--subnet', '198.18.11.0/24', 'n2']);
    await docker.must(['network', 'connect', 'n2', 'c1']);
    expect(addr4(await docker.must(['exec', 'c1', 'ip', '-4', '-o', 'addr', 'show', 'eth1']))).toMatch(/^198\.18\.11\.\d+$/);
    // eth0's network keeps the default route.
    expect(await docker.must(['exec', 'c1', 'ip', 'route'])).toMatch(/^default via 198\.18\.10\.1 dev eth0/m);
    const before = leases().filter((l) => l.includes('/198.18.11.'));
    expect(before).toHaveLength(1);
    await docker.must(['network', 'disconnect', 'n2', 'c1']);
    expect((await docker.docker(['exec', 'c1', 'ip', 'link', 'show', 'eth1'])).exitCode).not.toBe(0);
    expect(leases().filter((l) => l.includes('/198.18.11.'))).toEqual([]);
    await docker.must(['network', 'rm', 'n2']);
  });

  test('8 concurrent docker runs on one network each get a distinct address', async () => {
    const runs = await Promise.all(Array.from({ length: 8 }, () => docker.docker(['run', '--rm', '--network', 'n1', 'bb', 'ip', '-4', '-o', 'addr', 'show', 'eth0'], 90_000)));
    expect(runs.map((r) => [r.exitCode, String(r.stderr)])).toEqual(Array(8).fill([0, '']));
    const addrs = runs.map((r) => addr4(String(r.stdout)));
    expect(new Set(addrs).size).toBe(8);
    for (const a of addrs) expect(a).toMatch(/^198\.18\.10\.\d+$/);
  });

  test('the plugin killed with -9 and restarted between docker run and docker rm: rm -f still removes the link, the lease and the scratch netns', async () => {
    await docker.must(['run', '-d', '--name', 'k9', '--network', 'n1', 'bb', 'sleep', '600']);
    const ip = (await docker.must(['inspect', '-f', '{{.NetworkSettings.Networks.n1.IPAddress}}', 'k9'])).trim();
    expect(leases()).toContain(`docker-${(await networkId('n1')).slice(0, 12)}/${ip}`);
    await plugin.stop('SIGKILL');
    await plugin.start();
    await docker.must(['rm', '-f', 'k9']);
    expect(leases().filter((l) => l.endsWith(`/${ip}`))).toEqual([]);
    // c1 is the only container left on n1: one veth on the bridge, one scratch netns.
    expect(await s.netnsNames()).toHaveLength(1);
  });

  test('docker rm -f and docker network rm leave no link, lease, scratch netns or masquerade rule', async () => {
    await docker.must(['rm', '-f', 'c1']);
    await docker.must(['network', 'rm', 'n1']);
    expect(await hostLinks()).toEqual([]);
    expect(leases()).toEqual([]);
    expect(await s.netnsNames()).toEqual([]);
    expect(await s.rules()).not.toMatch(/198\.18\.10\./);
  });
});

d('docker run -p with portmap in the chain', () => {
  test('-p 8080:80 publishes the container\'s port on the host (generated chain includes portmap); rm -f removes the rule', async () => {
    await docker.must(['network', 'create', '-d', P, '--subnet', '198.18.12.0/24', 'n3']);
    await docker.must(['run', '-d', '--name', 'web', '--network', 'n3', '-p', '8080:80', 'bb', 'httpd', '-f', '-p', '80', '-h', '/www']);
    let body = '';
    for (let i = 0; i < 20 && !body.includes('served-by-container'); i++) {
      body = await s.httpGet('http://198.18.12.1:8080/');
      if (!body) await new Promise((r) => setTimeout(r, 200));
    }
    expect(body).toContain('served-by-container');
    expect(await s.rules()).toMatch(/8080/);
    await docker.must(['rm', '-f', 'web']);
    expect(await s.rules()).not.toMatch(/8080/);
    await docker.must(['network', 'rm', 'n3']);
    expect(await hostLinks()).toEqual([]);
  });
});

d('--internal and --ipam-driver', () => {
  test('an --internal network gives no default route', async () => {
    await docker.must(['network', 'create', '-d', P, '--internal', '--subnet', '198.18.13.0/24', 'int']);
    const out = await docker.must(['run', '--rm', '--network', 'int', 'bb', 'ip', 'route']);
    expect(out).not.toMatch(/default/);
    expect(out).toMatch(/198\.18\.13\.0\/24 dev eth0/);
    await docker.must(['network', 'rm', 'int']);
  });

  test('--ipam-driver <plugin>: the gateway is the subnet\'s first address (the container\'s default route), --ip is honoured, and rm releases every lease', async () => {
    await docker.must(['network', 'create', '-d', P, '--ipam-driver', P, '--subnet', '198.18.14.0/24', 'own']);
    const out = await docker.must(['run', '--rm', '--network', 'own', 'bb', 'sh', '-c', 'ip -4 -o addr show eth0; ip route; ping -c1 -W2 198.18.14.1']);
    expect(addr4(out)).toMatch(/^198\.18\.14\.\d+$/);
    expect(out).toMatch(/default via 198\.18\.14\.1/);
    expect(out).toMatch(/1 packets received/);
    expect(addr4(await docker.must(['run', '--rm', '--network', 'own', '--ip', '198.18.14.99', 'bb', 'ip', '-4', '-o', 'addr', 'show', 'eth0']))).toBe('198.18.14.99');
    await docker.must(['network', 'rm', 'own']);
    expect(leases()).toEqual([]);
    expect(readdirSync(join(stateDir, 'docker', 'pools'))).toEqual([]);
    expect(await hostLinks()).toEqual([]);
  });

  test('--ipam-driver <plugin> with --gateway, --ip-range, --aux-address and --ipv6: addresses from the range, the given gateway, an IPv6 address; rm releases all', async () => {
    await docker.must(['network', 'create', '-d', P, '--ipam-driver', P, '--subnet', '198.18.16.0/24', '--ip-range', '198.18.16.128/25', '--gateway', '198.18.16.254', '--aux-address', 'r=198.18.16.128', '--ipv6', '--subnet', 'fd00:18:16::/64', 'own6']);
    const out = await docker.must(['run', '--rm', '--network', 'own6', 'bb', 'sh', '-c', 'ip -4 -o addr show eth0; ip -6 -o addr show eth0 scope global; ip route; ping -c1 -W2 198.18.16.254']);
    const a = addr4(out);
    expect(a).toMatch(/^198\.18\.16\.\d+$/);
    expect(Number(a.split('.')[3])).toBeGreaterThan(128); // in the range, not the aux address
    expect(out).toMatch(/inet6 fd00:18:16::/);
    expect(out).toMatch(/default via 198\.18\.16\.254/);
    expect(out).toMatch(/1 packets received/);
    await docker.must(['network', 'rm', 'own6']);
    expect(leases()).toEqual([]);
    expect(readdirSync(join(stateDir, 'docker', 'pools'))).toEqual([]);
    expect(await hostLinks()).toEqual([]);
  });
});

d('--ipv6', () => {
  test('a dual-stack network: eth0 gets Docker\'s IPv4 and IPv6 addresses and both default routes; two containers ping each other over IPv6', async () => {
    await docker.must(['network', 'create', '-d', P, '--ipv6', '--subnet', '198.18.15.0/24', '--subnet', 'fd00:18:15::/64', 'v6']);
    await docker.must(['run', '-d', '--name', 'v6a', '--network', 'v6', 'bb', 'sleep', '600']);
    const a6 = (await docker.must(['inspect', '-f', '{{.NetworkSettings.Networks.v6.GlobalIPv6Address}}', 'v6a'])).trim();
    expect(a6).toMatch(/^fd00:18:15::/);
    expect(await docker.must(['exec', 'v6a', 'ip', '-6', '-o', 'addr', 'show', 'eth0'])).toContain(`inet6 ${a6}/64`);
    expect(await docker.must(['exec', 'v6a', 'ip', '-6', 'route'])).toMatch(/^default via fd00:18:15::1 dev eth0/m);
    const out = await docker.must(['run', '--rm', '--network', 'v6', 'bb', 'sh', '-c', `ip -4 -o addr show eth0; ping -6 -c1 -W2 ${a6}`]);
    expect(addr4(out)).toMatch(/^198\.18\.15\.\d+$/);
    expect(out).toMatch(/1 packets received/);
    await docker.must(['rm', '-f', 'v6a']);
    await docker.must(['network', 'rm', 'v6']);
    expect(leases()).toEqual([]);
    expect(await hostLinks()).toEqual([]);
  });
});

d('-o cni.network=X (a conflist from --conf-dir)', () => {
  test('an unknown X fails docker network create naming X', async () => {
    const r = await docker.docker(['network', 'create', '-d', P, '--subnet', '198.18.40.0/24', '-o', 'cni.network=nosuch', 'bad']);
    expect(r.exitCode).not.toBe(0);
    expect(String(r.stderr)).toMatch(/cni\.network=nosuch/);
  });

  test('a --subnet outside the conflist\'s range fails naming both', async () => {
    const r = await docker.docker(['network', 'create', '-d', P, '--subnet', '198.18.50.0/24', '-o', 'cni.network=chain', 'bad']);
    expect(r.exitCode).not.toBe(0);
    expect(String(r.stderr)).toMatch(/subnet 198\.18\.50\.0\/24 is not inside the IPAM ranges of CNI network "chain"/);
  });

  test('the chain\'s IPAM hands out exactly Docker\'s address (ips capability), -p works through its portmap, and rm releases the lease', async () => {
    await docker.must(['network', 'create', '-d', P, '--subnet', '198.18.40.0/22', '--gateway', '198.18.40.1', '-o', 'cni.network=chain', 'cn']);
    await docker.must(['run', '-d', '--name', 'cweb', '--network', 'cn', '--ip', '198.18.41.7', '-p', '8081:80', 'bb', 'httpd', '-f', '-p', '80', '-h', '/www']);
    expect(addr4(await docker.must(['exec', 'cweb', 'ip', '-4', '-o', 'addr', 'show', 'eth0']))).toBe('198.18.41.7');
    expect(readdirSync(join(stateDir, 'chain-ipam', 'chain'))).toContain('198.18.41.7');
    let body = '';
    for (let i = 0; i < 20 && !body.includes('served-by-container'); i++) {
      body = await s.httpGet('http://198.18.40.1:8081/');
      if (!body) await new Promise((r) => setTimeout(r, 200));
    }
    expect(body).toContain('served-by-container');
    await docker.must(['rm', '-f', 'cweb']);
    expect(readdirSync(join(stateDir, 'chain-ipam', 'chain'))).not.toContain('198.18.41.7');
    expect(await s.rules()).not.toMatch(/8081/);
    await docker.must(['network', 'rm', 'cn']);
    // The conflist's bridge is not the plugin's to remove; nothing else is left.
    expect(await hostLinks()).toEqual(['chain0']);
    expect(await s.netnsNames()).toEqual([]);
  });
});

async function networkId(name: string): Promise<string> {
  return (await docker.must(['network', 'inspect', '-f', '{{.Id}}', name])).trim();
}
