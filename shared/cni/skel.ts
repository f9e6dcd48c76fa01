// The protocol core every plugin runs under (the reference's pkg/skel): environment, stdin,
// version negotiation, error JSON. A plugin only supplies its verbs.
import { readFileSync, statSync, writeSync } from 'node:fs';
import {
  CniError,
  asCniError,
  ErrDecodingFailure,
  ErrIncompatibleCNIVersion,
  ErrInvalidEnvironmentVariables,
  ErrInvalidNetNS,
  ErrInvalidNetworkConfig,
  ErrIOFailure,
  ErrUnknownContainer,
} from './errors';
import { atLeast, checkSupported, configVersion, CURRENT_VERSION, SUPPORTED_VERSIONS, versionInfo } from './version';
import { formatResult, type Result } from './types';
import { ifNameProblem } from './ifname';
import { processExecutor, type Executor } from './exec';

export const VERBS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Verb = (typeof VERBS)[number];

export type Env = Readonly<Record<string, string | undefined>>;

/** What a verb handler gets: the CNI_* parameters, the raw and parsed stdin config, its version. */
export interface CmdArgs {
  command: Verb;
  containerID: string;
  netns: string;
  ifName: string;
  args: string; // CNI_ARGS
  path: string; // CNI_PATH
  stdinData: Buffer;
  conf: Record<string, unknown>; // the stdin JSON; plugins parse their own schema from it
  cniVersion: string; // the config's version (0.1.0 when absent)
  env: Env; // passed on unchanged to delegated plugins
  executor: Executor; // runs delegated plugins (invoke.ts): exec, or in-process for our own
}

type Handler<T> = (args: CmdArgs) => T | Promise<T>;

export interface PluginFuncs {
  add: Handler<Result>;
  del: Handler<void>;
  check: Handler<void>;
  gc?: Handler<void>; // absent: GC succeeds silently, as the Go skel does for a nil handler
  status?: Handler<void>;
}

export interface Plugin {
  name: string;
  about: string;
  funcs: PluginFuncs;
}

export interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
  error?: CniError; // on failure: what stdout reports, with its cause (for in-process callers)
}

export interface RunOptions {
  executor?: Executor; // for the handlers' delegations; default: exec every plugin (processExecutor)
}

const REQUIRED: Record<Exclude<Verb, 'VERSION'>, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'], // no netns: DEL must still release IPAM
  GC: ['CNI_PATH'],
  STATUS: ['CNI_PATH'],
};

/** Container IDs and network names: what the Go library accepts, and safe as a path component. */
export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function validateContainerID(id: string): void {
  if (!id) throw new CniError(ErrUnknownContainer, 'missing containerID');
  if (!NAME_RE.test(id))
    throw new CniError(ErrInvalidEnvironmentVariables, `invalid characters in CNI_CONTAINERID ${JSON.stringify(id)}`, 'allowed: ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$');
}

export function validateIfName(name: string): void {
  const why = ifNameProblem(name);
  if (why) throw new CniError(ErrInvalidEnvironmentVariables, `invalid CNI_IFNAME ${JSON.stringify(name)}: ${why}`);
}

export function validateNetworkName(name: unknown): string {
  if (name === undefined || name === null || name === '') throw new CniError(ErrInvalidNetworkConfig, 'missing network name');
  if (typeof name !== 'string' || !NAME_RE.test(name))
    throw new CniError(ErrInvalidNetworkConfig, `invalid network name ${JSON.stringify(name)}`, 'allowed: ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$');
  return name;
}

const truthy = (v: string | undefined): boolean => v === '1' || v?.toLowerCase() === 'true';

/** The Go skel's code 8, checked before the handler runs (the reference checks after it). */
function checkNetnsIsNotOurs(netns: string, env: Env): void {
  if (!netns || truthy(env.CNI_NETNS_OVERRIDE)) return;
  let theirs, ours;
  try {
    theirs = statSync(netns);
    ours = statSync('/proc/self/ns/net');
  } catch {
    return; // a missing netns is the handler's business (DEL must still succeed)
  }
  if (theirs.dev === ours.dev && theirs.ino === ours.ino)
    throw new CniError(ErrInvalidNetNS, `CNI_NETNS ${JSON.stringify(netns)} is the plugin's own network namespace`);
}

function aboutText(p: Plugin): string {
  return `${p.about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`;
}

