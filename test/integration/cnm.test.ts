// The CNM library and the cnm CLI on real namespaces (see cnm-harness.ts): the lifecycle of
// seeds 000/002/004 (network → endpoint → join sandbox; teardown in reverse) with our plugins.
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { binDir } from '../support/cni';
import { withCnmHost, type CnmHost } from './cnm-harness';

jest.setTimeout(120000);

const STATE = '/var/lib/cnikit/cnm';

/** After teardown: no link but lo in the host netns, no sandbox netns, no lease, no cached result, no record. */
async function expectNothingLeft(h: CnmHost, net: string): Promise<void> {
  expect((await h.sh('ip', '-o', 'link', 'show')).stdout.split('\n').map((l) => l.split(':')[1]!.trim())).toEqual(['lo']);
  expect((await h.sh('ip', 'netns', 'list')).stdout).toBe('');
  expect((await h.sh('ls', '-A', '/var/lib/cni/results')).stdout).toBe('');
  expect((await h.sh('ls', '-A', `${STATE}/endpoints`, `${STATE}/sandboxes`)).stdout.split('\n').filter((l) => l && !l.endsWith(':'))).toEqual([]);
  expect((await h.sh('ls', '-A', `${STATE}/ipam`)).stdout.split('\n')).not.toContain(net);
}

test('lifecycle: two sandboxes on one network ping each other and the gateway; --ip is honoured; rm with endpoints and overlapping subnets are refused; teardown leaves nothing', () =>
  withCnmHost(async (h) => {
    const id = await h.ok('network', 'create', '--subnet', '198.18.0.0/24', 'web');
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(await h.cnm('network', 'create', '--subnet', '198.18.0.128/25', 'db')).toEqual({ code: 1, stdout: '', stderr: 'cnm: subnet 198.18.0.128/25 overlaps network "web" (198.18.0.0/24)' });
    expect(await h.ok('sandbox', 'create', 'a')).toBe('/run/netns/a');
    expect(await h.ok('sandbox', 'create', 'b')).toBe('/run/netns/b');
    await h.ok('network', 'connect', 'web', 'a');
    await h.ok('network', 'connect', '--ip', '198.18.0.50', 'web', 'b');

    // ip netns sees the sandboxes (bind mounts under /run/netns); a has eth0 with the first address and the default route
    expect((await h.sh('ip', 'netns', 'list')).stdout.split('\n').map((l) => l.split(' ')[0]).sort()).toEqual(['a', 'b']);
    expect((await h.sh('ip', '-n', 'a', '-4', '-o', 'addr', 'show', 'eth0')).stdout).toContain('inet 198.18.0.2/24');
    expect((await h.sh('ip', '-n', 'b', '-4', '-o', 'addr', 'show', 'eth0')).stdout).toContain('inet 198.18.0.50/24');
    expect((await h.sh('ip', '-n', 'a', 'route', 'show', 'default')).stdout).toBe('default via 198.18.0.1 dev eth0');
    expect(await h.cnm('sandbox', 'exec', 'a', '--', 'ping', '-c1', '-W2', '198.18.0.50')).toMatchObject({ code: 0 });
    expect(await h.cnm('sandbox', 'exec', 'b', '--', 'ping', '-c1', '-W2', '198.18.0.2')).toMatchObject({ code: 0 });
    expect(await h.cnm('sandbox', 'exec', 'a', '--', 'ping', '-c1', '-W2', '198.18.0.1')).toMatchObject({ code: 0 });
    // the bridge is Docker's br-<id12> and holds the gateway
    expect((await h.sh('ip', '-4', '-o', 'addr', 'show', `br-${id.slice(0, 12)}`)).stdout).toContain('inet 198.18.0.1/24');

    const [inspect] = JSON.parse(await h.ok('network', 'inspect', 'web'));
    expect(inspect).toMatchObject({ Name: 'web', Id: id, Scope: 'local', Driver: 'bridge', EnableIPv6: false, Internal: false, IPAM: { Driver: 'default', Config: [{ Subnet: '198.18.0.0/24', Gateway: '198.18.0.1' }] } });
    const byName = Object.fromEntries(Object.values(inspect.Containers as Record<string, { Name: string; IPv4Address: string; MacAddress: string }>).map((c) => [c.Name, c]));
    expect(byName.a.IPv4Address).toBe('198.18.0.2/24');
    expect(byName.b.IPv4Address).toBe('198.18.0.50/24');
    // the MAC inspect shows is the sandbox link's
    expect((await h.cnm('sandbox', 'exec', 'b', '--', 'ip', '-o', 'link', 'show', 'eth0')).stdout).toContain(`link/ether ${byName.b.MacAddress} `);

    // the endpoint's lease is in the network's host-local store, owned by the endpoint
    const leases = (await h.sh('ls', `${STATE}/ipam/web`)).stdout.split('\n').filter((f) => /^198\./.test(f));
    expect(leases.sort()).toEqual(['198.18.0.2', '198.18.0.50']);

    expect(await h.cnm('network', 'rm', 'web')).toEqual({ code: 1, stdout: '', stderr: 'cnm: network "web" has active endpoints: 2' });
    expect(await h.cnm('network', 'create', '--subnet', '198.18.1.0/24', '-o', `com.docker.network.bridge.name=br-${id.slice(0, 12)}`, 'web2')).toEqual({
      code: 1,
      stdout: '',
      stderr: `cnm: bridge "br-${id.slice(0, 12)}" is already used by network "web"`,
    });
    expect(await h.cnm('network', 'connect', '--ip', '198.18.0.50', 'web', 'nope')).toEqual({ code: 1, stdout: '', stderr: 'cnm: no such sandbox "nope"' });

    await h.ok('network', 'disconnect', 'web', 'a');
    expect((await h.sh('ip', '-n', 'a', 'link', 'show', 'eth0')).code).not.toBe(0);
    expect(await h.ok('sandbox', 'rm', 'a', 'b')).toBe('a\nb');
    expect(await h.ok('network', 'rm', 'web')).toBe('web');
    const left = (await h.ok('network', 'ls', '--format', 'json')).split('\n').map((l) => JSON.parse(l) as { Name: string; Driver: string });
    expect(left.map((n) => [n.Name, n.Driver])).toEqual([['host', 'host'], ['none', 'null']]);
    await expectNothingLeft(h, 'web');
  }));

