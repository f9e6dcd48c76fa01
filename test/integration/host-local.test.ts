// host-local through the built binary, inside scratch netns (prefix hl-), for every spec version:
// results per version, the store's bytes, CHECK/DEL/GC/STATUS, errors, lock bound, concurrency and
// kill -9. Stale-lease reclaim and the store's safety: host-local-safety.test.ts.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_VERSIONS, binDir, runCni, suiteNetns, type RunResult } from '../support/cni';

const atLeast = (v: string, m: string) => v.localeCompare(m, undefined, { numeric: true }) >= 0;

let dataDir: string;
let host: string; // scratch "host" netns the plugin runs in
let sandbox: string; // CNI_NETNS path handed to ADD

const scratch = suiteNetns(['hl-host', 'hl-ctr']);
beforeAll(() => {
  host = scratch.names[0]!;
  sandbox = `/var/run/netns/${scratch.names[1]}`;
});
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'hl-int-'));
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

function conf(ipam: Record<string, unknown>, v = '1.1.0', extra: Record<string, unknown> = {}) {
  return { cniVersion: v, name: 'hlnet', ipam: { type: 'host-local', dataDir, ...ipam }, ...extra };
}

interface Call {
  id?: string;
  ifname?: string;
  args?: string;
  netns?: string;
  binary?: string;
  inHost?: boolean;
}

function hl(command: string, config: unknown, c: Call = {}): Promise<RunResult> {
  return runCni('host-local', {
    command,
    config,
    hostNetns: c.inHost === false ? undefined : host,
    binary: c.binary,
    env: {
      CNI_CONTAINERID: c.id ?? 'ctr1',
      CNI_IFNAME: c.ifname ?? 'eth0',
      CNI_NETNS: c.netns ?? sandbox,
      CNI_PATH: binDir(),
      CNI_ARGS: c.args,
    },
  });
}

const store = () => join(dataDir, 'hlnet');
const leases = () =>
  readdirSync(store())
    .filter((f) => f !== 'lock' && !f.startsWith('.') && !f.startsWith('last_reserved_ip'))
    .sort();

