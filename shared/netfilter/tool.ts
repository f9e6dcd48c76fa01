// Running the netfilter tools (iptables-restore, iptables, nft) for masquerade and spoof-check rules.
// One exec per transaction: the tools are the stable interface to both iptables-legacy/-nft and nft.
// runTool/mustRunTool block (a short-lived plugin has nothing else to do); runToolAsync/
// mustRunToolAsync leave a long-running process's event loop free while the tool runs.
import { childProcess } from '../lazy-builtins';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { errnoOf, kindOfErrno, type ErrorKind } from '../linux/netlink/errno';

/**
 * A netfilter tool could not be run or failed. `kind`: 'not-found' when the tool is not installed,
 * 'try-again' for exit status 4 (xtables' RESOURCE_PROBLEM: the xtables lock is held), the spawn
 * errno's kind when it could not start, else 'other'. `cause` is the spawn error, if any.
 */
export class NetfilterError extends Error {
  constructor(
    readonly tool: string,
    message: string,
    readonly kind: ErrorKind = 'other',
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'NetfilterError';
  }

  /** The tool is not installed (masquerade falls back to the other backend). */
  get notFound(): boolean {
    return this.kind === 'not-found';
  }
}

// Runtimes often pass a minimal PATH to plugins; the tools live in sbin on every distribution.
const FALLBACK_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

// Only hits are kept: a tool installed later (a long-running plugin server) is found then.
const found = new Map<string, string>();

// The tools' messages in English whatever the node's locale: they end up in CNI errors and logs.
// Built on the first exec, not at load: copying process.env is start-up time every plugin would pay.
let toolEnvCache: NodeJS.ProcessEnv | undefined;
const toolEnv = (): NodeJS.ProcessEnv => (toolEnvCache ??= { ...process.env, LC_ALL: 'C' });

/** The tool's full path, or null if it is not installed. */
export function findTool(tool: string): string | null {
  const known = found.get(tool);
  if (known !== undefined) return known;
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...FALLBACK_DIRS];
  let hit: string | null = null;
  for (const d of dirs) {
    try {
      accessSync(join(d, tool), constants.X_OK);
      hit = join(d, tool);
      break;
    } catch {
      /* next */
    }
  }
  if (hit !== null) found.set(tool, hit);
  return hit;
}

export interface ToolOutput {
  status: number;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  /** runToolAsync: kill the tool (SIGKILL) after this many ms and fail with kind 'try-again'; default: no bound. */
  timeoutMs?: number;
}

// xtables' RESOURCE_PROBLEM exit status: another process holds the xtables lock (iptables -w timed out).
const XTABLES_RESOURCE_PROBLEM = 4;

function mustFind(tool: string): string {
  const file = findTool(tool);
  if (!file) throw new NetfilterError(tool, `${tool} not found in PATH or ${FALLBACK_DIRS.join(':')}`, 'not-found');
  return file;
}

function spawnFailed(tool: string, e: Error): NetfilterError {
  return new NetfilterError(tool, `running ${tool}: ${e.message}`, kindOfErrno(errnoOf(e)), { cause: e });
}

function timedOut(tool: string, ms: number): NetfilterError {
  return new NetfilterError(tool, `running ${tool}: no answer after ${ms} ms`, 'try-again');
}

/** Runs a tool with optional stdin, blocking; never throws for a non-zero exit (callers decide). Throws NetfilterError if it cannot run. */
export function runTool(tool: string, args: string[], input?: string): ToolOutput {
  const file = mustFind(tool);
  const r = childProcess().spawnSync(file, args, { input: input ?? '', encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], env: toolEnv() });
  if (r.error) throw spawnFailed(tool, r.error);
  return { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * runTool without blocking the event loop: the tool runs while other work goes on. Resolves with its
 * output whatever its exit status; rejects with NetfilterError if it cannot run or times out.
 */
export function runToolAsync(tool: string, args: string[], input?: string, opts: ToolOptions = {}): Promise<ToolOutput> {
  let file: string;
  try {
    file = mustFind(tool);
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: toolEnv() });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (opts.timeoutMs !== undefined) {
      const ms = opts.timeoutMs;
      timer = setTimeout(() => {
        // Settled now, not when the pipes close: a child of the tool may still hold them open.
        child.kill('SIGKILL');
        child.stdout.destroy();
        child.stderr.destroy();
        reject(timedOut(tool, ms));
      }, ms);
    }
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    // A tool that exits without reading its stdin (a usage error) closes the pipe: EPIPE is its exit status's business.
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(spawnFailed(tool, e));
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status: status ?? 1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(input ?? '');
  });
}

function failed(tool: string, args: string[], what: string, r: ToolOutput): NetfilterError {
  const err = r.stderr.trim().split('\n').slice(0, 3).join('; ');
  const kind: ErrorKind = r.status === XTABLES_RESOURCE_PROBLEM && tool.includes('tables') ? 'try-again' : 'other';
  return new NetfilterError(tool, `${what}: ${tool} ${args.join(' ')} failed (exit ${r.status}): ${err}`, kind);
}

/** Runs a tool (blocking) and returns its stdout; throws a NetfilterError naming the command and its stderr when it fails. */
export function mustRunTool(tool: string, args: string[], what: string, input?: string): string {
  const r = runTool(tool, args, input);
  if (r.status !== 0) throw failed(tool, args, what, r);
  return r.stdout;
}

/** mustRunTool without blocking the event loop (see runToolAsync). */
export async function mustRunToolAsync(tool: string, args: string[], what: string, input?: string, opts: ToolOptions = {}): Promise<string> {
  const r = await runToolAsync(tool, args, input, opts);
  if (r.status !== 0) throw failed(tool, args, what, r);
  return r.stdout;
}