/** Polls `cond` every 50 ms for at most 10 s. */
async function until(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('timed out waiting');
}

/** Routes of a sandbox (ip -n NAME route), one per line, without trailing blanks. */
const routes = async (h: CnmHost, sb: string, family = '-4'): Promise<string[]> => (await h.sh('ip', family, '-n', sb, 'route')).stdout.split('\n').map((l) => l.trim()).filter(Boolean);

test('a sandbox on several networks gets eth0, eth1, eth2 in connect order; only the first network gives the default route; --internal has no route out and no masquerade', () =>
  withCnmHost(async (h) => {
    await h.ok('network', 'create', '--subnet', '198.18.1.0/24', 'front');
    await h.ok('network', 'create', '--subnet', '198.18.2.0/24', '--internal', 'back');
    await h.ok('network', 'create', '--subnet', '198.18.3.0/24', 'side');
    await h.ok('sandbox', 'create', 's');
    for (const n of ['front', 'back', 'side']) await h.ok('network', 'connect', n, 's');
    expect((await h.sh('ip', '-n', 's', '-4', '-o', 'addr', 'show')).stdout.split('\n').map((l) => l.split(/\s+/).slice(1, 4).join(' '))).toEqual([
      'lo inet 127.0.0.1/8',
      'eth0 inet 198.18.1.2/24',
      'eth1 inet 198.18.2.2/24',
      'eth2 inet 198.18.3.2/24',
    ]);
    expect(await routes(h, 's')).toEqual([
      'default via 198.18.1.1 dev eth0',
      '198.18.1.0/24 dev eth0 proto kernel scope link src 198.18.1.2',
      '198.18.2.0/24 dev eth1 proto kernel scope link src 198.18.2.2',
      '198.18.3.0/24 dev eth2 proto kernel scope link src 198.18.3.2',
    ]);
    // the default route goes with its endpoint; the others stay as they were
    await h.ok('network', 'disconnect', 'front', 's');
    expect(await routes(h, 's')).toEqual(['198.18.2.0/24 dev eth1 proto kernel scope link src 198.18.2.2', '198.18.3.0/24 dev eth2 proto kernel scope link src 198.18.3.2']);

    // a sandbox on the internal network alone: only its subnet, no way out, no masquerade for it
    const r = await h.cnm('run', '--rm', '--network', 'back', '--', 'sh', '-c', 'ip -4 route; ip route get 198.51.100.1');
    expect(r.stdout).toBe('198.18.2.0/24 dev eth0 proto kernel scope link src 198.18.2.3');
    expect(r.stderr).toMatch(/unreachable/i);
    expect(r.code).not.toBe(0);
    const [inspect] = JSON.parse(await h.ok('network', 'inspect', 'back'));
    expect(inspect.Internal).toBe(true);
    const rules = (await h.sh('iptables-save', '-t', 'nat')).stdout + (await h.sh('nft', 'list', 'ruleset')).stdout;
    expect(rules).not.toContain('198.18.2.');
    expect(rules).toContain('198.18.3.2'); // side's endpoint is masqueraded: the check above can see rules
    await h.ok('sandbox', 'rm', 's');
  }));