const dual = { ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: 'fd00:18::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] };

describe.each(ALL_VERSIONS)('spec %s', (v) => {
  test('ADD prints the result in the config version; DEL releases; DEL again is fine', async () => {
    const add = await hl('ADD', conf(dual, v));
    expect(add.stderr).toBe('');
    expect(add.exitCode).toBe(0);
    let expected: unknown;
    if (!atLeast(v, '0.3.0'))
      expected = {
        cniVersion: v,
        ip4: { ip: '198.18.0.2/24', gateway: '198.18.0.1', routes: [{ dst: '0.0.0.0/0' }] },
        ip6: { ip: 'fd00:18::2/64', gateway: 'fd00:18::1', routes: [{ dst: '::/0' }] },
        dns: {},
      };
    else {
      const ver = (f: string) => (atLeast(v, '1.0.0') ? {} : { version: f });
      expected = {
        cniVersion: v,
        ips: [
          { ...ver('4'), address: '198.18.0.2/24', gateway: '198.18.0.1' },
          { ...ver('6'), address: 'fd00:18::2/64', gateway: 'fd00:18::1' },
        ],
        routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
        ...(atLeast(v, '1.0.0') ? {} : { dns: {} }),
      };
    }
    expect(add.json).toEqual(expected);
    expect(add.json.interfaces).toBeUndefined(); // IPAM results carry no interfaces
    expect(leases()).toEqual(['198.18.0.2', 'fd00:18::2']);
    expect(readFileSync(join(store(), '198.18.0.2'), 'utf8')).toBe('ctr1\r\neth0');
    expect(readFileSync(join(store(), 'last_reserved_ip.1'), 'utf8')).toBe('fd00:18::2');

    if (atLeast(v, '0.4.0')) expect((await hl('CHECK', conf(dual, v))).exitCode).toBe(0);
    const del = await hl('DEL', conf(dual, v), { netns: '' }); // DEL needs no netns
    expect([del.exitCode, del.stdout]).toEqual([0, '']);
    expect(leases()).toEqual([]);
    expect((await hl('DEL', conf(dual, v))).exitCode).toBe(0);
    if (atLeast(v, '0.4.0')) {
      const chk = await hl('CHECK', conf(dual, v));
      expect(chk.exitCode).toBe(1);
      expect(chk.json.msg).toBe('host-local: Failed to find address added by container ctr1');
    }
  });
});

describe('ADD', () => {
  test('round robin continues after last_reserved_ip; a second ADD of the same attachment is refused', async () => {
    const c = conf({ ranges: [[{ subnet: '198.18.0.0/29' }]] });
    expect((await hl('ADD', c, { id: 'a' })).json.ips[0].address).toBe('198.18.0.2/29');
    expect((await hl('ADD', c, { id: 'b' })).json.ips[0].address).toBe('198.18.0.3/29');
    await hl('DEL', c, { id: 'a' });
    expect((await hl('ADD', c, { id: 'd' })).json.ips[0].address).toBe('198.18.0.4/29');
    const dup = await hl('ADD', c, { id: 'b' });
    expect(dup.exitCode).toBe(1);
    expect(dup.json.msg).toBe('failed to allocate for range 0: 198.18.0.3 has been allocated to b, duplicate allocation is not allowed');
    expect((await hl('ADD', c, { id: 'b', ifname: 'eth1' })).json.ips[0].address).toBe('198.18.0.5/29');
  });

  test('requested IPs from CNI_ARGS, args.cni.ips and runtimeConfig.ips', async () => {
    const c = conf(dual, '1.0.0', { args: { cni: { ips: ['fd00:18::99'] } } });
    const r = await hl('ADD', c, { args: 'IgnoreUnknown=1;K8S_POD_NAME=p;IP=198.18.0.42' });
    expect(r.json.ips.map((i: { address: string }) => i.address)).toEqual(['198.18.0.42/24', 'fd00:18::99/64']);
    const r2 = await hl('ADD', conf(dual, '1.0.0', { runtimeConfig: { ips: ['198.18.0.42/24'] } }), { id: 'other' });
    expect(r2.exitCode).toBe(1);
    expect(r2.json.msg).toBe('failed to allocate for range 0: requested IP address 198.18.0.42 is not available in range set 198.18.0.1-198.18.0.254');
    expect(leases()).toEqual(['198.18.0.42', 'fd00:18::99']); // nothing half-allocated for "other"
  });

  test('a failing ADD releases what it took in earlier range sets; unfulfilled requested IPs fail', async () => {
    const c = conf({ ranges: [[{ subnet: '198.18.0.0/24' }], [{ subnet: '198.18.1.0/30' }]] });
    await hl('ADD', c, { id: 'x' }); // takes the only address of set 1 (198.18.1.2)
    const r = await hl('ADD', c, { id: 'y' });
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toBe('failed to allocate for range 1: no IP addresses available in range set: 198.18.1.1-198.18.1.2');
    expect(leases()).toEqual(['198.18.0.2', '198.18.1.2']);
    const r2 = await hl('ADD', conf({ ranges: [[{ subnet: '198.18.0.0/24' }]] }, '1.0.0', { args: { cni: { ips: ['198.18.9.9'] } } }), { id: 'z' });
    expect(r2.json.msg).toBe('failed to allocate all requested IPs: 198.18.9.9');
    expect(leases()).toEqual(['198.18.0.2', '198.18.1.2']);
  });

  test('resolvConf becomes dns', async () => {
    const rc = join(dataDir, 'resolv.conf');
    writeFileSync(rc, '# c\nnameserver 198.18.0.53\nnameserver fd00::53\ndomain example.test\nsearch a.test b.test\noptions ndots:2 edns0\n');
    const r = await hl('ADD', conf({ subnet: '198.18.0.0/24', resolvConf: rc }, '1.0.0'));
    expect(r.json.dns).toEqual({ nameservers: ['198.18.0.53', 'fd00::53'], domain: 'example.test', search: ['a.test', 'b.test'], options: ['ndots:2', 'edns0'] });
  });
});

describe('errors are CNI error JSON naming field and value', () => {
  test.each([
    [{ subnet: '198.18.0.1/24' }, 7, 'field "ipam.subnet" = "198.18.0.1/24"'],
    [{ ranges: [[{ subnet: '198.18.0.0/31' }]] }, 7, 'Network 198.18.0.0/31 too small to allocate from'],
    [{ subnet: '198.18.0.0/24', dataDir: 'rel' }, 7, 'field "ipam.dataDir" = "rel"'],
    [{ ranges: [] }, 7, 'no IP ranges specified'],
  ])('%j', async (ipam, code, msg) => {
    const r = await hl('ADD', conf(ipam));
    expect(r.exitCode).toBe(1);
    expect(r.json.code).toBe(code);
    expect(r.json.msg).toContain(msg);
    expect(r.stderr).toBe('');
  });

  test('a network name that would climb out of dataDir is refused before touching a path', async () => {
    const r = await hl('ADD', { ...conf({ subnet: '198.18.0.0/24' }), name: '../evil' });
    expect(r.json.code).toBe(7);
    expect(existsSync(join(dataDir, '..', 'evil'))).toBe(false);
  });
});

describe('GC and STATUS (spec 1.1)', () => {
  test('GC keeps valid attachments (and ID-only legacy files whose ID is valid), lock and last_reserved_ip.*', async () => {
    const c = conf({ ranges: [[{ subnet: '198.18.0.0/24' }]] });
    for (const id of ['keep', 'drop1', 'drop2']) await hl('ADD', c, { id });
    writeFileSync(join(store(), '198.18.0.50'), 'keep', { mode: 0o600 });
    writeFileSync(join(store(), '198.18.0.51'), 'legacygone', { mode: 0o600 });
    const gc = await hl('GC', { ...c, 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] });
    expect([gc.exitCode, gc.stdout]).toEqual([0, '']);
    expect(leases()).toEqual(['198.18.0.2', '198.18.0.50']);
    expect(existsSync(join(store(), 'lock'))).toBe(true);
    expect(existsSync(join(store(), 'last_reserved_ip.0'))).toBe(true);
    // The index follows: DEL of the kept attachment still finds it, and the dropped ones are gone.
    await hl('DEL', c, { id: 'keep' });
    expect(leases()).toEqual(['198.18.0.50']);
    expect((await hl('GC', { ...c, 'cni.dev/attachments': [] })).exitCode).toBe(0); // older key
    expect(leases()).toEqual([]);
  });

  test('GC refuses a malformed attachment list (code 7)', async () => {
    const r = await hl('GC', { ...conf({ subnet: '198.18.0.0/24' }), 'cni.dev/valid-attachments': 'all' });
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('cni.dev/valid-attachments');
  });

  test('STATUS: success with room; 50 when a range set is full or the store is not writable', async () => {
    const c = conf({ ranges: [[{ subnet: '198.18.0.0/30' }]] });
    expect((await hl('STATUS', c)).exitCode).toBe(0);
    await hl('ADD', c);
    const full = await hl('STATUS', c);
    expect(full.json.code).toBe(50);
    expect(full.json.msg).toContain('no IP addresses available in range set 0: 198.18.0.1-198.18.0.2');
    const ro = await hl('STATUS', conf({ subnet: '198.18.0.0/24', dataDir: '/proc/hl-nope' }));
    expect(ro.json.code).toBe(50);
  });

  test('GC and STATUS need 1.1.0', async () => {
    const r = await hl('STATUS', conf({ subnet: '198.18.0.0/24' }, '1.0.0'));
    expect(r.json.code).toBe(1);
  });
});

