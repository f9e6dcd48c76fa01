// tuning chained after a real bridge ADD, through the built binary: kernel state after ADD for every
// key, CHECK pass / tamper / fail, DEL restoring the originals, DEL twice and without a netns, and a
// failed ADD leaving nothing behind.
import { execa } from 'execa';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_VERSIONS } from '../support/cni';
import { linkState, procSys, TuningLab } from './tuning-harness';

jest.setTimeout(120000);

let t: TuningLab;
afterEach(async () => {
  await t?.dispose();
});

const MAC = 'c2:11:22:33:44:55';
const SYSCTLS = {
  'net.ipv4.conf.IFNAME.rp_filter': '2',
  'net.core.somaxconn': '512',
  'net/ipv4/ip_unprivileged_port_start': '80',
  'net.ipv4.tcp_rmem': '4096 87380 6291456',
};
const ALL_KEYS = { mac: MAC, mtu: 1400, promisc: true, allmulti: true, txQLen: 500, sysctl: SYSCTLS };

const ip = (ns: string, ...args: string[]) => execa('ip', ['-n', ns, ...args]);

describe('tuning ADD after bridge', () => {
  test('every key reaches the kernel in the pod; the result is prevResult with eth0 MAC updated; originals saved', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    const hostSomaxconn = await procSys(t.host, 'net/core/somaxconn');
    const r = await t.call('ADD', t.conf(ALL_KEYS));
    expect(r.stdout).toContain('"cniVersion"');
    expect(r.exitCode).toBe(0);

    expect(await linkState(t.pod)).toEqual({ address: MAC, mtu: 1400, txqlen: 500, promisc: true, allmulti: true });
    expect(await procSys(t.pod, 'net/ipv4/conf/eth0/rp_filter')).toBe('2');
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe('512');
    expect(await procSys(t.pod, 'net/ipv4/ip_unprivileged_port_start')).toBe('80');
    expect((await procSys(t.pod, 'net/ipv4/tcp_rmem')).split(/\s+/)).toEqual(['4096', '87380', '6291456']);
    expect(await procSys(t.host, 'net/core/somaxconn')).toBe(hostSomaxconn); // only the pod's netns

    const want = structuredClone(t.prev);
    want.interfaces[2].mac = MAC;
    expect(r.json).toEqual(want);

    expect(t.savedFiles()).toEqual([`${t.containerID}_eth0.json`]);
    expect(readFileSync(join(t.stateDir, `${t.containerID}_eth0.json`), 'utf8')).toBe(
      `{\n "mac": "${before.address}",\n "promisc": false,\n "mtu": 1500,\n "allmulti": false,\n "txQLen": ${before.txqlen}\n}`,
    );
  });

  test.each(ALL_VERSIONS.filter((v) => v >= '0.3.0'))('result in the config version %s: prevResult with the new MAC', async (v) => {
    t = await TuningLab.create(v);
    const r = await t.call('ADD', t.conf({ mac: 'C2-11-22-33-44-66' }));
    expect(r.exitCode).toBe(0);
    const want = structuredClone(t.prev);
    want.interfaces[2].mac = 'c2:11:22:33:44:66'; // printed normalised (the reference echoes the config's spelling)
    expect(r.json).toEqual(want);
    expect((await linkState(t.pod)).address).toBe('c2:11:22:33:44:66');
  });

  test('sysctls only: no link change and no saved file; runtimeConfig.mac and args.cni keys apply', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    expect((await t.call('ADD', t.conf({ sysctl: { 'net.core.somaxconn': '256' } }))).exitCode).toBe(0);
    expect(await linkState(t.pod)).toEqual(before);
    expect(t.savedFiles()).toEqual([]);

    const r = await t.call('ADD', t.conf({ mac: 'c2:00:00:00:00:01', runtimeConfig: { mac: 'c2:00:00:00:00:02' }, args: { cni: { mtu: 1300, allmulti: true, sysctl: { 'net.core.somaxconn': '300' } } } }));
    expect(r.exitCode).toBe(0);
    expect(await linkState(t.pod)).toEqual({ ...before, address: 'c2:00:00:00:00:02', mtu: 1300, allmulti: true });
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe('300');
  });

  test('without prevResult ADD fails and changes nothing (chained only)', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    const { prevResult: _, ...conf } = t.conf({ mtu: 1400, sysctl: { 'net.core.somaxconn': '512' } });
    const somaxconn = await procSys(t.pod, 'net/core/somaxconn');
    const r = await t.call('ADD', conf);
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toBe('Required prevResult missing');
    expect(await linkState(t.pod)).toEqual(before);
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe(somaxconn);
  });

  test('bad input is a CNI error naming the field and value, before anything changes', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    const somaxconn = { 'net.core.somaxconn': '999' }; // valid, and must not be written when another key is bad
    for (const [extra, msg] of [
      [{ sysctl: { ...somaxconn, 'kernel.hostname': 'x' } }, 'field "sysctl" = "kernel.hostname"'],
      [{ sysctl: { ...somaxconn, 'net/../kernel/hostname': 'x' } }, 'field "sysctl" = "net/../kernel/hostname"'],
      [{ sysctl: somaxconn, mtu: 'big' }, 'field "mtu" = "big"'],
      [{ sysctl: somaxconn, mac: 'c2:11' }, 'field "mac" = "c2:11"'],
    ] as const) {
      const r = await t.call('ADD', t.conf(extra));
      expect([r.exitCode, r.json.code]).toEqual([1, 7]);
      expect(r.json.msg).toContain(msg);
    }
    const dup = await t.call('ADD', JSON.stringify(t.conf({ mtu: 1400 })).replace('"mtu":1400', '"sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}'));
    expect([dup.exitCode, dup.json.code, dup.json.msg]).toEqual([1, 7, 'invalid config: field "sysctl" = "net.core.somaxconn": duplicated sysctl keys are not allowed']);
    expect(await procSys(t.pod, 'net/core/somaxconn')).not.toBe('999');
    expect(await linkState(t.pod)).toEqual(before);
  });

  test('a failed ADD takes back its sysctls, its link changes and its saved file', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    const somaxconn = await procSys(t.pod, 'net/core/somaxconn');
    // MAC, promisc and allmulti are applied before the MTU, which a veth refuses above 65535.
    const r = await t.call('ADD', t.conf({ sysctl: { 'net.core.somaxconn': '777' }, mac: MAC, promisc: true, allmulti: true, mtu: 70000 }));
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toMatch(/^setting link eth0 mtu 70000: /);
    expect(await linkState(t.pod)).toEqual(before);
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe(somaxconn);
    expect(t.savedFiles()).toEqual([]);
  });

  test('a sysctl the kernel refuses fails ADD and restores the sysctls written before it', async () => {
    t = await TuningLab.create();
    const somaxconn = await procSys(t.pod, 'net/core/somaxconn');
    const r = await t.call('ADD', t.conf({ sysctl: { 'net.core.somaxconn': '778', 'net.ipv4.conf.IFNAME.no_such_key': '1' } }));
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toContain('net/ipv4/conf/eth0/no_such_key');
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe(somaxconn);
  });

  test('the allowlist file /etc/cni/tuning/allowlist.conf limits the keys (patterns against the key as written)', async () => {
    t = await TuningLab.create();
    const allow = '^net\\.ipv4\\.conf\\.IFNAME\\.rp_filter$\n\n^net\\.core\\.somaxconn$\n';
    const ok = await t.addWithAllowlist(allow, t.conf({ sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '1', 'net.core.somaxconn': '600' } }));
    expect(ok.stderr).toBe('');
    expect(ok.exitCode).toBe(0);
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe('600');
    const bad = await t.addWithAllowlist(allow, t.conf({ sysctl: { 'net.core.somaxconn': '601', 'net.ipv4.conf.eth0.rp_filter': '1' } }));
    expect([bad.exitCode, bad.json.code]).toEqual([1, 7]);
    expect(bad.json.msg).toContain('field "sysctl" = "net.ipv4.conf.eth0.rp_filter": not allowed by /etc/cni/tuning/allowlist.conf');
    expect(await procSys(t.pod, 'net/core/somaxconn')).toBe('600');
  });
});