test('IPv6: a dual-stack network gives both families; --ip6 is honoured; the sandboxes reach each other over IPv6', () =>
  withCnmHost(async (h) => {
    await h.ok('network', 'create', '--ipv6', '--subnet', '198.18.4.0/24', '--subnet', 'fd00:18:4::/64', 'v6');
    await h.ok('sandbox', 'create', 'a');
    await h.ok('sandbox', 'create', 'b');
    await h.ok('network', 'connect', 'v6', 'a');
    await h.ok('network', 'connect', '--ip6', 'fd00:18:4::50', 'v6', 'b');
    expect((await h.sh('ip', '-n', 'a', '-6', '-o', 'addr', 'show', 'eth0', 'scope', 'global')).stdout).toContain('inet6 fd00:18:4::2/64');
    expect((await h.sh('ip', '-n', 'b', '-6', '-o', 'addr', 'show', 'eth0', 'scope', 'global')).stdout).toContain('inet6 fd00:18:4::50/64');
    expect((await routes(h, 'a', '-6')).filter((l) => l.startsWith('default'))).toEqual([expect.stringMatching(/^default via fd00:18:4::1 dev eth0/)]);
    const [inspect] = JSON.parse(await h.ok('network', 'inspect', 'v6'));
    expect(inspect.EnableIPv6).toBe(true);
    expect(Object.values(inspect.Containers).map((c) => (c as { IPv6Address: string }).IPv6Address).sort()).toEqual(['fd00:18:4::2/64', 'fd00:18:4::50/64']);
    expect(await h.cnm('sandbox', 'exec', 'a', '--', 'ping', '-6', '-c1', '-W3', 'fd00:18:4::50')).toMatchObject({ code: 0 });
    expect(await h.cnm('network', 'connect', '--ip6', 'fd00:18:5::1', 'v6', 'a')).toEqual({ code: 1, stdout: '', stderr: 'cnm: sandbox "a" is already connected to network "v6"' });
    await h.ok('sandbox', 'rm', 'a', 'b');
    await h.ok('network', 'rm', 'v6');
    await expectNothingLeft(h, 'v6');
  }));

