// A ptp + bandwidth list through both list runners — the real libcni (Debian 1.1.2) and our
// cnitool — with CNI_PATH holding our plugins only: the limits come from the runtime through the
// "bandwidth" capability (CAP_ARGS → runtimeConfig.bandwidth), as kubelet/k3s send them.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, withNetns } from '../support/cni';
import { drivers, type Driver } from '../go/drivers';
import { ifbs, qdiscs } from './bandwidth-harness';

jest.setTimeout(120000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const CAPS = { bandwidth: { ingressRate: 8_000_000, ingressBurst: 262_144, egressRate: 16_000_000, egressBurst: 131_072 } };

async function run(d: Driver, dir: string, host: string, cmd: string, pod: string, caps: unknown = CAPS) {
  const r = await execa('ip', ['netns', 'exec', host, d.file, cmd, 'bw-net', `/var/run/netns/${pod}`], {
    env: { PATH: process.env.PATH, NETCONFPATH: join(dir, 'net.d'), CNI_PATH: binDir(), CNI_CACHEDIR: join(dir, 'cache'), CAP_ARGS: JSON.stringify(caps) },
    extendEnv: false,
    reject: false,
    timeout: 60000,
  });
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

describe.each(drivers())('ptp + bandwidth list on our plugins alone, through $name', (d) => {
  test('ADD shapes both ways from the capability, the ifb is in the result; CHECK passes; DEL leaves no ifb or qdisc', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-lc-'));
    try {
      await withNetns(['bwl-h', 'bwl-p'], async ([host, pod]) => {
        mkdirSync(join(dir, 'net.d'));
        const list = {
          cniVersion: '1.0.0',
          name: 'bw-net',
          plugins: [
            { type: 'ptp', ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: '198.18.40.0/24' }]] } },
            { type: 'bandwidth', capabilities: { bandwidth: true } },
          ],
        };
        writeFileSync(join(dir, 'net.d', '10-bw.conflist'), JSON.stringify(list));
        const add = await run(d, dir, host!, 'add', pod!);
        expect(add).toMatchObject({ code: 0 });
        const res = JSON.parse(add.stdout);
        const veth = res.interfaces[0].name;
        const [ifb] = await ifbs(host!);
        expect(res.interfaces.map((i: Json) => i.name)).toEqual([veth, 'eth0', ifb.ifname]);
        expect((await qdiscs(host!)).map((q: Json) => [q.kind, q.dev, q.options.rate])).toEqual([
          ['tbf', veth, 1_000_000],
          ['ingress', veth, undefined],
          ['tbf', ifb.ifname, 2_000_000],
        ]);
        expect(await run(d, dir, host!, 'check', pod!)).toMatchObject({ code: 0 });
        // a runtime that now asks for another limit: CHECK says which value differs
        const other = await run(d, dir, host!, 'check', pod!, { bandwidth: { ...CAPS.bandwidth, ingressRate: 4_000_000 } });
        expect(other.code).not.toBe(0);
        expect(other.stdout + other.stderr).toContain(`Rate doesn't match on ${veth}: 1000000 bytes/s, want 500000`);
        expect(await run(d, dir, host!, 'del', pod!)).toMatchObject({ code: 0 });
        expect(await ifbs(host!)).toEqual([]);
        expect(await qdiscs(host!)).toEqual([]);
        expect(await run(d, dir, host!, 'del', pod!)).toMatchObject({ code: 0 });
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
