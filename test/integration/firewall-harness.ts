// The firewall plugin chained after a real bridge ADD (ours) in a scratch host netns: each pod gets
// eth0 from our bridge (dual-stack, isDefaultGateway), and its firewall config carries that result as
// prevResult. Helpers read the host netns's filter tables and nftables ruleset, count the netfilter
// processes a call execs (strace), and give the host an "outside" netns routed through FORWARD.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, REFERENCE_DIR, type RunResult } from '../support/cni';
import { countNetfilterExecs, type ExecCount } from '../support/exec-count';
import { Lab } from './bridge-harness';

export const OUR_FIREWALL = (): string => join(binDir(), 'firewall');
export const REFERENCE_FIREWALL = join(REFERENCE_DIR, 'firewall');

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export const SUBNETS = ['198.18.0.0/24', 'fd00:18::/64'];

export interface FwCall {
  binary?: string; // default: ours
  pod?: string; // default: the first pod; '' = no CNI_NETNS
  path?: string; // PATH for the plugin (fault injection); default: ours
  env?: Record<string, string>; // more environment (CNIKIT_LOG)
}

export class FirewallLab {
  readonly prev = new Map<string, Json>(); // pod -> its bridge result
  readonly dataDir = mkdtempSync(join(tmpdir(), 'fw-records-')); // the iptables backend's attachment records

  private constructor(readonly lab: Lab) {}