test('cnm run: exits with the command status; --rm removes everything also when the command fails, cannot be run, or cnm is interrupted', () =>
  withCnmHost(async (h) => {
    await h.ok('network', 'create', '--subnet', '198.18.6.0/24', 'web');
    const r = await h.cnm('run', '--rm', '--name', 'f', '--network', 'web', '--', 'sh', '-c', 'ip -4 -o addr show eth0; exit 7');
    expect(r.code).toBe(7);
    expect(r.stdout).toContain('inet 198.18.6.2/24');
    const gone = await h.cnm('run', '--rm', '--network', 'web', '--', 'no-such-command-here');
    expect(gone.code).toBe(127); // nsenter's "cannot exec"
    // a failed connect (the address is not in the network) with --rm: nothing stays either; cnm's own failures exit 125
    expect(await h.cnm('run', '--rm', '--name', 'g', '--network', 'web', '--ip', '198.18.7.9', '--', 'true')).toEqual({ code: 125, stdout: '', stderr: 'cnm: --ip 198.18.7.9 is in no subnet of network "web"' });
    expect(await h.ok('sandbox', 'ls', '-q')).toBe('');

    // SIGINT while the command runs: it is passed on, then the sandbox is removed; exit 128+2
    const run = h.spawn([join(binDir(), 'cnm'), 'run', '--rm', '--name', 'i', '--network', 'web', '--', 'sleep', '60']);
    await until(async () => (await h.sh('ip', 'netns', 'pids', 'i')).stdout !== ''); // the command runs in the sandbox
    run.kill('SIGINT');
    const done = await run;
    expect(done.exitCode).toBe(130);
    expect(await h.ok('sandbox', 'ls', '-q')).toBe('');
    await h.ok('network', 'rm', 'web');
    await expectNothingLeft(h, 'web');
  }));

/**
 * A CNI path whose `portmap` (the chain's last plugin, after bridge + static have done their work)
 * records its PID in `mark` and sleeps on ADD, so cnm can be killed in the middle of a connect;
 * on DEL it is the real portmap.
 */
function stallingCniPath(h: CnmHost, mark: string): string {
  const dir = join(h.work, 'cni-bin');
  mkdirSync(dir);
  for (const p of ['bridge', 'host-local', 'static', 'loopback']) symlinkSync(join(binDir(), 'cnikit'), join(dir, p));
  writeFileSync(join(dir, 'portmap'), `#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then echo $$ > ${mark}; exec sleep 60; fi\nexec ${join(binDir(), 'portmap')}\n`);
  chmodSync(join(dir, 'portmap'), 0o755);
  return dir;
}

test.each([
  ['network disconnect web s', ['network', 'disconnect', 'web', 's'], ''],
  ['network prune -f', ['network', 'prune', '-f'], 'Deleted Networks:\nweb'],
  ['sandbox rm s', ['sandbox', 'rm', 's'], 's'],
])('kill -9 of cnm in the middle of connect (after bridge ADD, before the chain ends) leaves state that `cnm %s` cleans fully', (_, cleanup, out) =>
  withCnmHost(async (h) => {
    const mark = join(h.work, 'portmap.pid');
    h.cniPath = stallingCniPath(h, mark);
    const id = await h.ok('network', 'create', '--subnet', '198.18.8.0/24', 'web');
    await h.ok('sandbox', 'create', 's');
    const connect = h.spawn([join(binDir(), 'cnm'), 'network', 'connect', 'web', 's']);
    await until(async () => existsSync(mark) && readFileSync(mark, 'utf8').trim() !== '');
    connect.kill('SIGKILL');
    await connect;
    process.kill(Number(readFileSync(mark, 'utf8')), 'SIGKILL');

    // what the killed connect left: the veth on the bridge, the endpoint's lease and masquerade, a `joining` record
    const bridge = `br-${id.slice(0, 12)}`;
    expect((await h.sh('ip', '-o', 'link', 'show', 'master', bridge)).stdout).toMatch(/veth/);
    expect((await h.sh('ip', '-n', 's', '-4', '-o', 'addr', 'show', 'eth0')).stdout).toContain('198.18.8.2/24');
    expect((await h.sh('ls', `${STATE}/ipam/web`)).stdout.split('\n')).toContain('198.18.8.2');
    expect((await h.sh('sh', '-c', `cat ${STATE}/endpoints/*.json`)).stdout).toContain('"state": "joining"');
    const natBefore = (await h.sh('iptables-save', '-t', 'nat')).stdout + (await h.sh('nft', 'list', 'ruleset')).stdout;
    expect(natBefore).toContain('198.18.8.2');

    expect(await h.cnm(...cleanup)).toEqual({ code: 0, stdout: out, stderr: '' });
    expect((await h.sh('ip', '-o', 'link', 'show', 'type', 'veth')).stdout).toBe('');
    expect((await h.sh('ls', '-A', `${STATE}/endpoints`)).stdout).toBe('');
    expect((await h.sh('sh', '-c', `ls ${STATE}/ipam/web 2>/dev/null | grep '^198' || true`)).stdout).toBe('');
    expect((await h.sh('ls', '-A', '/var/lib/cni/results')).stdout).toBe('');
    const natAfter = (await h.sh('iptables-save', '-t', 'nat')).stdout + (await h.sh('nft', 'list', 'ruleset')).stdout;
    expect(natAfter).not.toContain('198.18.8.2');
    // and the model is usable again: the sandbox (if it is still there) connects cleanly
    if (cleanup[0] !== 'sandbox') {
      if (cleanup[1] === 'prune') await h.ok('network', 'create', '--subnet', '198.18.8.0/24', 'web');
      h.cniPath = binDir();
      await h.ok('network', 'connect', '--ip', '198.18.8.2', 'web', 's'); // the killed connect's address is free again
      expect((await h.sh('ip', '-n', 's', '-4', '-o', 'addr', 'show', 'eth0')).stdout).toContain('198.18.8.2/24');
      await h.ok('sandbox', 'rm', 's');
    }
    await h.cnm('network', 'rm', 'web');
    await expectNothingLeft(h, 'web');
  }),
);

