// Differential: ours against the Go reference /usr/lib/cni/host-local (v1.1.1: spec 0.1.0-1.0.0, no
// GC/STATUS). Same config and the same ADD/DEL sequence on separate stores give the same results and
// the same store files byte for byte; each releases the other's leases; ours continues its round robin.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_VERSIONS, REFERENCE_DIR, binDir, runCni, withNetns, type RunResult } from '../support/cni';

const REF = join(REFERENCE_DIR, 'host-local');
const VERSIONS = ALL_VERSIONS.filter((v) => v !== '1.1.0');
const haveRef = existsSync(REF);
const maybe = haveRef ? describe : describe.skip;

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});
const newDataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'hl-diff-'));
  dirs.push(d);
  return d;
};

type Who = 'ours' | 'ref';
const bin = (w: Who) => (w === 'ours' ? join(binDir(), 'host-local') : REF);

function call(host: string, who: Who, command: string, config: unknown, id: string, extra: Record<string, string> = {}): Promise<RunResult> {
  return runCni('host-local', {
    command,
    config,
    binary: bin(who),
    hostNetns: host,
    env: { CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/none', CNI_PATH: REFERENCE_DIR, ...extra },
  });
}

/** The Go library (1.1.1) prints "dns":{} even for 1.0.0 results; an empty dns says the same thing. */
function normal(r: RunResult): unknown {
  const j = r.json ? { ...r.json } : r.stdout;
  if (j && typeof j === 'object' && j.dns && Object.keys(j.dns).length === 0) delete j.dns;
  // Errors: the reference 1.1.1's skel prints no cniVersion in them (newer ones do, as we do).
  if (j && typeof j === 'object' && 'code' in j) delete j.cniVersion;
  return { exitCode: r.exitCode, out: j };
}

/** Every file of the reference's format (our .cnikit index aside), with its bytes. */
function files(dataDir: string): Record<string, string> {
  const dir = join(dataDir, 'dnet');
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) if (!f.startsWith('.')) out[f] = readFileSync(join(dir, f), 'latin1');
  return out;
}

const ipamOf = (dataDir: string) => ({
  type: 'host-local',
  dataDir,
  ranges: [[{ subnet: '198.18.0.0/29' }, { subnet: '198.18.1.0/30' }], [{ subnet: 'fd00:18::/125' }]],
  routes: [{ dst: '0.0.0.0/0' }, { dst: 'fd00::/8', gw: 'fd00:18::1' }],
});

