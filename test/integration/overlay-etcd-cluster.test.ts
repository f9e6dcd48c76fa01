// The overlay against a 3-member etcd cluster (issue 13, reliability): one member lost changes
// nothing for pods, ADDs or a host joining; the whole cluster lost keeps the data plane and the
// per-pod path working, and the agents converge when it returns.
import { readFileSync } from 'node:fs';
import { OverlayLab, ping, unreachablePairs, until, type Host, type LabPod } from './overlay-harness';

jest.setTimeout(120000);

const NET = 'multi';
const TTL = 3;
const lab = new OverlayLab();
const pods: LabPod[] = [];
const figures: string[] = [];
let seq = 0;

async function addPod(h: Host): Promise<LabPod> {
  const ns = await lab.podNetns(`c${++seq}`);
  const r = await lab.cni(h, 'ADD', ns, lab.overlayConf(h, NET));
  if (r.exitCode !== 0) throw new Error(`ADD on ${h.name} failed: ${r.stdout} ${r.stderr}`);
  const pod = { host: h, ns, ip: String(r.json.ips[0].address).split('/')[0]! };
  pods.push(pod);
  return pod;
}

beforeAll(async () => {
  await lab.start();
  await lab.addHost();
  await lab.addHost();
  await lab.startEtcd(3);
  await lab.defineNetwork(NET, '198.18.128.0/17', 42);
  for (const h of lab.hosts) lab.startAgent(h, TTL);
  for (const h of lab.hosts) await h.agent!.waitFor(/host subnet .* 1 peer/);
  for (const h of lab.hosts) await addPod(h);
});

afterAll(async () => {
  await lab.close();
  if (figures.length) process.stderr.write(`overlay etcd-cluster figures:\n  ${figures.join('\n  ')}\n`);
});

test('one of three etcd members killed: pods keep pinging, new ADDs work, a new host joins and is routable', async () => {
  await lab.expectAllPairsPing(pods);
  await lab.etcd[0]!.proc!.kill('SIGKILL');
  await lab.expectAllPairsPing(pods);
  for (const h of lab.hosts) await addPod(h);
  const h3 = await lab.addHost();
  const others = lab.hosts.filter((h) => h !== h3).map((h) => [h, h.agent!.out.length] as const);
  const t0 = Date.now();
  lab.startAgent(h3, TTL);
  await h3.agent!.waitFor(/host subnet .* 2 peer/, 30000);
  const subnet = JSON.parse(readFileSync(`${h3.stateDir}/${NET}.json`, 'utf8')).hostSubnet as string;
  for (const [h, at] of others) await h.agent!.waitFor(new RegExp(`routes to ${subnet.replace(/[./]/g, '\\$&')} programmed`), 10000, at);
  figures.push(`one member down: a new host's subnet routed on every other host ${Date.now() - t0} ms after its agent started`);
  await addPod(h3);
  await lab.expectAllPairsPing(pods);
  // Every live agent still (or again) holds its subnet.
  await until('3 subnet keys', async () => (await lab.keys(`subnets/${NET}/`)).length === 3, 10000);
});

test('whole cluster down: pods keep pinging and ADDs on leased hosts work; agents retry and converge when it returns', async () => {
  const marks = lab.hosts.map((h) => [h, h.agent!.out.length] as const);
  for (const m of lab.etcd) await m.proc!.kill('SIGKILL');
  for (const [h, at] of marks) await h.agent!.waitFor(/retrying in \d+ ms/, 30000, at);
  await lab.expectAllPairsPing(pods);
  await addPod(lab.hosts[0]!);
  await new Promise((r) => setTimeout(r, 2 * TTL * 1000));
  await lab.expectAllPairsPing(pods);
  const back = Date.now();
  const again = lab.hosts.map((h) => [h, h.agent!.out.length] as const);
  for (const m of lab.etcd) lab.runEtcd(m);
  for (const [h, at] of again) await h.agent!.waitFor(/connected: lease/, 30000, at);
  figures.push(`whole cluster down ${2 * TTL} s: all agents reconnected ${Date.now() - back} ms after the members restarted`);
  await until('3 subnet keys again', async () => (await lab.keys(`subnets/${NET}/`)).length === 3, 10000);
  await until('every pod pair to ping again', async () => (await unreachablePairs(pods)).length === 0, 15000);
  figures.push(`whole cluster down: all pairs ping ${Date.now() - back} ms after the members restarted`);
  const h4 = await lab.addHost();
  lab.startAgent(h4, TTL);
  await h4.agent!.waitFor(/host subnet .* 3 peer/, 30000);
  const pod = await addPod(h4);
  await until('a host joining after the outage is routable', () => ping(pods[0]!.ns, pod.ip), 10000);
});