test('drivers: null gives only lo; host runs in the netns cnm runs in; bridge leaves a device it did not make; cni uses an existing conflist by name (and names an unknown one)', () =>
  withCnmHost(async (h) => {
    const none = await h.cnm('run', '--rm', '--network', 'none', '--', 'ip', '-o', 'link');
    expect(none.code).toBe(0);
    expect(none.stdout.split('\n').map((l) => l.split(':')[1]!.trim())).toEqual(['lo']);
    expect(none.stdout).toContain('UP');
    expect(await h.cnm('network', 'rm', 'none')).toEqual({ code: 1, stdout: '', stderr: 'cnm: "none" is a pre-defined network and cannot be removed' });
    expect(await h.cnm('run', '--rm', '--network', 'none', '--ip', '198.18.9.9', '--', 'true')).toEqual({ code: 125, stdout: '', stderr: 'cnm: network "none" (driver null) gives no addresses: --ip/--ip6 cannot be used' });

    await h.sh('ip', 'link', 'add', 'hostonly0', 'type', 'bridge');
    // a bridge network on a device that existed before uses it and leaves it at network rm
    await h.ok('network', 'create', '--subnet', '198.18.14.0/24', '-o', 'com.docker.network.bridge.name=hostonly0', 'pre');
    expect(await h.cnm('run', '--rm', '--network', 'pre', '--', 'true')).toMatchObject({ code: 0 });
    await h.ok('network', 'rm', 'pre');
    expect((await h.sh('ip', 'link', 'show', 'hostonly0')).code).toBe(0);
    const host = await h.cnm('run', '--rm', '--network', 'host', '--', 'ip', '-o', 'link', 'show', 'hostonly0');
    expect(host.code).toBe(0);
    expect(await h.cnm('run', '--rm', '--name', 'nx', '--network', 'host', '--', 'no-such-command-here')).toEqual({ code: 127, stdout: '', stderr: 'cnm: sandbox "nx": cannot run "no-such-command-here": ENOENT' });
    expect(await h.cnm('run', '--rm', '--network', 'host', '--network', 'none', '--', 'true')).toMatchObject({ code: 125, stderr: expect.stringMatching(/^cnm: sandbox "cnm-[0-9a-f]{8}" is connected to other networks: the "none" network must be its only one$/) });

    const confDir = '/run/cni-conf';
    const list = { cniVersion: '1.0.0', name: 'mynet', plugins: [{ type: 'bridge', bridge: 'mybr0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '198.18.9.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } }] };
    await h.sh('sh', '-c', `mkdir -p ${confDir} && echo '${JSON.stringify(list)}' > ${confDir}/10-mynet.conflist`);
    expect(await h.cnm('network', 'create', '-d', 'cni', '-o', 'cni.network=nope', '--conf-dir', confDir, 'c0')).toEqual({ code: 1, stdout: '', stderr: `cnm: -o cni.network=nope: no net configuration with name "nope" in ${confDir}` });
    await h.ok('network', 'create', '-d', 'cni', '-o', 'cni.network=mynet', '--conf-dir', confDir, 'c1');
    // the list is kept with the network: editing the source afterwards changes nothing
    await h.sh('rm', `${confDir}/10-mynet.conflist`);
    const r = await h.cnm('run', '--rm', '--name', 'cs', '--network', 'c1', '--ip', '198.18.9.77', '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0');
    expect(r).toMatchObject({ code: 0, stdout: expect.stringContaining('inet 198.18.9.77/24') });
    await h.ok('network', 'rm', 'c1');
    expect((await h.sh('ls', '-A', '/var/lib/cni/results')).stdout).toBe('');
  }));

