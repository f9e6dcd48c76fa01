// `cnitool`: the real cnitool's interface (containernetworking/cni cnitool/cnitool.go) on our runner.
//   cnitool add|check|del|gc|status <net> <netns>
// env: NETCONFPATH (default /etc/cni/net.d), CNI_PATH, CNI_ARGS, CAP_ARGS (JSON), CNI_IFNAME
// (default eth0), CNI_CACHEDIR (default /var/lib/cni).
import { sha512Hex } from '../shared/crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseCniArgs } from '../shared/cni/args';
import { CniError } from '../shared/cni/errors';
import { jsonSyntaxError } from '../shared/cni/json';
import { writeAll } from '../shared/cni/skel';
import { ConfError, loadConfList } from './conf';
import { printResult } from './result';
import { Runner, RunnerError, type RuntimeConf } from './runner';
import { versionLine } from '../shared/self';

export const DEFAULT_NET_DIR = '/etc/cni/net.d';
const COMMANDS = ['add', 'check', 'del', 'gc', 'status'] as const;
type Command = (typeof COMMANDS)[number];

function usage(exe: string): string {
  return [
    `${exe}: Add, check, remove or garbage-collect network interfaces of a network namespace, or get a network's status`,
    `  ${exe} add    <net> <netns>`,
    `  ${exe} check  <net> <netns>`,
    `  ${exe} del    <net> <netns>`,
    `  ${exe} gc     <net> <netns>   (DELs every cached attachment of <net>, then GC with no valid attachments)`,
    `  ${exe} status <net> <netns>`,
    'environment:',
    `  NETCONFPATH   directory of network configurations (default ${DEFAULT_NET_DIR})`,
    '  CNI_PATH      plugin directories, ":"-separated',
    '  CNI_ARGS      "K=V;K2=V2" passed to every plugin',
    '  CAP_ARGS      JSON object of capability arguments (e.g. {"portMappings":[...]})',
    '  CNI_IFNAME    interface name in the container (default eth0)',
    '  CNI_CACHEDIR  result cache directory (default /var/lib/cni)',
    '',
  ].join('\n');
}

/** Same container ID as the real cnitool: "cnitool-" + the first 10 bytes of sha512(netns path), hex. */
export function containerIDFor(netnsPath: string): string {
  return `cnitool-${sha512Hex(netnsPath).slice(0, 20)}`;
}

export interface CliIO {
  env: NodeJS.ProcessEnv;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const processIO = (): CliIO => ({ env: process.env, stdout: (s) => writeAll(1, s), stderr: (s) => writeAll(2, s) });

/** Runs one cnitool command; returns the exit code (0 ok, 1 failure, like the real cnitool). */
export async function cnitool(argv: string[], io: CliIO = processIO()): Promise<number> {
  const exe = 'cnitool';
  if (argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') {
    io.stdout(usage(exe));
    return 0;
  }
  if (argv[0] === '--version') {
    io.stdout(`${exe}: ${versionLine()}\n`);
    return 0;
  }
  if (argv.length === 0) {
    io.stderr(usage(exe));
    return 1;
  }
  // One line saying what is wrong and how the command is used, exit 1 (the usage is --help's).
  const misuse = (what: string, cmd?: string): number => {
    io.stderr(`${cmd ? `${exe} ${cmd}` : exe}: ${what} (usage: ${exe} ${cmd ?? COMMANDS.join('|')} <net> <netns>)\n`);
    return 1;
  };
  const [cmd, net, nsArg, ...extra] = argv as [string, ...Array<string | undefined>];
  if (!(COMMANDS as readonly string[]).includes(cmd)) return misuse(`unknown command ${JSON.stringify(cmd)}`);
  if (net === undefined || nsArg === undefined) return misuse(`missing ${net === undefined ? '<net> and <netns>' : '<netns>'}`, cmd);
  if (extra.length) return misuse(`unexpected argument ${JSON.stringify(extra[0])}`, cmd);
  const fail = (msg: string): number => {
    io.stderr(`${msg}\n`);
    return 1;
  };
  try {
    const env = io.env;
    const list = loadConfList(env.NETCONFPATH || DEFAULT_NET_DIR, net);
    let capabilityArgs: Record<string, unknown> = {};
    if (env.CAP_ARGS) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(env.CAP_ARGS);
      } catch {
        return fail(`invalid CAP_ARGS: ${jsonSyntaxError(env.CAP_ARGS)}`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail(`invalid CAP_ARGS ${JSON.stringify(env.CAP_ARGS)}: expected a JSON object`);
      capabilityArgs = parsed as Record<string, unknown>;
    }
    const args = parseCniArgs(env.CNI_ARGS ?? '');
    const ifName = env.CNI_IFNAME ?? 'eth0';
    const netns = resolve(nsArg);
    const c = cmd as Command;
    // A typo in the netns path would otherwise surface as an obscure plugin error (DEL must still
    // work after the netns is gone, so it is exempt).
    if ((c === 'add' || c === 'check') && !existsSync(netns)) return fail(`network namespace ${JSON.stringify(netns)} does not exist`);
    const runner = new Runner({ path: (env.CNI_PATH ?? '').split(':').filter(Boolean), env, onStderr: (c) => io.stderr(c.toString('utf8')) });
    const rt: RuntimeConf = { containerID: containerIDFor(netns), netns, ifName, args, capabilityArgs };
    switch (c) {
      case 'add': {
        const result = await runner.addNetworkList(list, rt);
        io.stdout(printResult(result)); // as the real cnitool: Result.Print, no newline after it
        break;
      }
      case 'check':
        await runner.checkNetworkList(list, rt);
        break;
      case 'del':
        await runner.delNetworkList(list, rt);
        break;
      case 'gc':
        await runner.gcNetworkList(list, []);
        break;
      case 'status':
        await runner.statusNetworkList(list);
        break;
    }
    return 0;
  } catch (e) {
    if (e instanceof RunnerError || e instanceof ConfError) return fail(e.message);
    if (e instanceof CniError) return fail(e.details ? `${e.message}; ${e.details}` : e.message);
    return fail(`${exe}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
