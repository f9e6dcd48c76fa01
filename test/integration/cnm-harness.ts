// A scratch "host" for cnm: a netns of its own (nsenter --net) and a private mount namespace whose
// /run and /var/lib are fresh tmpfs, so the sandboxes cnm bind-mounts under /run/netns, its state
// (/var/lib/cnikit/cnm), the CNI result cache (/var/lib/cni) and the leases vanish with it. Commands
// run through `nsenter -t <holder> -m -n` (not `ip netns exec`, whose throwaway mount namespace
// would hide the sandboxes). Nothing reaches the machine's root netns or disk.
import { execa, type ResultPromise } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, binDir, delNetns, nsName } from '../support/cni';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export class CnmHost {
  readonly host = nsName('cnm-h');
  readonly work = mkdtempSync(join(tmpdir(), 'cnm-'));
  private holder?: ChildProcess;
  /** CNI_PATH the cnm commands get (default: the built bin directory). */
  cniPath = binDir();

  async start(): Promise<void> {
    await addNetns(this.host);
    this.holder = spawn(
      'nsenter',
      [`--net=/var/run/netns/${this.host}`, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && mkdir /run/netns && echo ready && exec sleep 100000'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((res, rej) => {
      let err = '';
      this.holder!.stderr!.on('data', (d) => (err += d));
      this.holder!.stdout!.once('data', () => res());
      this.holder!.once('exit', (code) => rej(new Error(`namespace holder exited ${code}: ${err}`)));
    });
  }

  /** Kills the holder (its mount namespace, and with it every sandbox netns, goes), then the host netns. */
  async stop(): Promise<void> {
    this.holder?.kill('SIGKILL');
    await delNetns(this.host);
    rmSync(this.work, { recursive: true, force: true });
  }

  /** A command in the host netns and the private mount namespace, started (for kill tests). */
  spawn(cmd: string[], env: Record<string, string> = {}): ResultPromise {
    return execa('nsenter', ['-t', String(this.holder!.pid), '-m', '-n', ...cmd], {
      env: { PATH: process.env.PATH, CNI_PATH: this.cniPath, ...env },
      extendEnv: false,
      reject: false,
      timeout: 120000,
    });
  }

  async sh(...cmd: string[]): Promise<Run> {
    const r = await this.spawn(cmd);
    return { code: r.exitCode ?? -1, stdout: String(r.stdout).trim(), stderr: String(r.stderr).trim() };
  }

  cnm(...args: string[]): Promise<Run> {
    return this.sh(join(binDir(), 'cnm'), ...args);
  }

  /** cnm that must succeed; its stdout. */
  async ok(...args: string[]): Promise<string> {
    const r = await this.cnm(...args);
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
    return r.stdout;
  }
}

export async function withCnmHost(fn: (h: CnmHost) => Promise<void>): Promise<void> {
  const h = new CnmHost();
  try {
    await h.start();
    await fn(h);
  } finally {
    await h.stop();
  }
}
