// A network removed and created again reuses its VNI (cnm hands out the lowest free one): the pods'
// bridge ovlbr.<vni> of the old network must not be left with the old gateway address.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { OverlayLab, ping, until, type Host } from './overlay-harness';

jest.setTimeout(90000);

const lab = new OverlayLab();
let h1: Host, h2: Host;
const VNI = 61;

beforeAll(async () => {
  await lab.start();
  h1 = await lab.addHost();
  h2 = await lab.addHost();
  await lab.startEtcd(1);
  for (const h of [h1, h2]) lab.startAgent(h, 3);
});
afterAll(() => lab.close());

const link = async (h: Host, name: string) => (await execa('ip', ['-n', h.ns, '-br', 'addr', 'show', name], { reject: false })).stdout;

async function podOn(h: Host, net: string, tag: string): Promise<{ ns: string; ip: string }> {
  const ns = await lab.podNetns(tag);
  const r = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, net));
  if (r.exitCode !== 0) throw new Error(`ADD on ${h.name}: ${r.stdout}${r.stderr}`);
  return { ns, ip: String(r.json.ips[0].address).split('/')[0]! };
}

async function define(net: string, subnet: string): Promise<void> {
  await lab.defineNetwork(net, subnet, VNI);
  for (const h of [h1, h2]) await h.agent!.waitFor(new RegExp(`network ${net}: host subnet .* 1 peer`), 15000);
}

test('removing a network removes its pods\' bridge with its vxlan device', async () => {
  await define('first', '198.18.128.0/17');
  await podOn(h1, 'first', 'a');
  expect(await link(h1, `ovlbr.${VNI}`)).toMatch(/198\.18\.\d+\.1\/24/);
  await lab.removeNetwork('first');
  await until(`ovl.${VNI} gone on ${h1.name}`, async () => !(await link(h1, `ovl.${VNI}`)));
  expect(await link(h1, `ovlbr.${VNI}`)).toBe('');
});

test('a network created again with the same VNI while an agent was down: the stale gateway leaves the bridge, pods are added and reach the other host', async () => {
  await define('second', '198.18.128.0/17');
  await podOn(h1, 'second', 'b');
  const old = await link(h1, `ovlbr.${VNI}`);
  await h1.agent!.kill('SIGTERM');
  await lab.removeNetwork('second');
  await lab.defineNetwork('third', '198.18.0.0/17', VNI);
  await h2.agent!.waitFor(/network third: host subnet/, 15000);
  lab.startAgent(h1, 3);
  await h1.agent!.waitFor(/network third: host subnet .* 1 peer/, 15000);
  expect(old).toMatch(/198\.18\.1\d\d\.1\/24/);
  expect(await link(h1, `ovlbr.${VNI}`)).not.toMatch(/198\.18\.1\d\d\./);
  const a = await podOn(h1, 'third', 'c');
  const b = await podOn(h2, 'third', 'd');
  expect(await ping(a.ns, b.ip)).toBe(true);
});

test('a second network defined by hand with a VNI already in use is not joined; the first keeps its routes and bridge address', async () => {
  await lab.defineNetwork('older', '198.18.128.0/17', 62);
  for (const h of [h1, h2]) await h.agent!.waitFor(/network older: host subnet .* 1 peer/, 15000);
  const a = await podOn(h1, 'older', 'e');
  const b = await podOn(h2, 'older', 'f');
  expect(await ping(a.ns, b.ip)).toBe(true);
  const bridge = await link(h1, 'ovlbr.62');
  // A lease file of "younger" left from before (an agent that joined it under the old rules) goes.
  writeFileSync(`${h1.stateDir}/younger.json`, readFileSync(`${h1.stateDir}/older.json`, 'utf8').replace('"older"', '"younger"'));
  await lab.defineNetwork('younger', '198.18.0.0/17', 62);
  for (const h of [h1, h2]) await h.agent!.waitFor(/network younger: VNI 62 is already network older's \(defined earlier\); not joining it/, 15000);
  await new Promise((r) => setTimeout(r, 500)); // a sync after the event
  expect(await ping(a.ns, b.ip)).toBe(true);
  expect(await link(h1, 'ovlbr.62')).toBe(bridge);
  expect(await lab.keys('subnets/younger/')).toEqual([]);
  for (const h of [h1, h2]) {
    expect(existsSync(`${h.stateDir}/younger.json`)).toBe(false);
    expect(h.agent!.out).not.toContain('network younger: removed from etcd'); // it was not
  }
  await lab.removeNetwork('younger');
  await lab.removeNetwork('older');
});

test('a definition whose subnet changes: every host leases a subnet of the new one and deletes its old key; a definition removed by hand leaves no key', async () => {
  await lab.defineNetwork('moving', '10.77.0.0/16', 63);
  for (const h of [h1, h2]) await h.agent!.waitFor(/network moving: host subnet 10\.77\.\d+\.0\/24 .* 1 peer/, 15000);
  const marks = [h1, h2].map((h) => h.agent!.out.length);
  await lab.etcdctl('put', `${lab.prefix}networks/moving`, JSON.stringify({ subnet: '10.78.0.0/16', hostPrefix: 24, vni: 63 }));
  for (const [i, h] of [h1, h2].entries()) await h.agent!.waitFor(/network moving: host subnet 10\.78\.\d+\.0\/24 .* 1 peer/, 15000, marks[i]);
  await until('only keys of the new subnet', async () => (await lab.keys('subnets/moving/')).every((k) => k.includes('/10.78.')), 5000);
  expect(await lab.keys('subnets/moving/')).toHaveLength(2);
  for (const h of [h1, h2]) expect(JSON.parse(readFileSync(`${h.stateDir}/moving.json`, 'utf8')).hostSubnet).toMatch(/^10\.78\./);
  const a = await podOn(h1, 'moving', 'g');
  const b = await podOn(h2, 'moving', 'h');
  expect(a.ip).toMatch(/^10\.78\./);
  expect(await ping(a.ns, b.ip)).toBe(true);
  await lab.etcdctl('del', `${lab.prefix}networks/moving`); // the definition only, as by hand
  await until('no key of moving left', async () => (await lab.keys('subnets/moving/')).length === 0, 5000);
});