describe('beyond the reference', () => {
  test('lock wait is bounded: code 11 when another holder keeps the lock past lockTimeoutMs', async () => {
    const c = conf({ subnet: '198.18.0.0/24', lockTimeoutMs: 300 });
    await hl('ADD', c, { id: 'first' }); // creates the store and its lock file
    const holder = execa('flock', [join(store(), 'lock'), 'sleep', '5'], { reject: false });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const r = await hl('ADD', c, { id: 'second' });
      expect(r.json.code).toBe(11);
      expect(r.json.msg).toBe(`timed out after 300 ms waiting for the lock ${join(store(), 'lock')}`);
      expect(Date.now() - t0).toBeLessThan(4000);
    } finally {
      holder.kill('SIGKILL');
      await holder;
    }
    expect((await hl('ADD', c, { id: 'second' })).exitCode).toBe(0);
  });

  test('64 parallel ADDs on one network get 64 distinct addresses, none fails', async () => {
    const c = conf({ ranges: [[{ subnet: '198.18.0.0/24' }]] });
    const rs = await Promise.all(Array.from({ length: 64 }, (_, i) => hl('ADD', c, { id: `p${i}` })));
    expect(rs.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    const addrs = rs.map((r) => r.json.ips[0].address);
    expect(new Set(addrs).size).toBe(64);
    expect(leases()).toHaveLength(64);
    // And every one is found again through the index.
    const dels = await Promise.all(Array.from({ length: 64 }, (_, i) => hl('DEL', c, { id: `p${i}` })));
    expect(dels.every((r) => r.exitCode === 0)).toBe(true);
    expect(leases()).toEqual([]);
  });

  test('a random ADD/DEL storm with kill -9 leaves a store that DEL and GC return to empty', async () => {
    const c = conf({ ranges: [[{ subnet: '198.18.0.0/26' }], [{ subnet: 'fd00:18::/120' }]] });
    const input = JSON.stringify(c);
    const ids = Array.from({ length: 12 }, (_, i) => `s${i}`);
    let seed = 42;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) % n;
    let killed = 0;
    for (let round = 0; round < 8; round++) {
      const procs = ids.map((id) =>
        // `ip netns exec` execs the plugin in place, so the kill below hits the plugin itself.
        execa('ip', ['netns', 'exec', host, join(binDir(), 'host-local')], {
          input,
          reject: false,
          extendEnv: false,
          env: { PATH: process.env.PATH, CNI_COMMAND: rnd(3) ? 'ADD' : 'DEL', CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: sandbox, CNI_PATH: binDir() },
        }),
      );
      await new Promise((r) => setTimeout(r, rnd(25)));
      for (const p of procs) if (rnd(2)) p.kill('SIGKILL');
      killed += (await Promise.all(procs)).filter((r) => r.signal === 'SIGKILL').length;
    }
    expect(killed).toBeGreaterThan(10); // the storm did interrupt plugins
    // DEL of every attachment, then GC with none valid, must leave no lease behind.
    for (const id of ids.slice(0, 6)) expect((await hl('DEL', c, { id })).exitCode).toBe(0);
    const gc = await hl('GC', { ...c, 'cni.dev/valid-attachments': ids.slice(6).map((id) => ({ containerID: id, ifname: 'eth0' })) }, {});
    expect(gc.exitCode).toBe(0);
    for (const id of ids.slice(6)) expect((await hl('DEL', c, { id })).exitCode).toBe(0);
    expect(leases()).toEqual([]);
    expect((await hl('ADD', c, { id: 'after' })).exitCode).toBe(0);
  });
});
