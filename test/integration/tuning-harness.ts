// The tuning plugin chained after a real bridge ADD (ours) in a scratch host netns with one pod:
// its prevResult is that ADD's result. Saved link values go to a per-lab dataDir, so nothing is
// written to the machine's /run/cni/tuning; dispose() removes the namespaces and that directory.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, REFERENCE_DIR, type RunResult } from '../support/cni';
import { ipj, Lab } from './bridge-harness';

export const OUR_TUNING = (): string => join(binDir(), 'tuning');
// CNIKIT_REFERENCE_TUNING runs the differential against another build of the reference (e.g. upstream's).
export const REFERENCE_TUNING = process.env.CNIKIT_REFERENCE_TUNING || join(REFERENCE_DIR, 'tuning');

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface TuningCall {
  binary?: string; // default: ours
  netns?: string; // '' = no CNI_NETNS
  args?: string;
  ifname?: string;
}

export class TuningLab {
  readonly stateDir = mkdtempSync(join(tmpdir(), 'tuning-state-'));
  prev: Json;

  private constructor(readonly lab: Lab) {}

  /** A lab whose pod has eth0 from our bridge's ADD in `cniVersion`. */
  static async create(cniVersion = '1.0.0'): Promise<TuningLab> {
    const t = new TuningLab(await Lab.create(1));
    const r = await t.lab.call('ADD', { ...t.lab.conf(), cniVersion });
    if (r.exitCode !== 0) {
      await t.dispose();
      throw new Error(`bridge ADD failed: ${r.stdout}${r.stderr}`);
    }
    t.prev = r.json;
    return t;
  }

  get pod(): string {
    return this.lab.pods[0]!;
  }

  /** The chain's container ID (the bridge's ADD used it too). */
  get containerID(): string {
    return `ctr-${this.pod}`;
  }

  get host(): string {
    return this.lab.host;
  }

  /** A tuning config chained after the bridge: prevResult is the bridge's result. */
  conf(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { cniVersion: this.prev.cniVersion, name: 'brnet', type: 'tuning', dataDir: this.stateDir, ...extra, prevResult: this.prev };
  }

  call(command: string, conf: unknown, o: TuningCall = {}): Promise<RunResult> {
    return this.lab.call(command, conf, { binary: o.binary ?? OUR_TUNING(), pod: o.netns ?? this.pod, id: this.containerID, args: o.args, ifname: o.ifname });
  }

  /**
   * ADD with /etc/cni/tuning/allowlist.conf holding `allowlist`, in a private mount namespace whose
   * /etc is an overlay: the machine's /etc is not touched.
   */
  async addWithAllowlist(allowlist: string, conf: unknown, binary = OUR_TUNING()): Promise<RunResult> {
    const d = mkdtempSync(join(tmpdir(), 'tuning-etc-'));
    try {
      mkdirSync(join(d, 'up', 'cni', 'tuning'), { recursive: true });
      mkdirSync(join(d, 'work'));
      writeFileSync(join(d, 'up', 'cni', 'tuning', 'allowlist.conf'), allowlist);
      const script = `mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/etc,upperdir=${d}/up,workdir=${d}/work /etc && exec ip netns exec "$0" "$1"`;
      const r = await execa('unshare', ['-m', 'sh', '-c', script, this.host, binary], {
        input: JSON.stringify(conf),
        env: {
          PATH: process.env.PATH,
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: this.containerID,
          CNI_NETNS: `/var/run/netns/${this.pod}`,
          CNI_IFNAME: 'eth0',
          CNI_PATH: binDir(),
        },
        extendEnv: false,
        reject: false,
      });
      let json: Json;
      try {
        json = JSON.parse(String(r.stdout));
      } catch {
        json = undefined;
      }
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json };
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }

  /** Files in the saved-state directory. */
  savedFiles(): string[] {
    return readdirSync(this.stateDir);
  }

  async dispose(): Promise<void> {
    await this.lab.dispose();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

export interface LinkState {
  address: string;
  mtu: number;
  txqlen: number;
  promisc: boolean;
  allmulti: boolean;
}

/** eth0 of a pod as `ip -d -j link` shows it. */
export async function linkState(pod: string, ifname = 'eth0'): Promise<LinkState> {
  const l = (await ipj(pod, '-d', 'link', 'show', ifname))[0];
  return { address: l.address, mtu: l.mtu, txqlen: l.txqlen, promisc: l.flags.includes('PROMISC'), allmulti: l.flags.includes('ALLMULTI') };
}

/** A /proc/sys file as read from inside `ns` (path like "net/core/somaxconn"). */
export async function procSys(ns: string, path: string): Promise<string> {
  return (await execa('ip', ['netns', 'exec', ns, 'cat', `/proc/sys/${path}`])).stdout;
}
