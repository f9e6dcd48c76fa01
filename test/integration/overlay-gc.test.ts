// The overlay plugin's spec 1.1 GC, without etcd: a host lease file written as the agent writes it
// is all the per-pod path reads, so one scratch host netns and pod netns are enough.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeLease } from '../../overlay/lease-file';
import { parseCIDR } from '../../shared/ip';
import { binDir, suiteNetns } from '../support/cni';

const NET = 'gcnet';
const ns = suiteNetns(['ovgh', 'ovgp1', 'ovgp2', 'ovgp3']);
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cnikit-overlay-gc-'));
  writeLease(dir, { network: NET, subnet: parseCIDR('198.18.128.0/17')!, hostSubnet: parseCIDR('198.18.130.0/24')!, vni: 77, mtu: 1450, bridge: 'ovlbr.77', host: 'h1' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const conf = (name: string, extra: Record<string, unknown> = {}) => ({ cniVersion: '1.1.0', name, type: 'overlay', network: NET, stateDir: dir, ipMasq: true, ...extra });

async function cni(command: string, c: Record<string, unknown>, container = '', pod = '') {
  const env: Record<string, string> = { PATH: process.env.PATH!, CNI_COMMAND: command, CNI_PATH: binDir() };
  if (container) Object.assign(env, { CNI_CONTAINERID: container, CNI_IFNAME: 'eth0', CNI_NETNS: `/run/netns/${pod}` });
  const r = await execa('nsenter', [`--net=/run/netns/${ns.names[0]}`, join(binDir(), 'overlay')], { input: JSON.stringify(c), env, extendEnv: false, reject: false });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const ipamLeases = () => readdirSync(join(dir, 'pods', 'ipam', NET)).filter((f) => /^\d+\./.test(f));
const records = () => readdirSync(join(dir, 'pods', 'attachments', NET)).filter((f) => !f.startsWith('.'));
const masqOf = (id: string) => new RegExp(`id: \\\\?"${id}\\\\?"`);
const masq = async () => (await execa('nsenter', [`--net=/run/netns/${ns.names[0]}`, 'iptables-save', '-t', 'nat'])).stdout;

test('GC releases the address, record and masquerade rules of this config\'s attachments that are not valid; valid ones and other configs\' (cnm sandboxes, other pods) stay', async () => {
  const [, p1, p2, p3] = ns.names;
  for (const [c, id, pod] of [['pods', 'keep', p1], ['pods', 'stale', p2], ['other', 'other', p3]] as const) {
    const r = await cni('ADD', conf(c), id, pod);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
  }
  expect(ipamLeases()).toHaveLength(3);
  expect(records().sort()).toEqual(['keep:eth0', 'other:eth0', 'stale:eth0']);
  expect(await masq()).toMatch(masqOf('stale'));

  const gc = await cni('GC', { ...conf('pods'), 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] });
  expect(gc.stderr).toBe('');
  expect(gc.exitCode).toBe(0);

  expect(records().sort()).toEqual(['keep:eth0', 'other:eth0']);
  expect(ipamLeases()).toHaveLength(2); // "other" was ADDed under another config name: not the runtime's to collect
  const rules = await masq();
  expect(rules).not.toMatch(masqOf('stale'));
  expect(rules).toMatch(masqOf('keep'));
  expect(rules).toMatch(masqOf('other'));
  // The valid attachment still works end to end: CHECK passes, DEL releases it.
  expect((await cni('DEL', conf('pods'), 'keep', p1)).exitCode).toBe(0);
  expect((await cni('DEL', conf('other'), 'other', p3)).exitCode).toBe(0);
  expect(ipamLeases()).toHaveLength(0);
  // The stale one's DEL after GC succeeds (idempotent).
  expect((await cni('DEL', conf('pods'), 'stale', p2)).exitCode).toBe(0);
});

test('GC with a malformed valid-attachments list fails with code 7 naming the key and removes nothing', async () => {
  const [, p1] = ns.names;
  expect((await cni('ADD', conf('pods'), 'kept', p1)).exitCode).toBe(0);
  const gc = await cni('GC', { ...conf('pods'), 'cni.dev/valid-attachments': 'kept' });
  expect(gc.exitCode).not.toBe(0);
  expect(JSON.parse(gc.stdout)).toMatchObject({ code: 7 });
  expect(gc.stdout).toContain('cni.dev/valid-attachments');
  expect(records()).toEqual(['kept:eth0']);
  expect(ipamLeases()).toHaveLength(1);
  expect((await cni('DEL', conf('pods'), 'kept', p1)).exitCode).toBe(0);
});

test('GC after the network is gone (no lease file) still collects, through a record\'s bridge config', async () => {
  const [, p1] = ns.names;
  expect((await cni('ADD', conf('pods'), 'orphan', p1)).exitCode).toBe(0);
  rmSync(join(dir, `${NET}.json`));
  try {
    const gc = await cni('GC', { ...conf('pods'), 'cni.dev/valid-attachments': [] });
    expect(gc.stderr).toBe('');
    expect(gc.exitCode).toBe(0);
    expect(records()).toEqual([]);
    expect(ipamLeases()).toHaveLength(0);
    expect(existsSync(join(dir, 'pods', 'ipam', NET))).toBe(true);
  } finally {
    writeLease(dir, { network: NET, subnet: parseCIDR('198.18.128.0/17')!, hostSubnet: parseCIDR('198.18.130.0/24')!, vni: 77, mtu: 1450, bridge: 'ovlbr.77', host: 'h1' });
  }
});

test('an unreadable attachment record (it may be another config\'s) stops the address GC, reported naming it; once it is gone, GC collects', async () => {
  const p3 = ns.names[3]!; // its attachment was DELed: no eth0 left
  expect((await cni('ADD', conf('pods'), 'gone', p3)).exitCode).toBe(0);
  const bad = join(dir, 'pods', 'attachments', NET, 'mystery:eth0');
  writeFileSync(bad, 'not json', { mode: 0o600 });
  const gc = await cni('GC', { ...conf('pods'), 'cni.dev/valid-attachments': [] });
  expect(gc.exitCode).not.toBe(0);
  expect(gc.stdout).toContain(`bridge GC: skipped, unreadable attachment records: ${bad}`);
  expect(ipamLeases()).toHaveLength(1);
  expect(records().sort()).toEqual(['gone:eth0', 'mystery:eth0']);
  rmSync(bad);
  const again = await cni('GC', { ...conf('pods'), 'cni.dev/valid-attachments': [] });
  expect(again.exitCode).toBe(0);
  expect(ipamLeases()).toHaveLength(0);
  expect(records()).toEqual([]);
});