  static async create(pods = 1): Promise<FirewallLab> {
    const f = new FirewallLab(await Lab.create(pods));
    try {
      await execa('ip', ['netns', 'exec', f.host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
      for (const p of f.lab.pods) await f.attach(p);
    } catch (e) {
      await f.dispose();
      throw e;
    }
    return f;
  }

  get host(): string {
    return this.lab.host;
  }

  get pods(): string[] {
    return this.lab.pods;
  }

  /** Our bridge ADD for `pod` on `bridge` over `subnets` (network `net`); remembers the result as its prevResult. */
  async attach(pod: string, bridge = 'cni0', subnets = SUBNETS, net = 'brnet'): Promise<Json> {
    const r = await this.lab.call('ADD', this.lab.conf({ name: net, bridge, isDefaultGateway: true }, subnets), { pod, id: this.id(pod) });
    if (r.exitCode !== 0) throw new Error(`bridge ADD failed: ${r.stdout}${r.stderr}`);
    this.prev.set(pod, r.json);
    return r.json;
  }

  async addPod(bridge: string, subnets: string[], net: string): Promise<string> {
    const p = await this.lab.addPod();
    await this.attach(p, bridge, subnets, net);
    return p;
  }

  id(pod: string): string {
    return `ctr-${pod}`;
  }

  /** The firewall config chained after `pod`'s bridge ADD (no prevResult when `pod` has none), records in this lab's dataDir. */
  conf(extra: Record<string, unknown> = {}, pod = this.pods[0]!, net = 'brnet'): Record<string, unknown> {
    const prev = this.prev.get(pod);
    return { cniVersion: '1.0.0', name: net, type: 'firewall', dataDir: this.dataDir, ...extra, ...(prev ? { prevResult: prev } : {}) };
  }

  call(command: string, conf: unknown, o: FwCall & { forPod?: string } = {}): Promise<RunResult> {
    const pod = o.forPod ?? this.pods[0]!;
    return runIn(this.host, o.binary ?? OUR_FIREWALL(), command, conf, {
      CNI_CONTAINERID: this.id(pod),
      CNI_NETNS: o.pod === '' ? '' : `/var/run/netns/${o.pod ?? pod}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: binDir(),
      PATH: o.path ?? process.env.PATH,
      ...o.env,
    });
  }

  /** A netns routed from the host over a veth (198.19.0.0/24, fd00:19::/64): the pods reach it only through the host's FORWARD. */
  async outside(): Promise<{ ns: string; v4: string; v6: string }> {
    const ns = await this.lab.addNetns('br-o');
    const sh = (n: string, cmd: string) => execa('ip', ['netns', 'exec', n, 'sh', '-c', cmd]);
    await execa('ip', ['-n', this.host, 'link', 'add', 'to-out', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await sh(this.host, 'ip addr add 198.19.0.1/24 dev to-out && ip addr add fd00:19::1/64 dev to-out nodad && ip link set to-out up');
    await sh(ns, 'ip addr add 198.19.0.2/24 dev eth0 && ip addr add fd00:19::2/64 dev eth0 nodad && ip link set eth0 up && ip route add 198.18.0.0/15 via 198.19.0.1 && ip -6 route add fd00::/8 via fd00:19::1');
    return { ns, v4: '198.19.0.2', v6: 'fd00:19::2' };
  }

  /** A GC config for network `net` keeping `valid` (pods of this lab, interface eth0). */
  gcConf(valid: string[], extra: Record<string, unknown> = {}, net = 'brnet'): Record<string, unknown> {
    const attachments = valid.map((p) => ({ containerID: this.id(p), ifname: 'eth0' }));
    return { cniVersion: '1.1.0', name: net, type: 'firewall', dataDir: this.dataDir, ...extra, 'cni.dev/valid-attachments': attachments };
  }

  async dispose(): Promise<void> {
    try {
      await this.lab.dispose();
    } finally {
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }
}

/** Runs a plugin binary inside the host netns with exactly `env` (plus CNI_COMMAND). */
export async function runIn(host: string, binary: string, command: string, conf: unknown, env: Record<string, string | undefined>, prefix: string[] = []): Promise<RunResult> {
  const r = await execa('ip', ['netns', 'exec', host, ...prefix, binary], {
    input: typeof conf === 'string' ? conf : JSON.stringify(conf),
    env: { ...env, CNI_COMMAND: command },
    extendEnv: false,
    reject: false,
    timeout: 30000,
  });
  let json: Json;
  try {
    json = JSON.parse(String(r.stdout));
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json };
}

/** The filter table of a family in `ns` as iptables-save prints it, without comments/counters: chain names and rules. */
export async function filterTable(ns: string, family: 4 | 6): Promise<string[]> {
  const r = await execa('ip', ['netns', 'exec', ns, family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', 'filter']);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith(':') || l.startsWith('-A'))
    .map((l) => (l.startsWith(':') ? l.replace(/ \[\d+:\d+\]$/, '') : l));
}

/** Rules of the firewall's own chains and jumps (what DEL may touch) in a filter listing. */
export const cniRules = (t: string[]): string[] => t.filter((l) => /CNI-/.test(l));

/** `nft -j list ruleset` in `ns`, parsed. */
export async function nftRuleset(ns: string): Promise<Json[]> {
  const r = await execa('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset']);
  return JSON.parse(r.stdout).nftables;
}

/** A ruleset without handles (a rebuilt chain's rules get new ones), to compare contents. */
export const withoutHandles = (rs: Json[]): Json[] => JSON.parse(JSON.stringify(rs, (k, v) => (k === 'handle' ? undefined : v)));

/** The elements (val, comment) of a set of table inet cni_plugins_firewall in a ruleset. */
export function setElements(rs: Json[], set: string): Array<{ val: string; comment?: string }> {
  const s = rs.find((i) => i.set && i.set.table === 'cni_plugins_firewall' && i.set.name === set)?.set;
  return (s?.elem ?? []).map((e: Json) => (typeof e === 'object' && e.elem ? { val: e.elem.val, comment: e.elem.comment } : { val: e }));
}

/** Runs a call under strace and counts the netfilter tools it exec'd successfully (see countNetfilterExecs). */
export function countExecs(host: string, binary: string, command: string, conf: unknown, env: Record<string, string | undefined>): Promise<ExecCount> {
  return countNetfilterExecs((prefix) => runIn(host, binary, command, conf, env, prefix));
}

export async function canReach(from: string, to: string): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', from, 'ping', '-c', '1', '-W', '1', to], { reject: false });
  return r.exitCode === 0;
}