maybe('differential against the reference host-local', () => {
  test.each(VERSIONS)('spec %s: same results and byte-identical stores for one ADD/DEL sequence', async (v) => {
    await withNetns(['hl-diff'], async ([host]) => {
      const d: Record<Who, string> = { ours: newDataDir(), ref: newDataDir() };
      const conf = (w: Who, extra: Record<string, unknown> = {}) => ({ cniVersion: v, name: 'dnet', ipam: ipamOf(d[w]), ...extra });
      // 0.1.0/0.2.0 allow one range set per family: keep the IPv4 set with two ranges only there.
      const one = !v.startsWith('0.1') && !v.startsWith('0.2');
      const steps: Array<[string, string, Record<string, unknown>?, Record<string, string>?]> = [
        ['ADD', 'a'],
        ['ADD', 'b'],
        ['ADD', 'a'], // duplicate
        ['DEL', 'a'],
        ['ADD', 'c'],
        ['ADD', 'd', { args: { cni: { ips: ['198.18.1.2'] } } }],
        ['ADD', 'e', undefined, { CNI_ARGS: 'IP=198.18.0.3' }], // taken
        ['ADD', 'f'],
        ['ADD', 'g'],
        ['ADD', 'h'],
        ['ADD', 'i'], // exhausted
        ['DEL', 'nobody'],
        ['DEL', 'c'],
        ['ADD', 'j'],
        ['DEL', 'b'],
      ];
      for (const [cmd, id, extra, env] of steps) {
        const mk = (w: Who) => {
          const c = conf(w, extra);
          if (!one) (c.ipam as { ranges: unknown[] }).ranges = [c.ipam.ranges[0]];
          return c;
        };
        const ours = await call(host!, 'ours', cmd, mk('ours'), id, env);
        const ref = await call(host!, 'ref', cmd, mk('ref'), id, env);
        expect([cmd, id, normal(ours)]).toEqual([cmd, id, normal(ref)]);
        expect(files(d.ours)).toEqual(files(d.ref));
      }
    });
  });

  test.each(VERSIONS)('spec %s: each releases the other’s leases and ours continues the reference round robin', async (v) => {
    await withNetns(['hl-diff'], async ([host]) => {
      const dataDir = newDataDir();
      const conf = { cniVersion: v, name: 'dnet', ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '198.18.0.0/28' }]] } };
      const addr = (r: RunResult) => (r.json.ips ? r.json.ips[0].address : r.json.ip4.ip);
      expect(addr(await call(host!, 'ref', 'ADD', conf, 'r1'))).toBe('198.18.0.2/28');
      expect(addr(await call(host!, 'ours', 'ADD', conf, 'o1'))).toBe('198.18.0.3/28');
      expect(addr(await call(host!, 'ref', 'ADD', conf, 'r2'))).toBe('198.18.0.4/28');
      expect(addr(await call(host!, 'ours', 'ADD', conf, 'o2'))).toBe('198.18.0.5/28');
      // Duplicate detection sees the other plugin's lease.
      expect((await call(host!, 'ours', 'ADD', conf, 'r1')).json.msg).toContain('198.18.0.2 has been allocated to r1, duplicate allocation is not allowed');
      expect((await call(host!, 'ref', 'ADD', conf, 'o1')).json.msg).toContain('198.18.0.3 has been allocated to o1');
      // Cross release.
      expect((await call(host!, 'ours', 'DEL', conf, 'r1')).exitCode).toBe(0);
      expect((await call(host!, 'ref', 'DEL', conf, 'o1')).exitCode).toBe(0);
      if (v >= '0.4.0') {
        expect((await call(host!, 'ours', 'CHECK', conf, 'r2')).exitCode).toBe(0);
        expect((await call(host!, 'ours', 'CHECK', conf, 'o1')).exitCode).toBe(1);
      }
      expect(Object.keys(files(dataDir)).filter((f) => f.startsWith('198'))).toEqual(['198.18.0.4', '198.18.0.5']);
      // The reference re-adds behind our back: our index must see it.
      await call(host!, 'ref', 'ADD', conf, 'r3'); // .6
      expect((await call(host!, 'ours', 'DEL', conf, 'r3')).exitCode).toBe(0);
      expect(Object.keys(files(dataDir)).filter((f) => f.startsWith('198'))).toEqual(['198.18.0.4', '198.18.0.5']);
      expect(addr(await call(host!, 'ours', 'ADD', conf, 'o3'))).toBe('198.18.0.7/28');
      for (const id of ['r2', 'o2', 'o3']) await call(host!, id === 'r2' ? 'ours' : 'ref', 'DEL', conf, id);
      expect(Object.keys(files(dataDir)).filter((f) => f.startsWith('198'))).toEqual([]);
    });
  });

  test('both honour legacy ID-only lease files on DEL', async () => {
    await withNetns(['hl-diff'], async ([host]) => {
      for (const who of ['ours', 'ref'] as Who[]) {
        const dataDir = newDataDir();
        const conf = { cniVersion: '1.0.0', name: 'dnet', ipam: { type: 'host-local', dataDir, subnet: '198.18.0.0/24' } };
        await call(host!, who, 'ADD', conf, 'seed');
        require('node:fs').writeFileSync(join(dataDir, 'dnet', '198.18.0.9'), 'legacy\n', { mode: 0o600 });
        expect((await call(host!, who, 'DEL', conf, 'legacy')).exitCode).toBe(0);
        expect(existsSync(join(dataDir, 'dnet', '198.18.0.9'))).toBe(false);
      }
    });
  });

  // Edge configs, run through both on fresh stores: where the reference is right, both accept (with
  // the same result) or both refuse (ours with code 7); where ours refuses on purpose, the title says so.
  type Ranges = Array<Array<Record<string, string>>>;
  const edge = (dataDir: string, ranges: Ranges) => ({ cniVersion: '1.0.0', name: 'dnet', ipam: { type: 'host-local', dataDir, ranges } });

  test.each<[string, Ranges]>([
    ['rangeStart = rangeEnd', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.7', rangeEnd: '198.18.0.7' }]]],
    ['rangeEnd = broadcast-1 (the IPv4 default)', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.250', rangeEnd: '198.18.0.254' }]]],
    ['IPv6 rangeEnd = the last address (no broadcast)', [[{ subnet: 'fd00:18::/126', rangeStart: 'fd00:18::3', rangeEnd: 'fd00:18::3' }]]],
    ['gateway in the subnet, outside the range', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.10', rangeEnd: '198.18.0.20', gateway: '198.18.0.254' }]]],
    ['gateway = rangeStart is skipped', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.10', rangeEnd: '198.18.0.20', gateway: '198.18.0.10' }]]],
    ['two ranges sharing a subnet without sharing addresses', [[{ subnet: '198.18.0.0/24', rangeEnd: '198.18.0.100' }, { subnet: '198.18.0.0/24', rangeStart: '198.18.0.101' }]]],
    ['top of the IPv4 space: 255.255.255.252/30', [[{ subnet: '255.255.255.252/30', gateway: '255.255.255.254' }]]],
  ])('both accept, with the same result: %s', async (_title, ranges) => {
    await withNetns(['hl-diff'], async ([host]) => {
      const ours = await call(host!, 'ours', 'ADD', edge(newDataDir(), ranges), 'e1');
      const ref = await call(host!, 'ref', 'ADD', edge(newDataDir(), ranges), 'e1');
      expect(ref.exitCode).toBe(0);
      expect(normal(ours)).toEqual(normal(ref));
    });
  });

  test.each<[string, Ranges]>([
    ['issue 10: rangeStart after rangeEnd (.20-.10)', [[{ subnet: '198.18.12.0/24', rangeStart: '198.18.12.20', rangeEnd: '198.18.12.10' }]]],
    ['rangeStart outside the subnet', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.1.5' }]]],
    ['rangeEnd outside the subnet', [[{ subnet: '198.18.0.0/24', rangeEnd: '198.18.1.5' }]]],
    ['rangeStart of the other family', [[{ subnet: '198.18.0.0/24', rangeStart: 'fd00::5' }]]],
    ['IPv6 rangeStart after rangeEnd', [[{ subnet: 'fd00:18::/64', rangeStart: 'fd00:18::20', rangeEnd: 'fd00:18::10' }]]],
    ['a /31 is too small', [[{ subnet: '198.18.0.0/31' }]]],
    ['host bits set', [[{ subnet: '198.18.0.1/24' }]]],
    ['overlapping ranges in a set', [[{ subnet: '198.18.0.0/24' }, { subnet: '198.18.0.0/25' }]]],
    ['overlapping range sets', [[{ subnet: '198.18.0.0/24' }], [{ subnet: '198.18.0.0/26' }]]],
    ['mixed families in a set', [[{ subnet: '198.18.0.0/24' }, { subnet: 'fd00:18::/64' }]]],
  ])('both refuse, ours with code 7: %s', async (_title, ranges) => {
    await withNetns(['hl-diff'], async ([host]) => {
      const ref = await call(host!, 'ref', 'ADD', edge(newDataDir(), ranges), 'e1');
      const ours = await call(host!, 'ours', 'ADD', edge(newDataDir(), ranges), 'e1');
      expect(ref.exitCode).toBe(1);
      expect([ours.exitCode, ours.json.code]).toEqual([1, 7]);
      expect(ours.json.msg).toMatch(/^invalid config: field "ipam\.ranges\[\d\](\[\d\])?(\.\w+)?" = /);
    });
  });

  test.each<[string, Ranges, string, string]>([
    ['the network address as rangeStart (the reference hands it out)', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.0' }]], 'rangeStart', '198.18.0.0/24'],
    ['the broadcast address as rangeStart (the reference hands it out)', [[{ subnet: '198.18.0.0/24', rangeStart: '198.18.0.255' }]], 'rangeStart', '198.18.0.255/24'],
    ['the broadcast address as rangeEnd', [[{ subnet: '198.18.0.0/24', rangeEnd: '198.18.0.255' }]], 'rangeEnd', '198.18.0.2/24'],
    ['the IPv6 network address as rangeStart (the reference hands it out)', [[{ subnet: 'fd00:18::/64', rangeStart: 'fd00:18::' }]], 'rangeStart', 'fd00:18::/64'],
    ['a gateway outside the subnet (newer references refuse it too)', [[{ subnet: '198.18.0.0/24', gateway: '198.18.1.1' }]], 'gateway', '198.18.0.1/24'],
    ['a gateway of the other family', [[{ subnet: '198.18.0.0/24', gateway: 'fd00::1' }]], 'gateway', '198.18.0.1/24'],
    ['issue 10: broadcast rangeStart and gateway of 255.255.255.252/30 (the reference returns the address "<nil>")', [[{ subnet: '255.255.255.252/30', rangeStart: '255.255.255.255', gateway: '255.255.255.255' }]], 'rangeStart', '<nil>'],
  ])('ours is stricter on purpose, the reference accepts: %s', async (_title, ranges, field, refAddress) => {
    await withNetns(['hl-diff'], async ([host]) => {
      const ref = await call(host!, 'ref', 'ADD', edge(newDataDir(), ranges), 'e1');
      const dataDir = newDataDir();
      const ours = await call(host!, 'ours', 'ADD', edge(dataDir, ranges), 'e1');
      expect(ref.exitCode).toBe(0);
      expect(ref.json.ips[0].address).toBe(refAddress);
      expect([ours.exitCode, ours.json.code]).toEqual([1, 7]);
      expect(ours.json.msg).toContain(`invalid config: field "ipam.ranges[0][0].${field}" = ${JSON.stringify(ranges[0]![0]![field])}: `);
      expect(ours.json.msg).not.toMatch(/null|undefined|is not an object|evaluating/);
      expect(existsSync(join(dataDir, 'dnet'))).toBe(false); // refused before the store is touched
    });
  });

  test('issue 10: STATUS and ADD agree on the inverted range .20-.10 (was: STATUS code 50 while ADD handed out .20)', async () => {
    await withNetns(['hl-diff'], async ([host]) => {
      const ranges = [[{ subnet: '198.18.12.0/24', rangeStart: '198.18.12.20', rangeEnd: '198.18.12.10' }]];
      const conf = { ...edge(newDataDir(), ranges), cniVersion: '1.1.0' };
      const add = await call(host!, 'ours', 'ADD', conf, 'e1');
      const status = await call(host!, 'ours', 'STATUS', conf, 'e1');
      expect([add.exitCode, add.json.code]).toEqual([1, 7]);
      expect([status.exitCode, status.json.code, status.json.msg]).toEqual([1, 7, add.json.msg]);
    });
  });
});
