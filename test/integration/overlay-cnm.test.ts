// The CNM side of the overlay (issue 13 §3): `cnm --cluster-store etcd://…` creates a global overlay
// network on one host, every host sees it, cnm sandboxes on two hosts ping each other and a cnitool
// pod on a third host pings both: the two-host demo of Docker's overlay document, on our suite.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { binDir } from '../support/cni';
import { OverlayLab, inNs, until, type Host } from './overlay-harness';

jest.setTimeout(120000);

const lab = new OverlayLab({ defaultPrefix: true });
let A: Host, B: Host, C: Host;
const ip: Record<string, string> = {};
const SA = `sa-${lab.id}`;
const SB = `sb-${lab.id}`;

async function ok(h: Host, ...args: string[]): Promise<string> {
  const r = await lab.cnm(h, ...args);
  if (r.exitCode !== 0) throw new Error(`cnm ${args.join(' ')} on ${h.name}: exit ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
}

/** The IPv4 address (no prefix) of sandbox `sb` on network `net`, from `cnm network inspect` on `h`. */
async function sandboxIP(h: Host, net: string, sb: string): Promise<string> {
  const [n] = JSON.parse(await ok(h, 'network', 'inspect', net)) as Array<{ Containers: Record<string, { Name: string; IPv4Address: string }> }>;
  const c = Object.values(n!.Containers).find((x) => x.Name === sb);
  if (!c) throw new Error(`${sb} not on ${net} in ${JSON.stringify(n)}`);
  return c.IPv4Address.split('/')[0]!;
}

const hasLink = async (h: Host, name: string) => (await execa('ip', ['-n', h.ns, 'link', 'show', name], { reject: false })).exitCode === 0;

beforeAll(async () => {
  await lab.start();
  A = await lab.addHost();
  B = await lab.addHost();
  C = await lab.addHost();
  await lab.startEtcd(1);
  for (const h of [A, B, C]) lab.startAgent(h, 3);
  for (const h of [A, B, C]) await h.agent!.waitFor(/connected: lease/);
});

afterAll(async () => {
  // cnm's sandboxes are named netns in /run/netns: removed through cnm, else directly.
  for (const [h, sb] of [[A, SA], [B, SB]] as const) if ((await lab.cnm(h, 'sandbox', 'rm', sb)).exitCode !== 0) await execa('ip', ['netns', 'del', sb], { reject: false });
  await lab.close();
});

test('network create -d overlay on host A: a global network every host lists; the agents join it', async () => {
  const id = (await ok(A, 'network', 'create', '-d', 'overlay', '--subnet', '198.18.128.0/17', 'multi')).trim();
  expect(id).toMatch(/^[0-9a-f]{64}$/);
  const def = await lab.etcdctl('get', '--print-value-only', `${lab.prefix}networks/multi`);
  expect(JSON.parse(def.stdout)).toEqual({ subnet: '198.18.128.0/17', hostPrefix: 24, vni: 1 });
  const ls = (await ok(B, 'network', 'ls', '--format', 'json')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { Name: string; Driver: string; Scope: string });
  expect(ls.find((n) => n.Name === 'multi')).toMatchObject({ Driver: 'overlay', Scope: 'global' });
  for (const h of [A, B, C]) await h.agent!.waitFor(/network multi: host subnet .* on ovl\.1 .*2 peer/);
});

test('VNIs are unique per network: -o vni=1 is refused while multi has it; the next network gets VNI 2', async () => {
  const r = await lab.cnm(B, 'network', 'create', '-d', 'overlay', '--subnet', '198.18.64.0/18', '-o', 'vni=1', 'other');
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain('-o vni=1: VNI 1 is used by network "multi"');
  await ok(B, 'network', 'create', '-d', 'overlay', '--subnet', '198.18.64.0/18', 'other');
  expect(JSON.parse((await lab.etcdctl('get', '--print-value-only', `${lab.prefix}networks/other`)).stdout).vni).toBe(2);
  await ok(C, 'network', 'rm', 'other');
  expect(await lab.keys('vnis/')).toEqual([`${lab.prefix}vnis/1`]);
});

test('a VNI of a network defined by hand (no vnis/ key) is not allocated again, and -o vni= of it is refused naming that network', async () => {
  const taken = new Set((await lab.keys('vnis/')).map((k) => Number(k.slice(`${lab.prefix}vnis/`.length))));
  let next = 1;
  while (taken.has(next)) next++;
  await lab.defineNetwork('byhand', '198.18.32.0/19', next);
  try {
    const r = await lab.cnm(B, 'network', 'create', '-d', 'overlay', '--subnet', '198.18.64.0/18', '-o', `vni=${next}`, 'other');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`-o vni=${next}: VNI ${next} is used by network "byhand"`);
    await ok(B, 'network', 'create', '-d', 'overlay', '--subnet', '198.18.64.0/18', 'other');
    expect(JSON.parse((await lab.etcdctl('get', '--print-value-only', `${lab.prefix}networks/other`)).stdout).vni).toBe(next + 1);
    await ok(C, 'network', 'rm', 'other');
  } finally {
    await lab.removeNetwork('byhand');
  }
});

test('cnm sandboxes on hosts A (with --ip) and B ping each other; `cnm run` on B reaches A', async () => {
  // --ip: an address of A's own subnet of the network.
  const want = JSON.parse(readFileSync(join(A.stateDir, 'multi.json'), 'utf8')).hostSubnet.replace(/0\/24$/, '50');
  await ok(A, 'sandbox', 'create', SA);
  await ok(A, 'network', 'connect', '--ip', want, 'multi', SA);
  await ok(B, 'sandbox', 'create', SB);
  await ok(B, 'network', 'connect', 'multi', SB);
  ip.sa = await sandboxIP(A, 'multi', SA);
  expect(ip.sa).toBe(want);
  ip.sb = await sandboxIP(B, 'multi', SB);
  expect(ip.sa.split('.').slice(0, 3)).not.toEqual(ip.sb.split('.').slice(0, 3)); // different host subnets
  expect((await lab.cnm(A, 'sandbox', 'exec', SA, '--', 'ping', '-c', '1', '-W', '2', ip.sb)).exitCode).toBe(0);
  const run = await lab.cnm(B, 'run', '--rm', '--network', 'multi', '--', 'ping', '-c', '1', '-W', '2', ip.sa);
  expect(run.exitCode).toBe(0);
});

test('a cnitool pod on host C pings the cnm sandboxes on A and B', async () => {
  const netDir = join(C.dir, 'net.d');
  mkdirSync(netDir, { recursive: true });
  writeFileSync(join(netDir, 'multi.conflist'), JSON.stringify({ cniVersion: '1.1.0', name: 'multi', plugins: [{ type: 'overlay', network: 'multi', stateDir: C.stateDir }] }));
  const pod = await lab.podNetns('cnitool');
  const r = await inNs(C.ns, [join(binDir(), 'cnitool'), 'add', 'multi', `/run/netns/${pod}`], { env: { PATH: process.env.PATH!, NETCONFPATH: netDir, CNI_PATH: binDir(), CNI_CACHEDIR: join(C.dir, 'cache') } });
  expect(r.exitCode).toBe(0);
  for (const target of [ip.sa!, ip.sb!]) expect((await inNs(pod, ['ping', '-c', '1', '-W', '2', target])).exitCode).toBe(0);
  const del = await inNs(C.ns, [join(binDir(), 'cnitool'), 'del', 'multi', `/run/netns/${pod}`], { env: { PATH: process.env.PATH!, NETCONFPATH: netDir, CNI_PATH: binDir(), CNI_CACHEDIR: join(C.dir, 'cache') } });
  expect(del.exitCode).toBe(0);
});

test('network rm from any host is refused while a host has an endpoint; afterwards no key remains and every agent removes its device', async () => {
  const refused = await lab.cnm(C, 'network', 'rm', 'multi');
  expect(refused.exitCode).toBe(1);
  // Hosts named as their agents call themselves (--name), not by the hostname they all share here.
  expect(refused.stderr).toMatch(new RegExp(`network "multi" has active endpoints on (${A.name}, ${B.name}|${B.name}, ${A.name}): 2`));
  await ok(A, 'sandbox', 'rm', SA);
  await ok(B, 'sandbox', 'rm', SB);
  await ok(C, 'network', 'rm', 'multi');
  expect((await ok(A, 'network', 'ls', '--format', 'json')).includes('"multi"')).toBe(false);
  for (const h of [A, B, C]) await until(`ovl.1 gone on ${h.name}`, async () => !(await hasLink(h, 'ovl.1')));
  expect(await lab.keys()).toEqual([]);
});