test('cnitool drives a cnm network through its conflist in <state>/net.d and allocates from the same store: no address twice', () =>
  withCnmHost(async (h) => {
    await h.ok('network', 'create', '--subnet', '198.18.10.0/24', '--aux-address', 'printer=198.18.10.3', 'web');
    await h.ok('sandbox', 'create', 'a');
    await h.ok('network', 'connect', 'web', 'a'); // 198.18.10.2
    await h.ok('sandbox', 'create', 'b'); // a netns for cnitool
    const add = await h.sh('env', `NETCONFPATH=${STATE}/net.d`, join(binDir(), 'cnitool'), 'add', 'web', '/run/netns/b');
    expect(add.code).toBe(0);
    // not .1 (gateway), .2 (the endpoint), .3 (aux)
    expect(JSON.parse(add.stdout).ips).toEqual([expect.objectContaining({ address: '198.18.10.4/24' })]);
    expect(await h.cnm('sandbox', 'exec', 'b', '--', 'ping', '-c1', '-W2', '198.18.10.2')).toMatchObject({ code: 0 });
    // a cnm endpoint made now gets the next free address and the next free ethN, and keeps cnitool's default route (eth0's)
    await h.ok('network', 'connect', 'web', 'b');
    expect((await h.sh('ip', '-n', 'b', '-4', '-o', 'addr', 'show', 'eth1')).stdout).toContain('198.18.10.5/24');
    expect(await routes(h, 'b')).toEqual([
      'default via 198.18.10.1 dev eth0',
      '198.18.10.0/24 dev eth0 proto kernel scope link src 198.18.10.4',
      '198.18.10.0/24 dev eth1 proto kernel scope link src 198.18.10.5',
    ]);
    expect(await h.sh('env', `NETCONFPATH=${STATE}/net.d`, join(binDir(), 'cnitool'), 'del', 'web', '/run/netns/b')).toMatchObject({ code: 0 });
    expect((await h.sh('ls', `${STATE}/ipam/web`)).stdout.split('\n').filter((f) => f.startsWith('198.')).sort()).toEqual(['198.18.10.2', '198.18.10.3', '198.18.10.5']);
    await h.ok('sandbox', 'rm', 'a', 'b');
    await h.ok('network', 'rm', 'web');
    await expectNothingLeft(h, 'web');
  }));

