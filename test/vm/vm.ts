// Runs a shell script inside the test VM (test/vm/run.sh: Debian's kernel under qemu, chrooted into
// this machine's root filesystem over a RAM overlay). For kernel features this machine's kernel
// lacks (bridge VLAN filtering): the test code runs unchanged, against a kernel that has them.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface VmRun {
  /** Exit code of the script in the guest; null when the guest never reported one (boot failure, timeout). */
  code: number | null;
  /** The script's stdout+stderr (written by the guest into the job share). */
  output: string;
  /** The VM's serial console: run.sh's own lines, kernel messages, /init's "@@VM" lines. */
  serial: string;
  /** Files the script wrote to $VM_JOB (the job share), read back before the job dir is removed. */
  files: Record<string, string>;
  timedOut: boolean;
  ms: number;
}

export interface VmOpts {
  cwd: string; // the guest runs the script from here (same path: it sees the host's filesystem)
  env?: Record<string, string | undefined>;
  timeoutMs: number;
  collect?: string[]; // file names under $VM_JOB to return in `files`
}

/** Set in the guest so a test that boots the VM never does so from inside it. */
export const IN_VM_ENV = 'CNIKIT_IN_VM';

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export async function runInVm(script: string, o: VmOpts): Promise<VmRun> {
  const job = mkdtempSync(join(tmpdir(), 'cnikit-vm-job-'));
  const started = Date.now();
  try {
    const env: Record<string, string | undefined> = {
      PATH: process.env.PATH,
      HOME: '/root',
      LANG: 'C.UTF-8',
      ...o.env,
      [IN_VM_ENV]: '1',
      VM_JOB: '/run/cnikit-vm-job', // where /init binds the job share in the guest
    };
    const exports = Object.entries(env)
      .filter((e): e is [string, string] => e[1] !== undefined)
      .map(([k, v]) => `export ${k}=${quote(v)}`);
    writeFileSync(join(job, 'cmd.sh'), ['set -u', ...exports, `cd ${quote(o.cwd)}`, script, ''].join('\n'), { mode: 0o600 });

    // run.sh execs qemu; its own process group lets a timeout kill qemu and a still-running prepare.sh.
    const child = spawn('bash', [join(__dirname, 'run.sh'), job], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    child.stdout.on('data', (d: Buffer) => (serial += d.toString()));
    child.stderr.on('data', (d: Buffer) => (serial += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, o.timeoutMs);
    await new Promise<void>((resolve) => child.on('close', () => resolve()));
    clearTimeout(timer);

    const read = (name: string): string | undefined => {
      try {
        return readFileSync(join(job, name), 'utf8');
      } catch {
        return undefined;
      }
    };
    const rc = read('rc');
    const files: Record<string, string> = {};
    for (const name of o.collect ?? []) {
      const text = read(name);
      if (text !== undefined) files[name] = text;
    }
    return {
      code: rc === undefined || rc.trim() === '' ? null : Number(rc.trim()),
      output: read('output.log') ?? '',
      serial: serial.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''),
      files,
      timedOut,
      ms: Date.now() - started,
    };
  } finally {
    rmSync(job, { recursive: true, force: true });
  }
}
