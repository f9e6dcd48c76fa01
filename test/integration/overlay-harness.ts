// A multi-host lab for the overlay: every "host" is a netns whose eth0 hangs on a scratch switch
// (a bridge in its own netns) on the underlay 198.19.0.0/24; etcd members run in their own netns on
// the same switch; agents run inside the host netns. Nothing touches the root netns. close() kills
// every process the lab started and deletes every netns and temp dir, also after a failed test.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { addNetns, binDir, delNetns } from '../support/cni';

export const UNDERLAY = '198.19.0';
const nsPath = (ns: string): string => `/run/netns/${ns}`;

/** Runs argv inside netns `ns` (nsenter: no throwaway mount namespace). */
export async function inNs(ns: string, argv: string[], o: { input?: string; env?: Record<string, string>; timeout?: number } = {}) {
  return execa('nsenter', [`--net=${nsPath(ns)}`, ...argv], { reject: false, input: o.input, env: o.env, extendEnv: !o.env, timeout: o.timeout ?? 30000 });
}

export async function ping(ns: string, ip: string, extra: string[] = []): Promise<boolean> {
  const r = await inNs(ns, ['ping', '-c', '1', '-W', '1', ...extra, ip]);
  return r.exitCode === 0;
}

/** A pod of the lab: its host, netns and address. */
export interface LabPod {
  host: Host;
  ns: string;
  ip: string;
}

/** Every ordered pair of `pods` that does not answer one ping, as "host/ip -> host/ip". */
export async function unreachablePairs(pods: LabPod[]): Promise<string[]> {
  return (await silentPairs(pods)).map(showPair);
}

async function silentPairs(pods: LabPod[]): Promise<Array<[LabPod, LabPod]>> {
  const failed: Array<[LabPod, LabPod]> = [];
  for (const a of pods) for (const b of pods) if (a !== b && !(await ping(a.ns, b.ip))) failed.push([a, b]);
  return failed;
}

const showPair = ([a, b]: [LabPod, LabPod]): string => `${a.host.name}/${a.ip} -> ${b.host.name}/${b.ip}`;

/** Polls `fn` every `everyMs` until it is true; returns the ms it took, throws after `timeoutMs` with `what`. */
export async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15000, everyMs = 50): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A process of the lab with its output kept. */
export class Proc {
  out = '';
  exited: Promise<number | null>;
  exitCode: number | null | undefined = undefined;
  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve((this.exitCode = code ?? (sig ? -1 : null)))));
  }
  get running(): boolean {
    return this.exitCode === undefined;
  }
  /** Sends `sig` and waits for the exit. */
  async kill(sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    this.child.kill(sig);
    await this.exited;
  }
  /** Waits until the output has a line matching `re` (from `from` on). */
  waitFor(re: RegExp, timeoutMs = 15000, from = 0): Promise<number> {
    return until(`output matching ${re} in:\n${this.out}`, () => re.test(this.out.slice(from)), timeoutMs, 20);
  }
}

export interface Host {
  name: string;
  ns: string;
  ip: string;
  stateDir: string;
  /** the host's own scratch directory (cnm state, CNI cache) */
  dir: string;
  agent?: Proc;
}

export interface EtcdMember {
  name: string;
  ns: string;
  ip: string;
  dataDir: string;
  proc?: Proc;
}

export class OverlayLab {
  readonly id = randomBytes(3).toString('hex');
  /** the etcd prefix of the lab's agents: unique, or the product's default (cnm has no prefix flag) */
  readonly prefix: string;
  readonly tmp = mkdtempSync(join(tmpdir(), 'cnikit-overlay-'));
  readonly sw = `ovsw-${this.id}`;
  readonly hosts: Host[] = [];
  readonly etcd: EtcdMember[] = [];
  private netns: string[] = [];
  private procs: Proc[] = [];
  private nextIp = 11;

  constructor(o: { defaultPrefix?: boolean } = {}) {
    this.prefix = o.defaultPrefix ? '/cnikit/overlay/' : `/cnikit-test-${this.id}/`;
  }

  async start(): Promise<void> {
    await this.ns(this.sw);
    await execa('ip', ['-n', this.sw, 'link', 'add', 'sw0', 'type', 'bridge']);
    await execa('ip', ['-n', this.sw, 'link', 'set', 'sw0', 'up']);
  }