test('CLI: global options before or after the subcommand, --help on every command, one stderr line per error naming the object, exit codes', () =>
  withCnmHost(async (h) => {
    await h.ok('--state-dir', '/run/s1', 'network', 'create', '--subnet', '198.18.11.0/24', 'one');
    expect(await h.ok('network', 'ls', '--state-dir', '/run/s1', '--filter', 'name=on', '--format', 'json')).toContain('"Name":"one"');
    expect(await h.ok('network', 'ls', '-q', '--filter', 'driver=bridge')).toBe(''); // the default state dir has none
    for (const cmd of [[], ['network'], ['sandbox'], ['network', 'create'], ['network', 'ls'], ['network', 'inspect'], ['network', 'connect'], ['network', 'disconnect'], ['network', 'rm'], ['network', 'prune'], ['sandbox', 'create'], ['sandbox', 'ls'], ['sandbox', 'rm'], ['sandbox', 'exec'], ['run']]) {
      const r = await h.cnm(...cmd, '--help');
      expect({ cmd, code: r.code, stderr: r.stderr }).toEqual({ cmd, code: 0, stderr: '' });
      expect(r.stdout).toMatch(/^usage: cnm /);
      expect(r.stdout).toContain('--state-dir DIR');
    }
    const errors: Array<[string[], number, string]> = [
      [['network', 'ls', '--bogus'], 1, "cnm network ls: Unknown option '--bogus' (usage: cnm network ls [OPTIONS])"],
      [['network', 'create'], 1, 'cnm network create: needs NETWORK (usage: cnm network create [OPTIONS] NETWORK)'],
      [['network', 'create', '--state-dir', '/run/s1', '--subnet', '198.18.11.0/24', 'one'], 1, 'cnm: network with name "one" already exists'],
      [['network', 'rm', '--state-dir', '/run/s1', 'one', 'two'], 1, 'cnm: no such network "two"'],
      [['network', 'disconnect', 'none', 'x'], 1, 'cnm: no such sandbox "x"'],
      [['sandbox', 'exec', 'x'], 1, 'cnm sandbox exec: needs -- CMD... (usage: cnm sandbox exec NAME -- CMD...)'],
      [['frob'], 1, 'cnm: unknown command "frob" (see cnm --help)'],
      [['run', '--network', 'nope', '--', 'true'], 125, 'cnm: no such network "nope"'],
    ];
    for (const [args, code, stderr] of errors) expect({ args, ...(await h.cnm(...args)) }).toMatchObject({ args, code, stderr });
    expect(await h.cnm('--version')).toEqual({ code: 0, stdout: expect.stringMatching(/^cnm: cnikit \d+\.\d+\.\d+ \(build [0-9a-f]{12}\)$/), stderr: '' });
    // rm removed "one" before failing on "two": it says so on stdout
    expect((await h.ok('--state-dir', '/run/s1', 'network', 'ls', '--format', 'json')).split('\n').map((l) => JSON.parse(l).Name)).toEqual(['host', 'none']);
    expect(await h.ok('network', 'disconnect', '-f', 'none', 'x')).toBe('');
    expect((await h.cnm('sandbox', 'exec', '--', 'x')).code).toBe(1);
    // state files: 0700 directories, 0600 records
    expect((await h.sh('stat', '-c', '%a %n', '/run/s1', '/run/s1/networks', '/run/s1/net.d')).stdout).toBe('700 /run/s1\n700 /run/s1/networks\n700 /run/s1/net.d');
    expect((await h.sh('sh', '-c', 'stat -c %a /run/s1/networks/*.json | sort -u')).stdout).toBe('600');
  }));

test('a sandbox whose netns was deleted behind cnm (ip netns del) is removed cleanly: DEL runs without a netns, the lease and masquerade go', () =>
  withCnmHost(async (h) => {
    await h.ok('network', 'create', '--subnet', '198.18.12.0/24', 'web');
    await h.ok('sandbox', 'create', 'a');
    await h.ok('network', 'connect', 'web', 'a');
    expect((await h.sh('iptables-save', '-t', 'nat')).stdout + (await h.sh('nft', 'list', 'ruleset')).stdout).toContain('198.18.12.2');
    await h.sh('ip', 'netns', 'del', 'a');
    expect(await h.ok('sandbox', 'rm', 'a')).toBe('a');
    expect((await h.sh('iptables-save', '-t', 'nat')).stdout + (await h.sh('nft', 'list', 'ruleset')).stdout).not.toContain('198.18.12.2');
    await h.ok('network', 'rm', 'web');
    await expectNothingLeft(h, 'web');
  }));

test('8 concurrent cnm runs on one network: the state lock serialises them, each gets its own address, nothing is left', () =>
  withCnmHost(async (h) => {
    await h.ok('network', 'create', '--subnet', '198.18.13.0/24', '--ip-range', '198.18.13.64/28', 'web');
    const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => h.sh(join(binDir(), 'cnm'), 'run', '--rm', '--name', `c${i}`, '--network', 'web', '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0')));
    for (const r of runs) expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const addrs = runs.map((r) => /inet (\S+)/.exec(r.stdout)![1]!);
    expect(new Set(addrs).size).toBe(8);
    // from --ip-range 198.18.13.64/28 only
    for (const a of addrs) expect(a).toMatch(/^198\.18\.13\.(6[4-9]|7\d)\/24$/);
    await h.ok('network', 'rm', 'web');
    await expectNothingLeft(h, 'web');
  }));
