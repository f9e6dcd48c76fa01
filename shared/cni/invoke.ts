// Delegation to another plugin found in CNI_PATH (the reference's pkg/invoke + pkg/ipam):
// same environment with CNI_COMMAND replaced, the complete stdin config, stderr forwarded.
import { spawn } from 'node:child_process';
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrDecodingFailure, ErrInternal, ErrInvalidNetworkConfig } from './errors';
import { runPlugin, type CmdArgs, type Env, type Outcome, type Plugin, type Verb } from './skel';
import { parseResult, type Result } from './types';
import { configVersion } from './version';
import { isSameBuild } from '../self';

/**
 * The seam for running our own plugins in-process: when the executable found in CNI_PATH is our
 * own multi-call binary, the entry point resolves the plugin name here and we skip a process start.
 */
let inProcess: ((name: string) => Plugin | undefined) | undefined;
export function setInProcessResolver(r: typeof inProcess): void {
  inProcess = r;
}

let ownExecutable: string | null | undefined;
/** Our own executable: a link to it, or a copy (same build ID, shared/self.ts): run in-process. */
function isOwnExecutable(file: string): boolean {
  if (ownExecutable === undefined) {
    try {
      ownExecutable = realpathSync(process.execPath);
    } catch {
      ownExecutable = null;
    }
  }
  try {
    if (ownExecutable !== null && realpathSync(file) === ownExecutable) return true;
  } catch {
    return false;
  }
  return isSameBuild(file);
}

export function findInPath(plugin: string, cniPath: string): string {
  if (!plugin) throw new CniError(ErrInvalidNetworkConfig, 'no plugin name provided');
  if (plugin.includes('/')) throw new CniError(ErrInvalidNetworkConfig, `invalid plugin name "${plugin}": must not contain "/"`);
  const dirs = cniPath.split(':').filter(Boolean);
  for (const d of dirs) {
    const f = join(d, plugin);
    try {
      // A regular file only, as Go's FindInPath: a directory of that name (or "." / "..") is not a plugin.
      if (!statSync(f).isFile()) continue;
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      /* next dir */
    }
  }
  throw new CniError(ErrInvalidNetworkConfig, `failed to find plugin "${plugin}" in path [${dirs.join(' ')}]`);
}

function execPlugin(file: string, env: Env, stdin: Buffer): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env: env as NodeJS.ProcessEnv, stdio: ['pipe', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', (e) => reject(new CniError(ErrInternal, `failed to exec ${file}: ${e.message}`)));
    child.on('close', (code) => resolve({ exitCode: code ?? 1, stdout: Buffer.concat(chunks).toString('utf8'), stderr: '' }));
    child.stdin.on('error', () => {}); // a plugin may exit without reading stdin
    child.stdin.end(stdin);
  });
}

/** A delegated plugin's stdout on failure: its error JSON, or a clear message about what it printed. */
function errorFrom(type: string, out: Outcome): CniError {
  try {
    const e = JSON.parse(out.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.code === 'number' && typeof e.msg === 'string')
      return new CniError(e.code, e.msg, typeof e.details === 'string' ? e.details : '');
  } catch {
    /* fall through */
  }
  const what = out.stdout.trim() ? `unparsable output ${JSON.stringify(out.stdout.trim().slice(0, 200))}` : 'no output';
  return new CniError(ErrInternal, `plugin "${type}" failed with exit code ${out.exitCode} and ${what}`);
}

async function delegate(verb: Verb, type: string, a: CmdArgs): Promise<string> {
  const file = findInPath(type, a.path);
  const env: Env = { ...a.env, CNI_COMMAND: verb };
  const plugin = isOwnExecutable(file) ? inProcess?.(type) : undefined;
  const out = plugin ? await runPlugin(plugin, env, () => a.stdinData) : await execPlugin(file, env, a.stdinData);
  if (out.exitCode !== 0) throw errorFrom(type, out);
  return out.stdout;
}

export async function delegateAdd(type: string, a: CmdArgs): Promise<Result> {
  const stdout = await delegate('ADD', type, a);
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new CniError(ErrDecodingFailure, `plugin "${type}" returned unparsable result ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  // Parse in the version the delegate says it printed (libcni's fixupResultVersion): an older IPAM
  // plugin may answer a 1.0.0 config in 0.4.0 or 0.2.0 shape. Only an absent version means the config's.
  const own = typeof raw === 'object' && raw !== null ? (raw as { cniVersion?: unknown }).cniVersion : undefined;
  return parseResult(raw, typeof own === 'string' && own !== '' ? own : configVersion(a.conf));
}

export const delegateDel = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('DEL', type, a));
export const delegateCheck = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('CHECK', type, a));
export const delegateGC = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('GC', type, a));
export const delegateStatus = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('STATUS', type, a));
