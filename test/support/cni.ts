// Helpers for integration tests: locate the built executable, run a plugin with CNI env + stdin,
// and make scratch network namespaces that are always removed.
import { execa } from 'execa';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

/** Directory holding `cnikit` and its links: CNIKIT_DIST/bin if set (parallel builds), else dist/bin. */
export function binDir(): string {
  return join(resolve(process.env.CNIKIT_DIST || join(__dirname, '..', '..', 'dist')), 'bin');
}

export const REFERENCE_DIR = '/usr/lib/cni';

export interface RunOpts {
  command: string;
  config?: unknown; // object (JSON-encoded) or raw string
  env?: Record<string, string | undefined>;
  hostNetns?: string; // run inside `ip netns exec <name>`
  nsenter?: boolean; // enter hostNetns with `nsenter --net` instead: this mount namespace (a plugin server serves only its own)
  binary?: string; // full path; default binDir()/<plugin>
  wrap?: string[]; // a command line the binary runs under (strace ...), inside the host netns
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed stdout, shape checked by the test
}

export async function runCni(plugin: string, o: RunOpts): Promise<RunResult> {
  const file = o.binary ?? join(binDir(), plugin);
  const input = o.config === undefined ? '' : typeof o.config === 'string' ? o.config : JSON.stringify(o.config);
  const env: Record<string, string | undefined> = { PATH: process.env.PATH, CNI_COMMAND: o.command, ...o.env };
  const argv = [...(o.wrap ?? []), file];
  const enter = !o.hostNetns ? [] : o.nsenter ? ['nsenter', `--net=/var/run/netns/${o.hostNetns}`] : ['ip', 'netns', 'exec', o.hostNetns];
  const [cmd, ...args] = [...enter, ...argv] as [string, ...string[]];
  const r = await execa(cmd, args, { input, env, extendEnv: false, reject: false, timeout: 30000 });
  let json: unknown = undefined;
  try {
    json = r.stdout ? JSON.parse(String(r.stdout)) : undefined;
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json };
}

/** A unique scratch netns name with a readable prefix. */
export function nsName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function addNetns(name: string): Promise<string> {
  await execa('ip', ['netns', 'add', name]);
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return `/var/run/netns/${name}`;
}

export async function delNetns(name: string): Promise<void> {
  await execa('ip', ['netns', 'del', name], { reject: false });
}

/** Runs fn with fresh netns of the given prefixes; deletes them afterwards, also on failure. */
export async function withNetns<T>(prefixes: string[], fn: (names: string[]) => Promise<T>): Promise<T> {
  const names = prefixes.map(nsName);
  try {
    for (const n of names) await addNetns(n);
    return await fn(names);
  } finally {
    for (const n of names) await delNetns(n);
  }
}

/**
 * Scratch netns for a whole test file: added in beforeAll, deleted in afterAll (whatever the tests
 * did). `names` holds them, in the order of `prefixes`, once beforeAll has run.
 */
export function suiteNetns(prefixes: string[]): { names: string[] } {
  const held = { names: [] as string[] };
  beforeAll(async () => {
    held.names = prefixes.map(nsName);
    for (const n of held.names) await addNetns(n);
  });
  afterAll(async () => {
    for (const n of held.names) await delNetns(n);
  });
  return held;
}

export const ALL_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/**
 * The plugins the built executable links, from `cnikit --list` minus the tools its usage names
 * ("tools: cnitool"): what a CNI_PATH holding our directory alone can run. Synchronous, so suites can
 * derive their cases at load time; [] when nothing is built.
 */
export function linkedPlugins(dir = binDir()): string[] {
  const cnikit = join(dir, 'cnikit');
  if (!existsSync(cnikit)) return [];
  const list = spawnSync(cnikit, ['--list'], { encoding: 'utf8' });
  const help = spawnSync(cnikit, ['--help'], { encoding: 'utf8' });
  if (list.status !== 0 || help.status !== 0) throw new Error(`${cnikit} --list/--help failed: ${list.stderr}${help.stderr}`);
  const tools = (/^tools: (.*)$/m.exec(help.stderr)?.[1] ?? '').split(', ').filter(Boolean);
  return list.stdout.split('\n').filter((n) => n && !tools.includes(n));
}

/**
 * The plugin types a network list (or single config) names, main and IPAM, that our executable does
 * not link: a test on our directory alone skips with these named instead of passing or failing.
 */
export function missingPlugins(conf: { type?: unknown; ipam?: { type?: unknown }; plugins?: unknown[] }, linked = linkedPlugins()): string[] {
  const confs = (Array.isArray(conf.plugins) ? conf.plugins : [conf]) as Array<{ type?: unknown; ipam?: { type?: unknown } }>;
  const types = confs.flatMap((p) => [p.type, p.ipam?.type]).filter((t): t is string => typeof t === 'string' && t !== '');
  return [...new Set(types)].filter((t) => !linked.includes(t));
}
