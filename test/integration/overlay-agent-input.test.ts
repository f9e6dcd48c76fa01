// overlay-agent command-line and host checks that need a host netns (and, for the state dir, etcd:
// a bad state dir must be refused before the agent leases anything).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { binDir } from '../support/cni';
import { execa } from 'execa';
import { OverlayLab, inNs, until, type Host } from './overlay-harness';

jest.setTimeout(60000);

const lab = new OverlayLab();
let h: Host;

beforeAll(async () => {
  await lab.start();
  h = await lab.addHost();
  await lab.startEtcd(1);
  await lab.defineNetwork('inp', '198.18.128.0/17', 51);
});
afterAll(() => lab.close());

const agent = (args: string[]) => inNs(h.ns, [join(binDir(), 'cnikit'), 'overlay-agent', '--etcd', lab.endpoints, '--underlay-ip', h.ip, '--etcd-prefix', lab.prefix, ...args], { timeout: 10000 });

test('a --state-dir that is a file is refused (exit 1, naming it) before any subnet is leased', async () => {
  const file = join(lab.tmp, 'afile');
  writeFileSync(file, '');
  for (const dir of [file, join(file, 'sub')]) {
    const r = await agent(['--state-dir', dir, '--name', 'h1']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`--state-dir ${dir}: not a directory`);
  }
  expect(await lab.keys('subnets/')).toEqual([]);
});

test('a flag value starting with a dash is refused with parseArgs\' explanation (exit 2), not an internal error', async () => {
  const r = await agent(['--state-dir', join(lab.tmp, 's'), '--name', '-x']);
  expect(r.exitCode).toBe(2);
  expect(r.stderr).toContain("overlay-agent: Option '--name' argument is ambiguous");
  expect(r.stderr).toContain("'--name=-XYZ'");
  expect(r.stderr).not.toContain('internal error');
});

test('etcd at an address nobody answers: each attempt ends within the dial timeout, the backoff doubles from 200 ms to a third of the TTL (whole ms)', async () => {
  const p = lab.spawn(h.ns, [join(binDir(), 'cnikit'), 'overlay-agent', '--etcd', `http://${lab.hosts[0]!.ip.replace(/\d+$/, '99')}:2379`, '--underlay-ip', h.ip, '--etcd-prefix', lab.prefix, '--state-dir', join(lab.tmp, 'u'), '--lease-ttl', '4']);
  await p.waitFor(/retrying in 1333 ms/, 40000);
  const delays = [...p.out.matchAll(/retrying in (\S+) ms/g)].map((m) => m[1]);
  expect(delays.slice(0, 4)).toEqual(['200', '400', '800', '1333']);
  // The first warning: one dial timeout (3 s) after start, not four.
  const at = (re: RegExp) => Date.parse(re.exec(p.out)![1]!);
  expect(at(/^(\S+) .*retrying in 200 ms/m) - at(/^(\S+) .*info: host /m)).toBeLessThan(6000);
  await p.kill('SIGTERM');
  expect(p.exitCode).toBe(0);
});

test('two hosts whose agents have the same --name each lease a subnet of their own and route to the other; the key is not rewritten in turn', async () => {
  const h2 = await lab.addHost();
  const a1 = lab.startAgent(h, 3, ['--name', 'twin']);
  const a2 = lab.startAgent(h2, 3, ['--name', 'twin']);
  try {
    for (const a of [a1, a2]) await a.waitFor(/network inp: host subnet .* 1 peer/, 15000);
    const keys = await lab.keys('subnets/inp/');
    expect(keys).toHaveLength(2);
    const rev = async () => JSON.parse((await lab.etcdctl('get', keys[0]!, '-w', 'json')).stdout).kvs[0].mod_revision as number;
    const before = await rev();
    await new Promise((r) => setTimeout(r, 1000));
    expect(await rev()).toBe(before);
    for (const [x, other] of [[h, h2], [h2, h]] as const) {
      const fdb = (await execa('bridge', ['-n', x.ns, 'fdb', 'show', 'dev', 'ovl.51'])).stdout;
      expect(fdb).toContain(`dst ${other.ip} self permanent`);
      expect(x.agent!.out).toContain(`also calls itself "twin": give every host its own --name`);
    }
  } finally {
    await a1.kill();
    await a2.kill();
  }
  await until('the stopped agents\' keys to expire', async () => (await lab.keys('subnets/inp/')).length === 0, 15000);
});

test('cnm --cluster-store with a refusing endpoint first and a live one: every call reaches the live member (each endpoint is tried once per call)', async () => {
  // The endpoints are shuffled per call: six runs of a refusing + a live endpoint try the refusing one first, almost surely.
  const stores = `etcd://${h.ip}:2379,${lab.endpoints.replace('http://', 'etcd://')}`;
  for (let i = 0; i < 6; i++) {
    const r = await inNs(h.ns, [join(binDir(), 'cnikit'), 'cnm', '--state-dir', join(lab.tmp, 'cnm'), '--cluster-store', stores, '--overlay-state-dir', join(lab.tmp, 's'), 'network', 'ls']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
  }
});
