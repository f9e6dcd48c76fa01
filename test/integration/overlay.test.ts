// The overlay network on real etcd (issue 13): hosts are netns on a scratch underlay switch, etcd
// runs in its own netns, `cnikit overlay-agent` runs in every host, pods are added with the overlay
// plugin. Lease TTLs are short (--lease-ttl 3) so host loss and recovery take seconds.
import { existsSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { binDir } from '../support/cni';
import { OverlayLab, inNs, ping, until, type Host, type LabPod } from './overlay-harness';

jest.setTimeout(120000);

const NET = 'multi';
const SUBNET = '198.18.128.0/17';
const VNI = 42;
const TTL = 3;

const lab = new OverlayLab();
const pods: LabPod[] = [];
const figures: string[] = [];

async function addPod(h: Host, tag: string): Promise<LabPod> {
  const ns = await lab.podNetns(tag);
  const r = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, NET));
  if (r.exitCode !== 0) throw new Error(`ADD on ${h.name} failed: ${r.stdout} ${r.stderr}`);
  const pod = { host: h, ns, ip: String(r.json.ips[0].address).split('/')[0]! };
  return pod;
}

/** The routes on host h's vxlan device, as "dst via gw". */
async function vxlanRoutes(h: Host): Promise<string[]> {
  const r = await execa('ip', ['-n', h.ns, '-j', 'route', 'show', 'dev', `ovl.${VNI}`], { reject: false });
  return (JSON.parse(r.stdout || '[]') as Array<{ dst: string; gateway?: string }>).map((x) => `${x.dst} via ${x.gateway}`).sort();
}

async function fdb(h: Host): Promise<string[]> {
  const r = await execa('bridge', ['-n', h.ns, 'fdb', 'show', 'dev', `ovl.${VNI}`], { reject: false });
  return r.stdout.split('\n').filter((l) => l.includes(' dst '));
}

beforeAll(async () => {
  await lab.start();
  for (let i = 0; i < 3; i++) await lab.addHost();
  await lab.startEtcd(1);
  await lab.defineNetwork(NET, SUBNET, VNI);
  for (const h of lab.hosts) lab.startAgent(h, TTL);
  for (const h of lab.hosts) await h.agent!.waitFor(/host subnet 198\.18\.\d+\.0\/24 on ovl\.42.*2 peer/);
});

afterAll(async () => {
  await lab.close();
  if (figures.length) process.stderr.write(`overlay figures:\n  ${figures.join('\n  ')}\n`);
});

test('every host leases a distinct /24 of the network and gets a vxlan device with MTU underlay − 50', async () => {
  const subnets = await lab.keys(`subnets/${NET}/`);
  expect(subnets).toHaveLength(3);
  for (const h of lab.hosts) {
    const [link] = JSON.parse((await execa('ip', ['-n', h.ns, '-j', '-d', 'link', 'show', `ovl.${VNI}`])).stdout) as Array<{ mtu: number; linkinfo: { info_kind: string; info_data: { id: number; local: string; port: number; learning: boolean } } }>;
    expect(link!.mtu).toBe(1450);
    expect(link!.linkinfo.info_kind).toBe('vxlan');
    expect(link!.linkinfo.info_data).toMatchObject({ id: VNI, local: h.ip, port: 4789, learning: false });
    expect(await vxlanRoutes(h)).toHaveLength(2);
    expect(await fdb(h)).toHaveLength(2);
  }
});

test('3 hosts × 2 pods: every pod pings every other pod (across hosts over VXLAN)', async () => {
  for (const h of lab.hosts) for (const k of [1, 2]) pods.push(await addPod(h, `${h.name.slice(4)}${k}`));
  expect(new Set(pods.map((p) => p.ip)).size).toBe(6);
  await lab.expectAllPairsPing(pods);
});

test('CHECK passes on a pod; DEL releases its address and its record, and a second DEL succeeds', async () => {
  const h = lab.hosts[1]!;
  const ns = await lab.podNetns('chk');
  const add = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, NET));
  expect(add.exitCode).toBe(0);
  const ipam = `${h.stateDir}/pods/ipam/${NET}`;
  const ip = String(add.json.ips[0].address).split('/')[0]!;
  expect(existsSync(`${ipam}/${ip}`)).toBe(true);
  expect((await lab.cni(h, 'CHECK', ns, { ...lab.overlayConf(h, NET), prevResult: add.json })).exitCode).toBe(0);
  expect((await lab.cni(h, 'DEL', ns, lab.overlayConf(h, NET))).exitCode).toBe(0);
  expect(existsSync(`${ipam}/${ip}`)).toBe(false);
  expect(existsSync(`${h.stateDir}/pods/attachments/${NET}/c-${ns}:eth0`)).toBe(false);
  expect((await lab.cni(h, 'DEL', ns, lab.overlayConf(h, NET))).exitCode).toBe(0);
});

