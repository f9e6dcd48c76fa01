// The overlay network on real etcd (issue 13): hosts are netns on a scratch underlay switch, etcd
// runs in its own netns, `cnikit overlay-agent` runs in every host, pods are added with the overlay
// plugin. Lease TTLs are short (--lease-ttl 3) so host loss and recovery take seconds.
import { execa } from 'execa';
import { OverlayLab, inNs, ping, until, type Host } from './overlay-harness';

jest.setTimeout(120000);

const NET = 'multi';
const SUBNET = '198.18.128.0/17';
const VNI = 42;
const TTL = 3;

const lab = new OverlayLab();
const pods: Array<{ host: Host; ns: string; ip: string }> = [];
const figures: string[] = [];

async function addPod(h: Host, tag: string): Promise<{ host: Host; ns: string; ip: string }> {
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
  const failed: string[] = [];
  for (const a of pods) for (const b of pods) if (a !== b && !(await ping(a.ns, b.ip))) failed.push(`${a.host.name}/${a.ip} -> ${b.host.name}/${b.ip}`);
  expect(failed).toEqual([]);
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
