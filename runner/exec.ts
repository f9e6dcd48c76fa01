// Running one plugin binary for the runner (libcni's invoke.RawExec): environment as libcni builds
// it, a bounded run time, and the plugin's failure turned into a clear error.
import { spawn } from 'node:child_process';
import { CniError, ErrInternal } from '../shared/cni/errors';

export interface ExecRequest {
  file: string;
  env: NodeJS.ProcessEnv;
  stdin: Buffer;
  timeoutMs: number;
  onStderr?: (chunk: Buffer) => void; // libcni forwards a plugin's stderr to the runtime's
}

interface Raw {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  spawnError?: NodeJS.ErrnoException;
}

function runOnce(r: ExecRequest): Promise<Raw> {
  return new Promise((resolve) => {
    const child = spawn(r.file, [], { env: r.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, r.timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      err.push(c);
      r.onStderr?.(c);
    });
    const done = (x: Partial<Raw>): void => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, timedOut, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ...x });
    };
    let settled = false;
    const finish = (x: Partial<Raw>): void => {
      if (settled) return;
      settled = true;
      done(x);
    };
    child.on('error', (e: NodeJS.ErrnoException) => finish({ spawnError: e }));
    child.on('close', (code, signal) => finish({ code, signal }));
    // A child the plugin left behind (a daemon, a hung `sleep`) may hold our pipes open: once the
    // plugin itself has exited, wait briefly for its output, then stop waiting for the pipes.
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        if (settled) return;
        child.stdout.destroy();
        child.stderr.destroy();
        finish({ code, signal });
      }, 500).unref();
    });
    child.stdin.on('error', () => {}); // a plugin may exit without reading its stdin
    child.stdin.end(r.stdin);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The plugin's stdout on success; on failure its error JSON as a CniError, or a clear message. */
export async function execPlugin(r: ExecRequest): Promise<string> {
  let raw: Raw;
  // libcni retries "text file busy" (a binary being replaced by an installer) up to 5 times.
  for (let attempt = 0; ; attempt++) {
    raw = await runOnce(r);
    if (raw.spawnError?.code === 'ETXTBSY' && attempt < 5) {
      await sleep(1000);
      continue;
    }
    break;
  }
  if (raw.spawnError) throw new CniError(ErrInternal, `failed to exec ${r.file}: ${raw.spawnError.message}`);
  if (raw.timedOut) throw new CniError(ErrInternal, `${r.file} did not finish within ${r.timeoutMs} ms and was killed`);
  if (raw.code === 0) return raw.stdout;
  throw pluginFailure(raw);
}

function pluginFailure(raw: Raw): CniError {
  const how = raw.signal ? `killed by ${raw.signal}` : `exit code ${raw.code}`;
  const stdout = raw.stdout.trim();
  if (!stdout) {
    const stderr = raw.stderr.trim();
    return new CniError(ErrInternal, stderr ? `netplugin failed (${how}): ${JSON.stringify(stderr.slice(0, 1000))}` : `netplugin failed with no error message (${how})`);
  }
  try {
    const e = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e === 'object' && e !== null && typeof e.code === 'number' && typeof e.msg === 'string')
      return new CniError(e.code, e.msg, typeof e.details === 'string' ? e.details : '');
  } catch {
    /* not JSON: reported below */
  }
  return new CniError(ErrInternal, `netplugin failed (${how}) but its output is not a CNI error: ${JSON.stringify(stdout.slice(0, 1000))}`);
}
