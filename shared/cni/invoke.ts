// Delegation to another plugin found in CNI_PATH (the reference's pkg/invoke + pkg/ipam):
// same environment with CNI_COMMAND replaced, the complete stdin config, stderr forwarded. The
// plugin runs through the Executor the caller was given (CmdArgs.executor).
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrDecodingFailure, ErrInternal, ErrInvalidNetworkConfig } from './errors';
import { pluginFailure, type Executor, type ExecRequest } from './exec';
import { runPlugin, type CmdArgs, type Env, type Plugin, type Verb } from './skel';
import { parseResult, resultVersion, type Result } from './types';
import { configVersion } from './version';
import { loggerFromEnv } from '../log';

/**
 * An Executor that runs our own plugins in-process and execs everything else with `fallback`.
 * `resolve(file)` returns the plugin when `file` is ours (main.ts: our executable, by identity,
 * under a plugin's name). In-process, the plugin gets this same executor for its own delegations;
 * nothing is written to stdout and nothing exits; `timeoutMs` does not apply (our code cannot be
 * killed mid-change), and `signal` is checked before the plugin starts. A failure is the plugin's
 * own CniError, cause included. `stderr`, when given, takes what the delegated plugins write to
 * stderr (their log lines, an exec'd plugin's output) instead of this process's fd 2: the plugin
 * server hands it to its client's stderr.
 */
export function inProcessExecutor(resolve: (file: string) => Plugin | undefined | Promise<Plugin | undefined>, fallback: Executor, stderr?: (text: string) => void): Executor {
  const self: Executor = {
    async exec(r: ExecRequest): Promise<string> {
      const plugin = await resolve(r.file);
      if (!plugin) return fallback.exec(stderr && !r.onStderr ? { ...r, onStderr: (chunk) => stderr(chunk.toString('utf8')) } : r);
      if (r.signal?.aborted) throw new CniError(ErrInternal, `${r.label ?? 'netplugin'} ${r.file} was cancelled`, '', { cause: r.signal.reason });
      const out = await runPlugin(plugin, r.env, () => r.stdin, { executor: self, ...(stderr ? { log: loggerFromEnv(r.env, plugin.name, stderr) } : {}) });
      if (out.stderr) r.onStderr?.(Buffer.from(out.stderr));
      if (out.exitCode === 0) return out.stdout;
      throw out.error ?? pluginFailure(r.label ?? 'netplugin', `exit code ${out.exitCode}`, out.stdout, out.stderr);
    },
  };
  return self;
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

async function delegate(verb: Verb, type: string, a: CmdArgs): Promise<string> {
  const file = findInPath(type, a.path);
  const env: Env = { ...a.env, CNI_COMMAND: verb };
  return a.executor.exec({ file, env, stdin: a.stdinData, label: `plugin ${JSON.stringify(type)}` });
}

export async function delegateAdd(type: string, a: CmdArgs): Promise<Result> {
  const stdout = await delegate('ADD', type, a);
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new CniError(ErrDecodingFailure, `plugin "${type}" returned unparsable result ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  return parseResult(raw, resultVersion(raw, configVersion(a.conf)));
}

export const delegateDel = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('DEL', type, a));
export const delegateCheck = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('CHECK', type, a));
export const delegateGC = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('GC', type, a));
export const delegateStatus = async (type: string, a: CmdArgs): Promise<void> => void (await delegate('STATUS', type, a));
