// Running one plugin executable (libcni's invoke.RawExec, used by IPAM delegation and the runner):
// the Executor interface both call through, and the implementation that execs a process. The
// in-process implementation for our own plugins is in invoke.ts (it needs the protocol core).
import { childProcess } from '../lazy-builtins';
import { CniError, ErrInternal } from './errors';
import type { Env } from './skel';

/** One plugin run. */
export interface ExecRequest {
  file: string; // the executable found in CNI_PATH (findInPath)
  env: Env; // CNI_COMMAND and the other CNI_* variables included
  stdin: Buffer; // the network config
  /** How errors name the plugin: `${label} failed (exit code 1): ...`. Default: "netplugin" (libcni). */
  label?: string;
  /** Kill (SIGKILL) after this many ms; a CniError says so. Default: no limit (Go's delegation has none). */
  timeoutMs?: number;
  /** Cancels the run: the child is killed and the CniError's cause is `signal.reason`. */
  signal?: AbortSignal;
  /** The plugin's stderr: each chunk to this function (captured for the error message too), else inherited. */
  onStderr?: (chunk: Buffer) => void;
}

/**
 * Runs a plugin and returns its stdout on exit 0. Every failure is a CniError: the plugin's own
 * error JSON as it printed it (code, msg, details), else code 999 saying how it ended, with the
 * underlying error as `cause` (spawn errno error, abort reason).
 */
export interface Executor {
  exec(r: ExecRequest): Promise<string>;
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

class ExecFailure {
  constructor(readonly error: Error, readonly how: 'spawn' | 'timeout' | 'abort') {}
}

function runOnce(r: ExecRequest): Promise<Ended | ExecFailure> {
  return new Promise((resolve) => {
    if (r.signal?.aborted) return resolve(new ExecFailure(abortReason(r.signal), 'abort'));
    const capture = r.onStderr !== undefined;
    const child = childProcess().spawn(r.file, [], { env: r.env as NodeJS.ProcessEnv, stdio: ['pipe', 'pipe', capture ? 'pipe' : 'inherit'] });
    const [stdin, stdout] = [child.stdin!, child.stdout!]; // 'pipe' above: both exist
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let failure: ExecFailure | undefined;
    let settled = false;
    const kill = (f: ExecFailure): void => {
      failure ??= f;
      child.kill('SIGKILL');
    };
    const timer = r.timeoutMs !== undefined ? setTimeout(() => kill(new ExecFailure(new Error(`timed out after ${r.timeoutMs} ms`), 'timeout')), r.timeoutMs) : undefined;
    const onAbort = (): void => kill(new ExecFailure(abortReason(r.signal!), 'abort'));
    r.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.signal?.removeEventListener('abort', onAbort);
      if (spawnError) return resolve(new ExecFailure(spawnError, 'spawn'));
      if (failure) return resolve(failure);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    };
    stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => {
      err.push(c);
      r.onStderr?.(c);
    });
    child.on('error', (e) => finish(null, null, e));
    child.on('close', (code, signal) => finish(code, signal));
    // A child the plugin left behind (a daemon, a hung `sleep`) may hold our pipes open: once the
    // plugin itself has exited, wait briefly for its output, then stop waiting for the pipes.
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        if (settled) return;
        stdout.destroy();
        child.stderr?.destroy();
        finish(code, signal);
      }, 500).unref();
    });
    stdin.on('error', () => {}); // a plugin may exit without reading its stdin
    stdin.end(r.stdin);
  });
}

function abortReason(s: AbortSignal): Error {
  return s.reason instanceof Error ? s.reason : new Error(String(s.reason ?? 'aborted'));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The error a failed run stands for (libcni's RawExec.pluginErr): the plugin's error JSON on stdout
 * as it printed it, else code 999 with its stderr, or saying it printed nothing or no CNI error.
 */
export function pluginFailure(label: string, how: string, stdout: string, stderr: string): CniError {
  const text = stdout.trim();
  if (!text) {
    const e = stderr.trim();
    return new CniError(ErrInternal, e ? `${label} failed (${how}): ${JSON.stringify(e.slice(0, 1000))}` : `${label} failed with no error message (${how})`);
  }
  try {
    const e = JSON.parse(text) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e === 'object' && e !== null && typeof e.code === 'number' && typeof e.msg === 'string')
      return new CniError(e.code, e.msg, typeof e.details === 'string' ? e.details : '');
  } catch {
    /* not JSON: reported below */
  }
  return new CniError(ErrInternal, `${label} failed (${how}) but its output is not a CNI error: ${JSON.stringify(text.slice(0, 1000))}`);
}

/** Execs the plugin as a child process (spawn, timeout, cancellation, libcni's "text file busy" retry). */
export const processExecutor: Executor = {
  async exec(r: ExecRequest): Promise<string> {
    const label = r.label ?? 'netplugin';
    let ended: Ended | ExecFailure;
    // libcni retries "text file busy" (a binary being replaced by an installer) up to 5 times.
    for (let attempt = 0; ; attempt++) {
      ended = await runOnce(r);
      if (ended instanceof ExecFailure && ended.how === 'spawn' && (ended.error as NodeJS.ErrnoException).code === 'ETXTBSY' && attempt < 5) {
        await sleep(1000);
        continue;
      }
      break;
    }
    if (ended instanceof ExecFailure) {
      const { error: cause } = ended;
      if (ended.how === 'spawn') throw new CniError(ErrInternal, `failed to exec ${label} ${r.file}: ${cause.message}`, '', { cause });
      if (ended.how === 'timeout') throw new CniError(ErrInternal, `${label} ${r.file} did not finish within ${r.timeoutMs} ms and was killed`, '', { cause });
      throw new CniError(ErrInternal, `${label} ${r.file} was cancelled: ${cause.message}`, '', { cause });
    }
    if (ended.code === 0) return ended.stdout;
    throw pluginFailure(label, ended.signal ? `killed by ${ended.signal}` : `exit code ${ended.code}`, ended.stdout, ended.stderr);
  },
};