test('ipMasq: a pod\'s traffic to another host\'s pod keeps its source address; what leaves the overlay is masqueraded', async () => {
  const h = lab.hosts[0]!;
  const ns = await lab.podNetns('masq');
  const add = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, NET, { ipMasq: true }));
  expect(add.exitCode).toBe(0);
  const src = String(add.json.ips[0].address).split('/')[0]!;
  const before = (await inNs(h.ns, ['iptables-save', '-t', 'nat'])).stdout;
  // The pod's masquerade chain exempts the whole overlay, not only this host's subnet.
  expect(before.split('\n').some((l) => l.includes(`-d ${SUBNET} `) && l.includes(`c-${ns}`) && l.includes('-j ACCEPT'))).toBe(true);
  // Who connects, as the other end sees it: a pod on another host, and host2's underlay address.
  const seen = async (serverNs: string, listenIp: string): Promise<string> => {
    const server = lab.spawn(serverNs, [process.execPath, '-e', `require('net').createServer((c)=>{console.log(c.remoteAddress);c.end();process.exit(0)}).listen(7070,'${listenIp}',()=>console.error('up'))`]);
    await server.waitFor(/up/);
    const c = await inNs(ns, [process.execPath, '-e', `require('net').connect(7070,'${listenIp}').on('data',()=>{}).on('end',()=>process.exit(0))`]);
    expect(c.exitCode).toBe(0);
    await server.exited;
    return server.out.split('\n').find((l) => /^\d+\./.test(l)) ?? '';
  };
  const remote = pods.find((p) => p.host === lab.hosts[1])!;
  expect(await seen(remote.ns, remote.ip)).toBe(src);
  expect(await seen(lab.hosts[1]!.ns, lab.hosts[1]!.ip)).toBe(h.ip); // masqueraded to host1's underlay address
  expect((await lab.cni(h, 'DEL', ns, lab.overlayConf(h, NET, { ipMasq: true }))).exitCode).toBe(0);
  const rules = (await inNs(h.ns, ['iptables-save', '-t', 'nat'])).stdout;
  expect(rules).not.toContain(`c-${ns}`);
});

test('pod MTU is the underlay MTU − 50: a DF ping of exactly 1450 bytes crosses hosts, 1451 does not', async () => {
  const [a, b] = [pods[0]!, pods[2]!];
  expect(a.host).not.toBe(b.host);
  const mtu = JSON.parse((await execa('ip', ['-n', a.ns, '-j', 'link', 'show', 'eth0'])).stdout)[0].mtu;
  expect(mtu).toBe(1450);
  expect(await ping(a.ns, b.ip, ['-M', 'do', '-s', String(1450 - 28)])).toBe(true);
  expect(await ping(a.ns, b.ip, ['-M', 'do', '-s', String(1451 - 28)])).toBe(false);
});

test('ADD on a network this host has no lease for fails with code 11 naming the network', async () => {
  const h = lab.hosts[0]!;
  const ns = await lab.podNetns('nolease');
  const r = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, 'nosuch'));
  expect(r.exitCode).not.toBe(0);
  expect(r.json.code).toBe(11);
  expect(r.json.msg).toContain('"nosuch"');
  expect(JSON.parse((await execa('ip', ['-n', ns, '-j', 'link'])).stdout).map((l: { ifname: string }) => l.ifname)).toEqual(['lo']);
});

test('an mtu over the overlay\'s is refused with code 7 naming the field and value', async () => {
  const h = lab.hosts[0]!;
  const ns = await lab.podNetns('bigmtu');
  const r = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, NET, { mtu: 1500 }));
  expect(r.json.code).toBe(7);
  expect(r.json.msg).toMatch(/"mtu" = 1500.*exceeds the MTU 1450/);
});