describe('tuning CHECK', () => {
  test('passes after ADD; fails naming the value after each tamper; passes again once restored', async () => {
    t = await TuningLab.create();
    const conf = t.conf(ALL_KEYS);
    const add = await t.call('ADD', conf);
    expect(add.exitCode).toBe(0);
    const check = () => t.call('CHECK', { ...conf, prevResult: add.json });
    expect((await check()).stdout).toBe('');

    const tampers: Array<[string[], string, string[]]> = [
      [['link', 'set', 'eth0', 'mtu', '1300'], 'Error: Tuning configured MTU of eth0 is 1400, current value is 1300', ['link', 'set', 'eth0', 'mtu', '1400']],
      [['link', 'set', 'eth0', 'address', 'c2:11:22:33:44:99'], `Error: Tuning configured Ethernet of eth0 is ${MAC}, current value is c2:11:22:33:44:99`, ['link', 'set', 'eth0', 'address', MAC]],
      [['link', 'set', 'eth0', 'promisc', 'off'], 'Error: Tuning link eth0 configured promisc is true, current value is 0', ['link', 'set', 'eth0', 'promisc', 'on']],
      [['link', 'set', 'eth0', 'allmulticast', 'off'], 'Error: Tuning configured all-multicast mode of eth0 is true, current value is false', ['link', 'set', 'eth0', 'allmulticast', 'on']],
      [['link', 'set', 'eth0', 'txqueuelen', '10'], 'Error: Tuning configured Transmit Queue Length of eth0 is 500, current value is 10', ['link', 'set', 'eth0', 'txqueuelen', '500']],
    ];
    for (const [tamper, msg, undo] of tampers) {
      await ip(t.pod, ...tamper);
      const r = await check();
      expect([r.exitCode, r.json?.msg]).toEqual([1, msg]);
      await ip(t.pod, ...undo);
      expect((await check()).stdout).toBe('');
    }
    await execa('ip', ['netns', 'exec', t.pod, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/conf/eth0/rp_filter']);
    const r = await check();
    expect(r.json?.msg).toBe('Error: Tuning configured value of /proc/sys/net/ipv4/conf/eth0/rp_filter is 2, current value is 0');
  });

  test('promisc off in the config fails CHECK on a promiscuous link (both directions, as the reference)', async () => {
    t = await TuningLab.create();
    const conf = t.conf({ mtu: 1450 });
    expect((await t.call('ADD', conf)).exitCode).toBe(0);
    expect((await t.call('CHECK', conf)).stdout).toBe('');
    await ip(t.pod, 'link', 'set', 'eth0', 'promisc', 'on');
    expect((await t.call('CHECK', conf)).json.msg).toBe('Error: Tuning link eth0 configured promisc is false, current value is 1');
  });

  test('CHECK needs prevResult and the interface', async () => {
    t = await TuningLab.create();
    const conf = t.conf({ mtu: 1450 });
    expect((await t.call('ADD', conf)).exitCode).toBe(0);
    const { prevResult: _, ...noPrev } = conf;
    expect((await t.call('CHECK', noPrev)).json.msg).toBe('Required prevResult missing');
    expect((await t.call('CHECK', conf, { ifname: 'eth9' })).json.msg).toBe('Cannot find container link eth9');
  });
});

describe('tuning DEL', () => {
  test('restores MAC, MTU, promisc, allmulti and txqueuelen; removes the saved file; a second DEL succeeds', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    const conf = t.conf(ALL_KEYS);
    expect((await t.call('ADD', conf)).exitCode).toBe(0);
    expect(await linkState(t.pod)).not.toEqual(before);
    const d1 = await t.call('DEL', conf);
    expect([d1.exitCode, d1.stdout, d1.stderr]).toEqual([0, '', '']);
    expect(await linkState(t.pod)).toEqual(before);
    expect(t.savedFiles()).toEqual([]);
    const d2 = await t.call('DEL', conf);
    expect([d2.exitCode, d2.stdout]).toEqual([0, '']);
    expect(await linkState(t.pod)).toEqual(before);
  });

  test('allmulti false and promisc restore to what the link had (on), not to off', async () => {
    t = await TuningLab.create();
    await ip(t.pod, 'link', 'set', 'eth0', 'allmulticast', 'on', 'promisc', 'on');
    const before = await linkState(t.pod);
    const conf = t.conf({ allmulti: false, promisc: true });
    expect((await t.call('ADD', conf)).exitCode).toBe(0);
    expect(await linkState(t.pod)).toEqual({ ...before, allmulti: false });
    expect((await t.call('DEL', conf)).exitCode).toBe(0);
    expect(await linkState(t.pod)).toEqual(before);
  });

  test('without CNI_NETNS: succeeds and drops the saved file (nothing left to restore)', async () => {
    t = await TuningLab.create();
    const conf = t.conf({ mtu: 1400 });
    expect((await t.call('ADD', conf)).exitCode).toBe(0);
    expect(t.savedFiles()).toHaveLength(1);
    const r = await t.call('DEL', conf, { netns: '' });
    expect([r.exitCode, r.stdout]).toEqual([0, '']);
    expect(t.savedFiles()).toEqual([]);
  });

  test('after the pod netns is gone, and when the interface is gone: succeeds, file dropped', async () => {
    t = await TuningLab.create();
    const conf = t.conf({ mtu: 1400 });
    expect((await t.call('ADD', conf)).exitCode).toBe(0);
    await ip(t.pod, 'link', 'del', 'eth0');
    expect((await t.call('DEL', conf)).exitCode).toBe(0);
    expect(t.savedFiles()).toEqual([]);

    expect((await t.call('ADD', conf, { ifname: 'lo' })).exitCode).toBe(0);
    const pod = t.pod;
    await execa('ip', ['netns', 'del', pod]);
    const r = await t.call('DEL', conf, { ifname: 'lo' });
    expect([r.exitCode, r.stdout]).toEqual([0, '']);
    expect(t.savedFiles()).toEqual([]);
  });

  test('a symlink in place of the saved file is neither followed nor fatal: DEL succeeds and leaves the target alone', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    const target = join(t.stateDir, 'target');
    writeFileSync(target, '{"mtu": 1280}');
    symlinkSync(target, join(t.stateDir, `${t.containerID}_eth0.json`));
    const r = await t.call('DEL', t.conf({ mtu: 1400 }));
    expect([r.exitCode, r.stdout]).toEqual([0, '']);
    expect(r.stderr).toContain('nothing restored');
    expect(await linkState(t.pod)).toEqual(before);
    expect(readFileSync(target, 'utf8')).toBe('{"mtu": 1280}');
  });

  test('DEL with a config whose keys are not valid for ADD still restores (only dataDir matters)', async () => {
    t = await TuningLab.create();
    const before = await linkState(t.pod);
    expect((await t.call('ADD', t.conf({ mtu: 1400 }))).exitCode).toBe(0);
    const r = await t.call('DEL', t.conf({ mtu: 1400, mac: 'not-a-mac', sysctl: { 'kernel.x': '1' } }));
    expect([r.exitCode, r.stdout]).toEqual([0, '']);
    expect(await linkState(t.pod)).toEqual(before);
  });
});
