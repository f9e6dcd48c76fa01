// The protocol core every plugin runs under (the reference's pkg/skel): environment, stdin,
// version negotiation, error JSON. A plugin only supplies its verbs.
import { fstatSync, readFileSync, statSync, writeSync } from 'node:fs';
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
  errorMessage,
} from './errors';
import { atLeast, checkSupported, configVersion, CURRENT_VERSION, SUPPORTED_VERSIONS, versionInfo } from './version';
import { formatResult, type Result } from './types';
import { ifNameProblem } from './ifname';
import { processExecutor, type Executor } from './exec';
import { jsonSyntaxError } from './json';
import { loggerFromEnv, type Logger } from '../log';
import { versionLine } from '../self';
import { missingEnv, VERBS, type Env, type Verb } from './verbs';

export { VERBS, type Env, type Verb } from './verbs';

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
  log: Logger; // diagnostics (stderr or CNIKIT_LOG_FILE), never stdout
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
  log?: Logger; // default: what CNIKIT_LOG/CNIKIT_LOG_FILE in the env ask for
}

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

/** The bare invocation's text (the Go skel's about) and `<plugin> --version`'s. */
export function aboutText(p: Plugin): string {
  return `${p.name}: ${versionLine()}\n${p.about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`;
}

function versionGate(command: Verb, v: string): void {
  checkSupported(v);
  const need = command === 'CHECK' ? '0.4.0' : command === 'GC' || command === 'STATUS' ? '1.1.0' : null;
  if (need && !atLeast(v, need))
    throw new CniError(ErrIncompatibleCNIVersion, `config version does not allow ${command}`, `config is "${v}", ${command} needs ${need} or later`);
}

/**
 * Runs one invocation with an explicit environment and stdin. Pure apart from what the handlers do
 * and what `log` writes, so the multi-call entry point, in-process IPAM delegation and unit tests
 * all share it. `log` defaults to the one CNIKIT_LOG/CNIKIT_LOG_FILE in `env` ask for.
 */
