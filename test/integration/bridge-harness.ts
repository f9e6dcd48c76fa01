// A scratch "host" netns with pod netns, running the bridge plugin (or another: CallOpts.plugin; ours
// or the reference) inside it.
// Everything lives in namespaces named br-*; dispose() removes them and the IPAM data dir.
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, binDir, delNetns, nsName, REFERENCE_DIR, runCni, type RunResult } from '../support/cni';
import { countNetfilterExecs, type ExecCount } from '../support/exec-count';

export interface CallOpts {
  pod?: string; // netns name; '' = no CNI_NETNS
  id?: string;
  ifname?: string;
  args?: string;
  cniPath?: string;
  binary?: string;
  plugin?: string; // default bridge
  wrap?: string[]; // a command line the plugin runs under (strace ...)
  nsenter?: boolean; // enter the host netns with nsenter --net (this mount namespace), not ip netns exec
  env?: Record<string, string>; // more environment
}

export class Lab {
  readonly host = nsName('br-h');
  readonly pods: string[] = [];
  readonly dataDir = mkdtempSync(join(tmpdir(), 'br-ipam-'));
  private extra: string[] = [];

  static async create(pods = 1): Promise<Lab> {
    const lab = new Lab();
    await addNetns(lab.host);
    for (let i = 0; i < pods; i++) await lab.addPod();
    return lab;
  }

  async addPod(): Promise<string> {
    const n = nsName('br-p');
    await addNetns(n);
    this.pods.push(n);
    return n;
  }

  /** Another netns that is cleaned up with the lab (e.g. an "outside" network). */
  async addNetns(prefix: string): Promise<string> {
    const n = nsName(prefix);
    await addNetns(n);
    this.extra.push(n);
    return n;
  }

  async dispose(): Promise<void> {
    for (const n of [...this.pods, ...this.extra, this.host]) await delNetns(n);
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A bridge network config with host-local over `subnets`, data under this lab. */
  conf(extra: Record<string, unknown> = {}, subnets: string[] = ['198.18.0.0/24']): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: 'brnet',
      type: 'bridge',
      bridge: 'cni0',
      ipam: { type: 'host-local', dataDir: this.dataDir, ranges: subnets.map((s) => [{ subnet: s }]) },
      ...extra,
    };
  }

  async call(command: string, config: unknown, o: CallOpts = {}): Promise<RunResult> {
    const pod = o.pod ?? this.pods[0]!;
    return runCni(o.plugin ?? 'bridge', {
      command,
      config,
      hostNetns: this.host,
      nsenter: o.nsenter,
      binary: o.binary,
      wrap: o.wrap,
      env: {
        ...o.env,
        CNI_CONTAINERID: o.id ?? `ctr-${pod}`,
        CNI_NETNS: pod ? `/var/run/netns/${pod}` : '',
        CNI_IFNAME: o.ifname ?? 'eth0',
        CNI_PATH: o.cniPath ?? binDir(),
        CNI_ARGS: o.args,
      },
    });
  }

  /** `call` under strace, counting the netfilter processes it execs. */
  async execs(command: string, config: unknown, o: CallOpts = {}): Promise<ExecCount> {
    return countNetfilterExecs((wrap) => this.call(command, config, { ...o, wrap }));
  }

  /** The host's nat tables (IPv4 then IPv6) as iptables-save prints them, without counters and comment lines. */
  async nat(): Promise<string[]> {
    const out: string[] = [];
    for (const t of ['iptables-save', 'ip6tables-save']) {
      const r = await execa('ip', ['netns', 'exec', this.host, t, '-t', 'nat']);
      out.push(...r.stdout.split('\n').filter((l) => /^[:*-]/.test(l)).map((l) => `${t}: ${l.replace(/ \[\d+:\d+\]$/, '')}`));
    }
    return out;
  }

  /** Leases host-local holds for the network (file names are the IPs). */
  leases(network = 'brnet'): string[] {
    try {
      return readdirSync(join(this.dataDir, network)).filter((f) => f !== 'lock' && !f.startsWith('.') && !f.startsWith('last_reserved_ip'));
    } catch {
      return [];
    }
  }
}

export async function sh(ns: string, cmd: string[]): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', ns, ...cmd], { reject: false });
  return `${r.stdout}${r.stderr ? `\n${r.stderr}` : ''}`;
}

/** `ip -j ...` inside a netns, parsed. */
export async function ipj<T = any>(ns: string, ...args: string[]): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await execa('ip', ['-n', ns, '-j', ...args]);
  return JSON.parse(r.stdout || '[]') as T;
}

export async function ping(ns: string, target: string): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', target], { reject: false });
  return r.exitCode === 0;
}

export const REFERENCE_BRIDGE = join(REFERENCE_DIR, 'bridge');
export const ourBinDir = binDir;

/**
 * Can this kernel make a bridge with vlan_filtering (CONFIG_BRIDGE_VLAN_FILTERING)? Probed
 * synchronously in a scratch netns, so suites can gate tests at load time (reported as skipped).
 */
export function kernelHasVlanFiltering(prefix: string): boolean {
  const ns = `${prefix}-vprobe-${process.pid}`;
  try {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'add', 'probe', 'type', 'bridge', 'vlan_filtering', '1'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}