test('agent restart: no ping lost across hosts, routes and FDB untouched', async () => {
  const [a, b] = [pods[0]!, pods[4]!];
  const h = a.host;
  const routesBefore = await vxlanRoutes(h);
  const pinger = execa('nsenter', [`--net=/run/netns/${a.ns}`, 'ping', '-i', '0.01', '-c', '300', '-W', '1', b.ip], { reject: false });
  await new Promise((r) => setTimeout(r, 300));
  await h.agent!.kill('SIGTERM');
  expect(h.agent!.exitCode).toBe(0);
  const agent = lab.startAgent(h, TTL);
  await agent.waitFor(/host subnet .* 2 peer/);
  const out = (await pinger).stdout;
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out)!;
  figures.push(`agent restart: ${m[1]} pings every 10 ms, ${Number(m[1]) - Number(m[2])} lost`);
  expect(Number(m[2])).toBe(Number(m[1]));
  expect(await vxlanRoutes(h)).toEqual(routesBefore);
});

test('two (here three) agents racing for the only subnet of a network: exactly one gets it; removing the network removes every device', async () => {
  await lab.defineNetwork('tiny', '198.18.64.0/24', 43);
  await until('one lease of tiny', async () => (await lab.keys('subnets/tiny/')).length === 1);
  await until('the winner to write its lease file', async () => lab.hosts.some((h) => existsSync(`${h.stateDir}/tiny.json`)));
  // Give the losers time to (wrongly) win too before counting.
  await new Promise((r) => setTimeout(r, 1000));
  expect(await lab.keys('subnets/tiny/')).toHaveLength(1);
  const holders = lab.hosts.filter((h) => existsSync(`${h.stateDir}/tiny.json`));
  expect(holders).toHaveLength(1);
  for (const h of lab.hosts.filter((x) => x !== holders[0])) expect(h.agent!.out).toMatch(/network tiny: no free \/24 left in 198\.18\.64\.0\/24 \(1 leased\)/);

  await lab.removeNetwork('tiny');
  for (const h of lab.hosts) {
    await until(`ovl.43 gone on ${h.name}`, async () => (await execa('ip', ['-n', h.ns, 'link', 'show', 'ovl.43'], { reject: false })).exitCode !== 0);
    expect(existsSync(`${h.stateDir}/tiny.json`)).toBe(false);
  }
});

test('a network overlapping the underlay is refused with an error naming both', async () => {
  await lab.defineNetwork('clash', '198.19.0.0/16', 44);
  for (const h of lab.hosts) await h.agent!.waitFor(/network clash: subnet 198\.19\.0\.0\/16 overlaps the underlay 198\.19\.0\.0\/24 of eth0; not joining it/);
  expect(await lab.keys('subnets/clash/')).toEqual([]);
  await lab.removeNetwork('clash');
});

test('bad agent input: wrong etcd URL, an address no interface has, an underlay MTU too small for VXLAN', async () => {
  const h = lab.hosts[0]!;
  const run = (args: string[]) => inNs(h.ns, [`${binDir()}/cnikit`, 'overlay-agent', ...args], { timeout: 10000 });
  let r = await run(['--etcd', 'htp://198.19.0.101:2379', '--underlay-ip', h.ip]);
  expect(r.exitCode).toBe(2);
  expect(r.stderr).toContain('--etcd "htp://198.19.0.101:2379": scheme htp is not http or https');
  r = await run(['--etcd', 'http://198.19.0.101', '--underlay-ip', h.ip]);
  expect(r.exitCode).toBe(2);
  expect(r.stderr).toContain('--etcd "http://198.19.0.101": no port');
  r = await run(['--etcd', lab.endpoints, '--underlay-ip', '198.19.0.250', '--state-dir', `${lab.tmp}/x`]);
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain('--underlay-ip 198.19.0.250: no interface in this network namespace has that address');
  const small = await lab.addHost(600);
  r = await inNs(small.ns, [`${binDir()}/cnikit`, 'overlay-agent', '--etcd', lab.endpoints, '--underlay-ip', small.ip, '--state-dir', small.stateDir], { timeout: 10000 });
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain('MTU 600 of underlay eth0 is too small: VXLAN takes 50 bytes and pods need at least 576');
});

test('unreachable etcd: the agent says which endpoint and keeps retrying', async () => {
  const h = lab.hosts[0]!;
  const p = lab.spawn(h.ns, [`${binDir()}/cnikit`, 'overlay-agent', '--etcd', 'http://198.19.0.99:2379', '--underlay-ip', h.ip, '--name', 'probe', '--state-dir', `${lab.tmp}/probe`, '--etcd-prefix', lab.prefix]);
  await p.waitFor(/etcd at http:\/\/198\.19\.0\.99:2379: .*retrying in \d+ ms/, 20000);
  expect(p.running).toBe(true);
  await p.kill('SIGTERM');
  expect(p.exitCode).toBe(0);
});