export async function runPlugin(plugin: Plugin, env: Env, readStdin: () => Buffer, opts: RunOptions = {}): Promise<Outcome> {
  const log = opts.log ?? loggerFromEnv(env, plugin.name);
  let errVersion = CURRENT_VERSION;
  const vlog = log.child(env.CNI_COMMAND || '-');
  try {
    const command = env.CNI_COMMAND;
    if (command === undefined || command === '') return { exitCode: 0, stdout: '', stderr: aboutText(plugin) };
    if (!(VERBS as readonly string[]).includes(command))
      throw new CniError(ErrInvalidEnvironmentVariables, `unknown CNI_COMMAND: ${command}`, `expected one of ${VERBS.join(', ')}`);
    const verb = command as Verb;
    if (verb === 'VERSION') return { exitCode: 0, stdout: JSON.stringify(versionInfo()) + '\n', stderr: '' };

    const missing = missingEnv(verb, env);
    if (missing.length)
      throw new CniError(ErrInvalidEnvironmentVariables, `required env variables [${missing.join(',')}] missing`);

    let stdinData: Buffer;
    try {
      stdinData = readStdin();
    } catch (e) {
      throw new CniError(ErrIOFailure, `error reading from stdin: ${errorMessage(e)}`, '', { cause: e });
    }
    if (vlog.enabled('debug'))
      vlog.debug(`containerID=${JSON.stringify(env.CNI_CONTAINERID ?? '')} netns=${JSON.stringify(env.CNI_NETNS ?? '')} ifName=${JSON.stringify(env.CNI_IFNAME ?? '')} stdin ${stdinData.length} bytes, ${performance.now().toFixed(1)} ms after exec`);
    let conf: unknown;
    const text = stdinData.toString('utf8');
    try {
      conf = JSON.parse(text);
    } catch {
      // The engine's parser message is not ours to print (it differs between engines): say it ourselves.
      throw new CniError(ErrDecodingFailure, 'error decoding network config from stdin', `invalid JSON: ${jsonSyntaxError(text)}`);
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
      log: vlog,
    };
    if (verb === 'ADD' || verb === 'DEL' || verb === 'CHECK') {
      validateContainerID(a.containerID);
      validateIfName(a.ifName);
      checkNetnsIsNotOurs(a.netns, env);
    }

    const f = plugin.funcs;
    switch (verb) {
      case 'ADD': {
        const result = await vlog.step('ADD', () => f.add(a));
        return { exitCode: 0, stdout: JSON.stringify(formatResult(result, cniVersion), null, 4) + '\n', stderr: '' };
      }
      case 'DEL':
        await vlog.step('DEL', () => f.del(a));
        break;
      case 'CHECK':
        await vlog.step('CHECK', () => f.check(a));
        break;
      case 'GC':
        await vlog.step('GC', () => f.gc?.(a));
        break;
      case 'STATUS':
        await vlog.step('STATUS', () => f.status?.(a));
        break;
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  } catch (e) {
    const err = asCniError(e);
    if (vlog.enabled('debug')) {
      // The CNI error carries no stack or engine text; the log gets the original underneath it. An
      // error of our own kinds (a kernel or netfilter refusal: it has a `kind`) is a cause, not a bug.
      let c: unknown = err;
      while (c instanceof CniError && c.cause !== undefined) c = c.cause;
      const ours = c instanceof Error && typeof (c as { kind?: unknown }).kind === 'string';
      if (!(c instanceof CniError)) vlog.debug(`${ours ? 'cause' : 'unexpected'} ${c instanceof Error ? (c.stack ?? c.message) : String(c)}`);
    }
    vlog.debug(`error code ${err.code}: ${err.message}${err.details ? ` (${err.details})` : ''}`);
    return { exitCode: 1, stdout: JSON.stringify(err.toJSON(errVersion), null, 4) + '\n', stderr: '', error: err };
  }
}

/**
 * The process entry. `<plugin> --version` prints the about text; otherwise one CNI invocation with
 * the real environment and stdin (`opts.readStdin` when the entry read it already). A result that cannot be written (stdout closed or a broken pipe)
 * is an error exit (1) with one log line, never a stack trace: the runtime must not take a lost
 * ADD result for success.
 */
export async function pluginMain(plugin: Plugin, argv: readonly string[] = [], opts: RunOptions & { readStdin?: () => Buffer } = {}): Promise<never> {
  if (argv[0] === '--version') process.exit(tryWriteAll(1, aboutText(plugin)) ? 1 : 0);
  const log = opts.log ?? loggerFromEnv(process.env, plugin.name);
  const out = await runPlugin(plugin, process.env, opts.readStdin ?? (() => readFileSync(0)), { ...opts, log });
  if (out.stderr) tryWriteAll(2, out.stderr);
  let exitCode = out.exitCode;
  if (out.stdout) {
    const err = stdoutIsGone('self') ?? tryWriteAll(1, out.stdout);
    if (err) {
      log.warn(`cannot write the ${out.exitCode === 0 ? 'result' : 'error'} to stdout: ${err}`);
      exitCode = 1;
    }
  }
  if (log.enabled('debug')) log.debug(`exit ${exitCode}, ${performance.now().toFixed(1)} ms after exec`);
  process.exit(exitCode);
}

const DEV_NULL = (1 << 8) | 3; // major 1, minor 3

/**
 * Why stdout of this process (`self`) or of the plugin process `pid` (the plugin server asks for
 * its client's) cannot take the output, or null. bun (like Go's runtime) puts /dev/null, opened
 * close-on-exec, on a standard fd that was closed at exec: an inherited fd 1 can never be
 * close-on-exec, so such an fd 1 was opened by the process itself and a write there would be lost.
 */
export function stdoutIsGone(pid: number | 'self'): string | null {
  try {
    const st = pid === 'self' ? fstatSync(1) : statSync(`/proc/${pid}/fd/1`);
    if (!st.isCharacterDevice() || st.rdev !== DEV_NULL) return null; // one stat in the common case
    const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/1`, 'latin1'))?.[1];
    return flags !== undefined && (parseInt(flags, 8) & 0o2000000) !== 0 ? 'stdout was closed when the plugin started' : null;
  } catch {
    return null; // no /proc: nothing to learn, the write itself will tell
  }
}

/** writeAll that reports a failure (its errno code) instead of throwing. */
function tryWriteAll(fd: number, s: string): string | null {
  try {
    writeAll(fd, s);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'write failed';
  }
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