  private async ns(name: string): Promise<void> {
    this.netns.push(name);
    await addNetns(name);
  }

  /** A netns on the switch with `ip`/24 on its eth0 (MTU `mtu`). */
  private async plug(ns: string, port: string, ip: string, mtu = 1500): Promise<void> {
    await execa('ip', ['-n', this.sw, 'link', 'add', port, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(mtu), 'netns', ns]);
    await execa('ip', ['-n', this.sw, 'link', 'set', port, 'master', 'sw0', 'up']);
    await execa('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await execa('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  }

  async addHost(mtu = 1500): Promise<Host> {
    const i = this.hosts.length + 1;
    const h: Host = { name: `host${i}`, ns: `ovh${i}-${this.id}`, ip: `${UNDERLAY}.${this.nextIp++}`, stateDir: join(this.tmp, `host${i}`, 'state'), dir: join(this.tmp, `host${i}`) };
    await this.ns(h.ns);
    await this.plug(h.ns, `h${i}`, h.ip, mtu);
    this.hosts.push(h);
    return h;
  }

  /** `n` etcd members (one cluster), each in its own netns; waits until the cluster answers. */
  async startEtcd(n = 1): Promise<void> {
    for (let k = 1; k <= n; k++) {
      const m: EtcdMember = { name: `e${k}`, ns: `ove${k}-${this.id}`, ip: `${UNDERLAY}.${100 + k}`, dataDir: join(this.tmp, `etcd${k}`) };
      await this.ns(m.ns);
      await this.plug(m.ns, `e${k}`, m.ip);
      this.etcd.push(m);
    }
    for (const m of this.etcd) this.runEtcd(m);
    await until('etcd to answer', async () => (await this.etcdctl('endpoint', 'health')).exitCode === 0, 20000, 200);
  }

  /** Starts (or restarts, on its data dir) member `m`. */
  runEtcd(m: EtcdMember): void {
    const cluster = this.etcd.map((x) => `${x.name}=http://${x.ip}:2380`).join(',');
    m.proc = this.spawn(m.ns, [
      'etcd', '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', `http://${m.ip}:2379`, '--advertise-client-urls', `http://${m.ip}:2379`,
      '--listen-peer-urls', `http://${m.ip}:2380`, '--initial-advertise-peer-urls', `http://${m.ip}:2380`,
      '--initial-cluster', cluster, '--initial-cluster-token', `t-${this.id}`, '--initial-cluster-state', 'new',
      '--heartbeat-interval', '50', '--election-timeout', '500', '--log-level', 'warn',
    ]);
  }

  get endpoints(): string {
    return this.etcd.map((m) => `http://${m.ip}:2379`).join(',');
  }

  /** etcdctl against the live members, run from the first etcd netns (it is on the switch). */
  async etcdctl(...args: string[]) {
    const live = this.etcd.filter((m) => m.proc?.running);
    const eps = (live.length ? live : this.etcd).map((m) => `http://${m.ip}:2379`).join(',');
    return inNs(this.etcd[0]!.ns, ['etcdctl', `--endpoints=${eps}`, '--command-timeout=3s', ...args], { env: { ETCDCTL_API: '3', PATH: process.env.PATH! } });
  }

  /** The keys under the lab's prefix. */
  async keys(sub = ''): Promise<string[]> {
    const r = await this.etcdctl('get', '--prefix', '--keys-only', `${this.prefix}${sub}`);
    if (r.exitCode !== 0) throw new Error(`etcdctl get: ${r.stderr}`);
    return r.stdout.split('\n').filter(Boolean);
  }

  async defineNetwork(name: string, subnet: string, vni: number, hostPrefix = 24): Promise<void> {
    const r = await this.etcdctl('put', `${this.prefix}networks/${name}`, JSON.stringify({ subnet, hostPrefix, vni }));
    if (r.exitCode !== 0) throw new Error(`etcdctl put: ${r.stderr}`);
  }

  async removeNetwork(name: string): Promise<void> {
    await this.etcdctl('del', `${this.prefix}networks/${name}`);
    await this.etcdctl('del', '--prefix', `${this.prefix}subnets/${name}/`);
  }

  /** Starts the agent of `h` (TTL `ttl` s); returns its process. */
  startAgent(h: Host, ttl = 3, extra: string[] = []): Proc {
    h.agent = this.spawn(h.ns, [
      join(binDir(), 'cnikit'), 'overlay-agent', '--etcd', this.endpoints, '--underlay-ip', h.ip, '--name', h.name,
      '--state-dir', h.stateDir, '--lease-ttl', String(ttl), '--etcd-prefix', this.prefix, ...extra,
    ]);
    return h.agent;
  }

  spawn(ns: string, argv: string[]): Proc {
    const p = new Proc(spawn('nsenter', [`--net=${nsPath(ns)}`, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.procs.push(p);
    return p;
  }

  /**
   * Throws, when some pair of `pods` does not ping, an Error that names the pairs and carries what
   * the hosts said (agent logs, overlay routes, neighbours, FDB, underlay neighbours): a data-plane
   * failure is explained by the state at that moment, which is gone by the time anyone looks.
   */
  async expectAllPairsPing(pods: LabPod[]): Promise<void> {
    const failed = await silentPairs(pods);
    if (!failed.length) return;
    const state = await this.describe();
    const again: string[] = [];
    for (const [a, b] of failed) again.push(`${showPair([a, b])}: ${(await ping(a.ns, b.ip)) ? 'answers' : 'still silent'}`);
    throw new Error(`no reply for ${failed.map(showPair).join(', ')}\nping again after the state below was read: ${again.join(', ')}\n${state}`);
  }

  /** Each host's overlay kernel state and agent log, as text. */
  async describe(): Promise<string> {
    const out: string[] = [];
    for (const h of this.hosts) {
      const run = async (...argv: string[]) => (await execa(argv[0]!, ['-n', h.ns, ...argv.slice(1)], { reject: false })).stdout;
      out.push(
        `=== ${h.name} (underlay ${h.ip})`,
        await run('ip', '-br', 'addr'),
        await run('ip', 'route'),
        await run('ip', 'neigh'),
        (await run('bridge', 'fdb', 'show')).split('\n').filter((l) => / dev ovl\./.test(l)).join('\n'),
        `--- agent${h.agent?.running === false ? ` (exited ${h.agent.exitCode})` : ''}`,
        h.agent?.out ?? '(not started)',
      );
    }
    return out.join('\n');
  }

  /** A pod netns of the lab (deleted by close()). */
  async podNetns(tag: string): Promise<string> {
    const ns = `ovp${tag}-${this.id}`;
    await this.ns(ns);
    return ns;
  }

  /** Runs the overlay plugin (or `plugin`) in host `h` for pod netns `pod`. */
  async cni(h: Host, command: string, pod: string, conf: Record<string, unknown>, plugin = 'overlay') {
    const r = await inNs(h.ns, [join(binDir(), plugin)], {
      input: JSON.stringify(conf),
      env: { PATH: process.env.PATH!, CNI_COMMAND: command, CNI_CONTAINERID: `c-${pod}`, CNI_NETNS: nsPath(pod), CNI_IFNAME: 'eth0', CNI_PATH: binDir() },
    });
    let json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      json = r.stdout ? JSON.parse(String(r.stdout)) : undefined;
    } catch {
      json = undefined;
    }
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json };
  }

  overlayConf(h: Host, network: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { cniVersion: '1.0.0', name: `${network}-net`, type: 'overlay', network, stateDir: h.stateDir, ...extra };
  }

  /** `cnikit cnm` on host `h` with the lab's etcd as cluster store and the host's own state. */
  async cnm(h: Host, ...args: string[]) {
    const r = await inNs(h.ns, [join(binDir(), 'cnikit'), 'cnm', '--state-dir', join(h.dir, 'cnm'), '--cluster-store', this.etcd.map((m) => `etcd://${m.ip}:2379`).join(','), '--overlay-state-dir', h.stateDir, '--cni-path', binDir(), ...args], {
      env: { PATH: process.env.PATH!, CNI_CACHEDIR: join(h.dir, 'cache') },
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** Kills every process the lab started, deletes its netns and temp dir. Never throws. */
  async close(): Promise<void> {
    for (const p of this.procs) await p.kill('SIGKILL').catch(() => {});
    for (const ns of this.netns.reverse()) await delNetns(ns).catch(() => {});
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