test('host loss: a host killed without goodbye loses its subnet after the TTL, the others drop its route/neighbour/FDB, a new host leases the subnet', async () => {
  const gone = lab.hosts[2]!;
  const lost = JSON.parse(readFileSync(`${gone.stateDir}/${NET}.json`, 'utf8')).hostSubnet as string;
  await gone.agent!.kill('SIGKILL');
  await execa('ip', ['-n', gone.ns, 'link', 'set', 'eth0', 'down']); // the host is gone from the underlay
  const t0 = Date.now();
  for (const h of lab.hosts.slice(0, 2)) await until(`route to ${lost} gone on ${h.name}`, async () => !(await vxlanRoutes(h)).some((r) => r.startsWith(lost)), 5000 + TTL * 3000);
  figures.push(`host loss (TTL ${TTL} s): routes removed on the other hosts ${Date.now() - t0} ms after the kill`);
  for (const h of lab.hosts.slice(0, 2)) {
    expect(await fdb(h)).toHaveLength(1);
    expect(await vxlanRoutes(h)).toHaveLength(1);
    const neigh = (await execa('ip', ['-n', h.ns, 'neigh', 'show', 'dev', `ovl.${VNI}`])).stdout;
    expect(neigh).not.toContain(lost.replace(/\/24$/, ''));
  }
  expect(await lab.keys(`subnets/${NET}/${lost.replace('/', '-')}`)).toEqual([]);
  // A new host joins: the lowest free subnet is the lost one.
  const fresh = await lab.addHost();
  const agent = lab.startAgent(fresh, TTL);
  await agent.waitFor(/host subnet .* 2 peer/);
  expect(JSON.parse(readFileSync(`${fresh.stateDir}/${NET}.json`, 'utf8')).hostSubnet).toBe(lost);
  const pod = await addPod(fresh, 'fresh');
  await until('the new host\'s pod reachable from host1', () => ping(pods[0]!.ns, pod.ip), 5000);
});

test('etcd down: running pods keep pinging, a new ADD on a host with a lease works, agents retry and converge when etcd returns', async () => {
  const m = lab.etcd[0]!;
  const live = lab.hosts.filter((h) => h.agent?.running).map((h) => [h, h.agent!.out.length] as const);
  await m.proc!.kill('SIGKILL');
  for (const [h, at] of live) await h.agent!.waitFor(/retrying in \d+ ms/, 30000, at);
  expect(await ping(pods[0]!.ns, pods[2]!.ip)).toBe(true);
  const late = await addPod(lab.hosts[0]!, 'late');
  expect(await ping(late.ns, pods[2]!.ip)).toBe(true);
  // Twice the TTL: longer than any lease etcd held for us, shorter than the agents' patience.
  await new Promise((r) => setTimeout(r, 2 * TTL * 1000));
  expect(await ping(pods[0]!.ns, pods[2]!.ip)).toBe(true);
  const back = Date.now();
  const marks = lab.hosts.filter((h) => h.agent?.running).map((h) => [h, h.agent!.out.length] as const);
  lab.runEtcd(m);
  for (const [h, at] of marks) await h.agent!.waitFor(/connected: lease/, 30000, at);
  figures.push(`etcd down ${2 * TTL} s: agents reconnected ${Date.now() - back} ms after etcd restarted`);
  await until('every live host to hold its subnet again', async () => (await lab.keys(`subnets/${NET}/`)).length === marks.length, 10000);
  expect(await ping(late.ns, pods[2]!.ip)).toBe(true);
});

test('cleanup: removing the network removes every device and lease file; stopped agents leave no etcd key', async () => {
  await lab.etcdctl('del', `${lab.prefix}networks/${NET}`);
  for (const h of lab.hosts.filter((x) => x.agent?.running)) {
    await until(`ovl.${VNI} gone on ${h.name}`, async () => (await execa('ip', ['-n', h.ns, 'link', 'show', `ovl.${VNI}`], { reject: false })).exitCode !== 0);
    expect(existsSync(`${h.stateDir}/${NET}.json`)).toBe(false); // removed before the device
  }
  for (const h of lab.hosts) await h.agent?.kill('SIGTERM');
  await until('every subnet key to expire with its agent\'s lease', async () => (await lab.keys()).length === 0, (TTL + 3) * 1000);
});
