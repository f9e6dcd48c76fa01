// A loopback + ptp list through both list runners — the real libcni (Debian 1.1.2, what containerd's
// go-cni drives) and our cnitool — with CNI_PATH holding our plugins only (no reference plugin is
// reachable), in a scratch host netns with two pods.
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, withNetns } from '../support/cni';
import { drivers, type Driver } from '../go/drivers';
import { ping } from './bridge-harness';

jest.setTimeout(120000);

interface Ctx {
  dir: string; // NETCONFPATH
  cache: string;
  ipam: string;
  host: string;
  pods: string[];
}

async function withCtx(fn: (c: Ctx) => Promise<void>): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'ptp-lc-'));
  try {
    await withNetns(['ptl-h', 'ptl-p', 'ptl-p'], async ([host, ...pods]) => {
      const c: Ctx = { dir: join(base, 'net.d'), cache: join(base, 'cache'), ipam: join(base, 'ipam'), host: host!, pods };
      mkdirSync(c.dir);
      await fn(c);
    });
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

async function run(d: Driver, c: Ctx, cmd: string, net: string, pod: string) {
  const r = await execa('ip', ['netns', 'exec', c.host, d.file, cmd, net, `/var/run/netns/${pod}`], {
    env: { PATH: process.env.PATH, NETCONFPATH: c.dir, CNI_PATH: binDir(), CNI_CACHEDIR: c.cache },
    extendEnv: false,
    reject: false,
    timeout: 60000,
  });
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const list = (c: Ctx, version = '1.0.0') => ({
  cniVersion: version,
  name: 'ptl-net',
  plugins: [
    { type: 'loopback' },
    { type: 'ptp', ipMasq: true, mtu: 1400, ipam: { type: 'host-local', dataDir: c.ipam, ranges: [[{ subnet: '198.18.30.0/24' }], [{ subnet: 'fd00:30::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] } },
  ],
});

const leases = (c: Ctx): string[] => {
  const d = join(c.ipam, 'ptl-net');
  return existsSync(d) ? readdirSync(d).filter((f) => /^[0-9a-f]+[.:]/.test(f)).sort() : [];
};
const cacheFiles = (c: Ctx): string[] => (existsSync(join(c.cache, 'results')) ? readdirSync(join(c.cache, 'results')) : []);
const sh = async (ns: string, ...cmd: string[]): Promise<string> => String((await execa('ip', ['netns', 'exec', ns, ...cmd])).stdout);

describe.each(drivers())('loopback + ptp list on our plugins alone, through $name', (d) => {
  test('ADD sets lo up and routes both pods (they reach each other over IPv4 and IPv6); CHECK passes; DEL removes everything', () =>
    withCtx(async (c) => {
      writeFileSync(join(c.dir, '10-ptl.conflist'), JSON.stringify(list(c)));
      const [p1, p2] = c.pods as [string, string];
      for (const p of c.pods) await execa('ip', ['-n', p, 'link', 'set', 'lo', 'down']);
      const add = await run(d, c, 'add', 'ptl-net', p1);
      expect(add).toMatchObject({ code: 0 });
      // ptp builds its own result (it does not carry loopback's prevResult on), as the reference.
      const res = JSON.parse(add.stdout);
      expect(res.interfaces.map((i: { name: string }) => i.name)).toEqual([expect.stringMatching(/^veth[0-9a-f]{8}$/), 'eth0']);
      expect(res.ips.map((i: { address: string }) => i.address)).toEqual(['198.18.30.2/24', 'fd00:30::2/64']);
      expect(await run(d, c, 'add', 'ptl-net', p2)).toMatchObject({ code: 0 });
      expect(await sh(p1, 'ip', '-o', 'link', 'show', 'lo')).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
      expect(await ping(p1, '127.0.0.1')).toBe(true);
      expect(await ping(p1, '198.18.30.3')).toBe(true);
      expect(await ping(p2, 'fd00:30::2')).toBe(true);
      expect(await sh(c.host, 'iptables-save', '-t', 'nat')).toContain('-A POSTROUTING -s 198.18.30.2/32');

      expect(await run(d, c, 'check', 'ptl-net', p1)).toMatchObject({ code: 0 });
      await execa('ip', ['-n', p1, 'link', 'set', 'lo', 'down']);
      expect((await run(d, c, 'check', 'ptl-net', p1)).stderr).toContain('loopback interface is down');
      await execa('ip', ['-n', p1, 'link', 'set', 'lo', 'up']);

      for (const p of c.pods) expect(await run(d, c, 'del', 'ptl-net', p)).toMatchObject({ code: 0 });
      expect(await sh(c.host, 'ip', '-o', 'link', 'show', 'type', 'veth')).toBe('');
      expect(await sh(p1, 'ip', '-o', 'link', 'show', 'lo')).not.toMatch(/[<,]UP[,>]/);
      expect(await sh(c.host, 'iptables-save', '-t', 'nat')).not.toMatch(/CNI-[0-9a-f]{24}/);
      expect(leases(c)).toEqual([]);
      expect(cacheFiles(c)).toEqual([]);
      expect(await run(d, c, 'del', 'ptl-net', p1)).toMatchObject({ code: 0 });
    }));
});

test('cnitool, 1.1.0 list: STATUS passes, GC DELs every cached attachment and sweeps leases and masquerade rules', () =>
  withCtx(async (c) => {
    const ours = drivers()[0]!;
    writeFileSync(join(c.dir, '10-ptl.conflist'), JSON.stringify(list(c, '1.1.0')));
    for (const p of c.pods) expect(await run(ours, c, 'add', 'ptl-net', p)).toMatchObject({ code: 0 });
    expect(leases(c)).toHaveLength(4);
    expect(await run(ours, c, 'status', 'ptl-net', c.pods[0]!)).toMatchObject({ code: 0 });
    expect(await run(ours, c, 'gc', 'ptl-net', c.pods[0]!)).toMatchObject({ code: 0 });
    expect(leases(c)).toEqual([]);
    expect(cacheFiles(c)).toEqual([]);
    expect(await sh(c.host, 'iptables-save', '-t', 'nat')).not.toMatch(/CNI-[0-9a-f]{24}/);
    expect(await sh(c.host, 'ip', '-o', 'link', 'show', 'type', 'veth')).toBe('');
  }));
