// The bandwidth plugin chained after our bridge in a scratch host netns: each pod gets eth0 from a
// real bridge ADD, whose result is the bandwidth call's prevResult. tc state is read with `tc -j`
// in the host netns; traffic is measured with a small node:net sender/receiver run via nsenter.
import { execa } from 'execa';
import { join } from 'node:path';
import { binDir, REFERENCE_DIR, type RunResult } from '../support/cni';
import { Lab } from './bridge-harness';

export const OUR_BANDWIDTH = (): string => join(binDir(), 'bandwidth');
export const REFERENCE_BANDWIDTH = join(REFERENCE_DIR, 'bandwidth');

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export const NETWORK = 'bwnet';

export class BandwidthLab {
  /** the bridge's ADD result per pod */
  readonly prev = new Map<string, Json>();

  private constructor(readonly lab: Lab) {}

  /** A lab with `pods` pods on the bridge 198.18.0.0/24 (cniVersion 1.0.0: the reference's highest). */
  static async create(pods = 1): Promise<BandwidthLab> {
    const b = new BandwidthLab(await Lab.create(pods));
    try {
      for (const p of b.lab.pods) {
        const r = await b.lab.call('ADD', b.lab.conf({ name: NETWORK }), { pod: p, id: b.id(p) });
        if (r.exitCode !== 0) throw new Error(`bridge ADD failed: ${r.stdout}${r.stderr}`);
        b.prev.set(p, r.json);
      }
    } catch (e) {
      await b.dispose();
      throw e;
    }
    return b;
  }

  get host(): string {
    return this.lab.host;
  }

  pod(i = 0): string {
    return this.lab.pods[i]!;
  }

  /** A container ID per pod that does not change between labs (so twin labs get the same ifb name). */
  id(pod: string): string {
    return `ctr${this.lab.pods.indexOf(pod)}`;
  }

  /** The host end of the pod's veth, from the bridge's result. */
  hostVeth(pod = this.pod()): string {
    return this.prev.get(pod).interfaces.find((i: Json) => i.name.startsWith('veth')).name;
  }

  conf(extra: Record<string, unknown> = {}, pod = this.pod()): Record<string, unknown> {
    return { cniVersion: '1.0.0', name: NETWORK, type: 'bandwidth', ...extra, prevResult: this.prev.get(pod) };
  }

  /** Runs bandwidth (ours unless `binary`) for `pod`; `netns: ''` sends no CNI_NETNS. */
  call(command: string, conf: unknown, o: { pod?: string; netns?: string; binary?: string; ifname?: string } = {}): Promise<RunResult> {
    const pod = o.pod ?? this.pod();
    return this.lab.call(command, conf, { binary: o.binary ?? OUR_BANDWIDTH(), pod: o.netns ?? pod, id: this.id(pod), ifname: o.ifname });
  }

  async dispose(): Promise<void> {
    await this.lab.dispose();
  }
}

/** `tc -j qdisc show` in `ns`, without the devices' default qdiscs (noqueue, pfifo_fast, ...). */
export async function qdiscs(ns: string): Promise<Json[]> {
  const r = await execa('ip', ['netns', 'exec', ns, 'tc', '-j', 'qdisc', 'show']);
  return (JSON.parse(r.stdout || '[]') as Json[]).filter((q) => q.kind === 'tbf' || q.kind === 'ingress');
}

/** `tc -j filter show dev <dev> parent ffff:` in `ns`. */
export async function ingressFilters(ns: string, dev: string): Promise<Json[]> {
  const r = await execa('ip', ['netns', 'exec', ns, 'tc', '-j', 'filter', 'show', 'dev', dev, 'parent', 'ffff:']);
  return JSON.parse(r.stdout || '[]');
}

/** ifb devices in `ns` as `ip -d -j link` shows them. */
export async function ifbs(ns: string): Promise<Json[]> {
  const r = await execa('ip', ['-n', ns, '-d', '-j', 'link', 'show', 'type', 'ifb']);
  return JSON.parse(r.stdout || '[]');
}

const RECEIVER = `
const net = require('node:net');
let bytes = 0, first = 0, last = 0;
const srv = net.createServer((s) => {
  s.on('data', (d) => { const t = process.hrtime.bigint(); if (!first) first = t; last = t; bytes += d.length; });
  s.on('end', () => { console.log(JSON.stringify({ bytes, ms: Number(last - first) / 1e6 })); srv.close(); });
});
srv.listen(5201, '0.0.0.0', () => console.error('ready'));
`;

const SENDER = `
const net = require('node:net');
const [host, n] = process.argv.slice(1);
const s = net.connect(5201, host, () => {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let left = Number(n);
  const more = () => { while (left > 0) { const k = Math.min(left, chunk.length); left -= k; if (!s.write(chunk.subarray(0, k))) return s.once('drain', more); } s.end(); };
  more();
});
`;

/**
 * Sends `bytes` over TCP from netns `from` to `toAddr` in netns `to`; returns the rate the receiver
 * saw, in bits/s, from its first byte to its last.
 */
export async function measureRate(from: string, to: string, toAddr: string, bytes: number): Promise<number> {
  const rx = execa('nsenter', [`--net=/var/run/netns/${to}`, process.execPath, '-e', RECEIVER], { timeout: 60000 });
  await new Promise<void>((resolve, reject) => {
    rx.stderr!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    rx.catch(reject);
  });
  await execa('nsenter', [`--net=/var/run/netns/${from}`, process.execPath, '-e', SENDER, toAddr, String(bytes)], { timeout: 60000 });
  const { bytes: got, ms } = JSON.parse((await rx).stdout) as { bytes: number; ms: number };
  if (got !== bytes) throw new Error(`receiver got ${got} of ${bytes} bytes`);
  return (got * 8) / (ms / 1000);
}
