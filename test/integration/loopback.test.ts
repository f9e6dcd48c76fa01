// loopback plugin through the built binary, in scratch netns: lo up on ADD, down on DEL, CHECK.
import { execa } from 'execa';
import { ipj, Lab, sh, type CallOpts } from './bridge-harness';

jest.setTimeout(60000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

let lab: Lab;
afterEach(async () => {
  await lab?.dispose();
});

const conf = (v = '1.0.0') => ({ cniVersion: v, name: 'lo', type: 'loopback' });
const call = (cmd: string, c: unknown, o: CallOpts = {}) => lab.call(cmd, c, { plugin: 'loopback', ...o });
const lo = async (ns: string): Promise<Json> => (await ipj(ns, 'addr', 'show', 'lo'))[0];

test('ADD sets lo up and reports its addresses; CHECK passes, then fails once lo is down; DEL sets it down, twice and without netns', async () => {
  lab = await Lab.create(1);
  const [p1] = lab.pods as [string];
  await execa('ip', ['-n', p1, 'link', 'set', 'lo', 'down']);
  // CNI_IFNAME is ignored: loopback only ever touches lo.
  const add = await call('ADD', conf(), { ifname: 'eth7' });
  expect(add.exitCode).toBe(0);
  expect(add.json).toEqual({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: `/var/run/netns/${p1}` }],
    ips: [
      { interface: 0, address: '127.0.0.1/8' },
      { interface: 0, address: '::1/128' },
    ],
  });
  expect((await lo(p1)).flags).toContain('UP');
  expect((await execa('ip', ['netns', 'exec', p1, 'ping', '-c', '1', '-W', '1', '127.0.0.1'], { reject: false })).exitCode).toBe(0);
  expect(await ipj(p1, 'link', 'show')).toHaveLength(1); // nothing but lo

  const ok = await call('CHECK', { ...conf(), prevResult: add.json });
  expect([ok.exitCode, ok.stdout]).toEqual([0, '']);
  await execa('ip', ['-n', p1, 'link', 'set', 'lo', 'down']);
  const down = await call('CHECK', { ...conf(), prevResult: add.json });
  expect([down.json.code, down.json.msg]).toEqual([999, 'loopback interface is down']);
  await execa('ip', ['-n', p1, 'link', 'set', 'lo', 'up']);

  const del = await call('DEL', conf());
  expect([del.exitCode, del.stdout]).toEqual([0, '']);
  expect((await lo(p1)).flags).not.toContain('UP');
  expect((await call('DEL', conf())).exitCode).toBe(0);
  expect((await call('DEL', conf(), { pod: '' })).exitCode).toBe(0);
});

test('DEL succeeds when the netns is already gone; ADD and CHECK on a missing netns fail with its path', async () => {
  lab = await Lab.create(1);
  const gone = await lab.addPod();
  await execa('ip', ['netns', 'del', gone]);
  expect((await call('DEL', conf(), { pod: gone })).exitCode).toBe(0);
  const add = await call('ADD', conf(), { pod: gone });
  expect(add.exitCode).toBe(1);
  expect(add.json.msg).toContain(`/var/run/netns/${gone}`);
  expect((await call('CHECK', conf(), { pod: gone })).json.msg).toContain(`/var/run/netns/${gone}`);
});

test('chained after another plugin, ADD passes prevResult through (in the config version)', async () => {
  lab = await Lab.create(1);
  const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: `/var/run/netns/${lab.pods[0]}` }], ips: [{ interface: 0, address: '198.18.0.2/24', gateway: '198.18.0.1' }] };
  const add = await call('ADD', { ...conf(), prevResult: prev });
  expect(add.json).toEqual(prev);
  const v04 = await call('ADD', { ...conf('0.4.0'), prevResult: { ...prev, cniVersion: '0.4.0', ips: [{ version: '4', ...prev.ips[0] }] } });
  expect(v04.json).toEqual({ ...prev, cniVersion: '0.4.0', ips: [{ version: '4', ...prev.ips[0] }], dns: {} });
  const bad = await call('ADD', { ...conf(), prevResult: { ips: [{ address: 'nope' }] } });
  expect([bad.json.code, bad.json.msg]).toEqual([6, 'failed to parse prevResult: failed to parse result: ips[0].address must be an address with a prefix length, got "nope"']);
});

test('a non-loopback address on lo is an error naming it; an IPv6-less pod reports only 127.0.0.1/8', async () => {
  lab = await Lab.create(2);
  const [p1, p2] = lab.pods as [string, string];
  await execa('ip', ['-n', p1, 'addr', 'add', '198.18.0.9/32', 'dev', 'lo']);
  const r = await call('ADD', conf(), { pod: p1 });
  expect(r.json.msg).toBe('loopback interface found with non-loopback address "198.18.0.9"');
  await sh(p2, ['sysctl', '-w', 'net.ipv6.conf.lo.disable_ipv6=1']);
  const v4 = await call('ADD', conf(), { pod: p2 });
  expect(v4.json.ips).toEqual([{ interface: 0, address: '127.0.0.1/8' }]);
  const old = await call('ADD', conf('0.2.0'), { pod: p2 });
  expect(old.json).toEqual({ cniVersion: '0.2.0', ip4: { ip: '127.0.0.1/8' }, dns: {} });
});

test('GC and STATUS (1.1.0) succeed: nothing is allocated', async () => {
  lab = await Lab.create(1);
  expect((await call('GC', { ...conf('1.1.0'), 'cni.dev/valid-attachments': [] }, { pod: '' })).exitCode).toBe(0);
  expect((await call('STATUS', conf('1.1.0'), { pod: '' })).exitCode).toBe(0);
});
