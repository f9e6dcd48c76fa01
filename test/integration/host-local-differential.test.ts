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
});