function versionGate(command: Verb, v: string): void {
  checkSupported(v);
  const need = command === 'CHECK' ? '0.4.0' : command === 'GC' || command === 'STATUS' ? '1.1.0' : null;
  if (need && !atLeast(v, need))
    throw new CniError(ErrIncompatibleCNIVersion, `config version does not allow ${command}`, `config is "${v}", ${command} needs ${need} or later`);
}

/**
 * Runs one invocation with an explicit environment and stdin. Pure apart from what the handlers do,
 * so the multi-call entry point, in-process IPAM delegation and unit tests all share it.
 */
export async function runPlugin(plugin: Plugin, env: Env, readStdin: () => Buffer, opts: RunOptions = {}): Promise<Outcome> {
  let errVersion = CURRENT_VERSION;
  try {
    const command = env.CNI_COMMAND;
    if (command === undefined || command === '') return { exitCode: 0, stdout: '', stderr: aboutText(plugin) };
    if (!(VERBS as readonly string[]).includes(command))
      throw new CniError(ErrInvalidEnvironmentVariables, `unknown CNI_COMMAND: ${command}`, `expected one of ${VERBS.join(', ')}`);
    const verb = command as Verb;
    if (verb === 'VERSION') return { exitCode: 0, stdout: JSON.stringify(versionInfo()) + '\n', stderr: '' };

    const missing = REQUIRED[verb].filter((k) => env[k] === undefined || env[k] === '');
    if (missing.length)
      throw new CniError(ErrInvalidEnvironmentVariables, `required env variables [${missing.join(',')}] missing`);

    let stdinData: Buffer;
    try {
      stdinData = readStdin();
    } catch (e) {
      throw new CniError(ErrIOFailure, `error reading from stdin: ${(e as Error).message}`);
    }
    let conf: unknown;
    try {
      conf = JSON.parse(stdinData.toString('utf8'));
    } catch (e) {
      throw new CniError(ErrDecodingFailure, 'error decoding network config from stdin', (e as Error).message);
    }
    if (typeof conf !== 'object' || conf === null || Array.isArray(conf))
      throw new CniError(ErrDecodingFailure, 'error decoding network config from stdin', 'expected a JSON object');
    const confObj = conf as Record<string, unknown>;
    const cniVersion = configVersion(confObj);
    errVersion = cniVersion;
    versionGate(verb, cniVersion);
    validateNetworkName(confObj.name);

    const a: CmdArgs = {
      command: verb,
      containerID: env.CNI_CONTAINERID ?? '',
      netns: env.CNI_NETNS ?? '',
      ifName: env.CNI_IFNAME ?? '',
      args: env.CNI_ARGS ?? '',
      path: env.CNI_PATH ?? '',
      stdinData,
      conf: confObj,
      cniVersion,
      env,
      executor: opts.executor ?? processExecutor,
    };
    if (verb === 'ADD' || verb === 'DEL' || verb === 'CHECK') {
      validateContainerID(a.containerID);
      validateIfName(a.ifName);
      checkNetnsIsNotOurs(a.netns, env);
    }

    const f = plugin.funcs;
    switch (verb) {
      case 'ADD': {
        const result = await f.add(a);
        return { exitCode: 0, stdout: JSON.stringify(formatResult(result, cniVersion), null, 4) + '\n', stderr: '' };
      }
      case 'DEL':
        await f.del(a);
        break;
      case 'CHECK':
        await f.check(a);
        break;
      case 'GC':
        await f.gc?.(a);
        break;
      case 'STATUS':
        await f.status?.(a);
        break;
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  } catch (e) {
    const err = asCniError(e);
    return { exitCode: 1, stdout: JSON.stringify(err.toJSON(errVersion), null, 4) + '\n', stderr: '', error: err };
  }
}

/** The process entry: real env, real stdin, print, exit. */
export async function pluginMain(plugin: Plugin, opts: RunOptions = {}): Promise<never> {
  const out = await runPlugin(plugin, process.env, () => readFileSync(0), opts);
  // Synchronous writes: the process exits right after, and a buffered pipe write could be lost.
  if (out.stderr) writeAll(2, out.stderr);
  if (out.stdout) writeAll(1, out.stdout);
  process.exit(out.exitCode);
}

/** Writes all of `s` synchronously (the process exits right after; a buffered pipe write could be lost). */
export function writeAll(fd: number, s: string): void {
  const buf = Buffer.from(s);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}
