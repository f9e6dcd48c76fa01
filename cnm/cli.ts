// `cnm`: Docker's `docker network` / `docker run --network` conventions on the CNM library.
//   cnm [global options] network create|ls|inspect|connect|disconnect|rm|prune ...
//   cnm [global options] sandbox create|ls|rm|exec ...
//   cnm [global options] run [--name N] --network NET... [--ip IP] [--rm] -- CMD...
// Global options go before or after the subcommand. Exit 0 ok, 1 error (one line on stderr naming
// the object); `cnm run` exits with the command's status (125 when cnm itself fails, as docker run).
import { spawn } from 'node:child_process';
import { randomHex } from '../shared/crypto';
import { readSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { writeAll } from '../shared/cni/skel';
import { errorMessage, parseArgsProblem } from '../shared/cni/errors';
import { versionLine } from '../shared/self';
import { loggerFromEnv } from '../shared/log';
import { ownPluginsExecutor } from '../plugins/registry';
import { CnmError } from './errors';
import { parseAddressPool } from './ipam';
import { keyValues, type NetworkRecord } from './model';
import { DEFAULT_STATE_DIR as DEFAULT_OVERLAY_STATE_DIR } from '../overlay/lease-file';
import { DEFAULT_STATE_DIR, NetworkController, PREDEFINED, type Network, type Sandbox } from './controller';

export interface CnmIO {
  env: NodeJS.ProcessEnv;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** One line from the terminal (prune's confirmation); null at end of input. */
  readLine: () => string | null;
}

const processIO = (): CnmIO => ({ env: process.env, stdout: (s) => writeAll(1, s), stderr: (s) => writeAll(2, s), readLine: readStdinLine });

function readStdinLine(): string | null {
  const buf = Buffer.alloc(1);
  let line = '';
  try {
    while (readSync(0, buf, 0, 1, null) === 1) {
      if (buf[0] === 10) return line;
      line += String.fromCharCode(buf[0]!);
    }
  } catch {
    return null;
  }
  return line || null;
}

type Options = NonNullable<ParseArgsConfig['options']>;

const GLOBAL: Options = {
  'state-dir': { type: 'string' },
  'cni-path': { type: 'string' },
  'conf-dir': { type: 'string' },
  'default-address-pool': { type: 'string', multiple: true },
  'cluster-store': { type: 'string' },
  'overlay-state-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const GLOBAL_HELP = [
  'global options (before or after the subcommand):',
  `  --state-dir DIR   the model's state (default $CNM_STATE_DIR, else ${DEFAULT_STATE_DIR})`,
  '  --cni-path DIRS   plugin directories, ":"-separated (default $CNI_PATH, else /opt/cni/bin)',
  '  --conf-dir DIR    conflists the cni driver names (default $NETCONFPATH, else /etc/cni/net.d)',
  '  --default-address-pool base=CIDR,size=N   subnets for networks created without --subnet',
  "                    (repeatable; default dockerd's: 172.17-31.0.0/16, then 192.168.0.0/16 as /20s)",
  '  --cluster-store etcd://IP:2379[,etcd://IP2:2379...]   etcd for global networks (the overlay driver)',
  `  --overlay-state-dir DIR   the overlay agent's --state-dir on this host (default ${DEFAULT_OVERLAY_STATE_DIR})`,
  '  -h, --help        this help',
];

interface Command {
  usage: string;
  about: string;
  options: Options;
  help: string[]; // one line per option
  /** true: the arguments after `--` are a command (run, sandbox exec). */
  takesCommand?: boolean;
  run(c: Ctx): Promise<number>;
}

interface Ctx {
  io: CnmIO;
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  args: string[];
  cmd: string[];
  controller: () => Promise<NetworkController>;
}

/** A usage error of one command: one line, exit 1. */
class UsageError extends Error {}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : []);

function exactly(c: Ctx, n: number, names: string): void {
  if (c.args.length !== n) throw new UsageError(c.args.length < n ? `needs ${names}` : `unexpected argument ${JSON.stringify(c.args[n])}`);
}
function atLeastOne(c: Ctx, names: string): void {
  if (!c.args.length) throw new UsageError(`needs ${names}`);
}

const short = (id: string, noTrunc = false): string => (noTrunc ? id : id.slice(0, 12));

/** Columns as docker's tables lay them out (Go tabwriter: cell width + 3 padding, at least 10). */
function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(10, ...rows.map((r) => r[i]!.length + 3)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('').trimEnd() + '\n').join('');
}

/** Go's time.Time.String() of an ISO-8601 UTC time, as docker's `--format` shows CreatedAt. */
function goTime(iso: string): string {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(iso);
  if (!m) return iso;
  const frac = (m[3] ?? '').replace(/0+$/, '');
  return `${m[1]} ${m[2]}${frac ? `.${frac}` : ''} +0000 UTC`;
}

/** docker's network filter keys (daemon/network/filter.go) and how each matches. */
const NETWORK_FILTERS = ['dangling', 'driver', 'id', 'label', 'name', 'scope', 'type'] as const;

/** docker's filters.Match: the value equals, or is a regular expression found in, the source (a bad expression matches nothing). */
function filterMatch(pattern: string, source: string): boolean {
  if (pattern === source) return true;
  try {
    return new RegExp(pattern).test(source);
  } catch {
    return false;
  }
}

/**
 * `network ls --filter` as dockerd applies it: values of one key are alternatives (any may match),
 * except label, whose values must all match; different keys must all match. Throws UsageError
 * naming a filter without `=`, an unknown key or a bad type/dangling value.
 */
function filterNetworks(nets: NetworkRecord[], filters: string[], endpoints: (n: NetworkRecord) => number): NetworkRecord[] {
  const byKey = new Map<string, string[]>();
  for (const f of filters) {
    const i = f.indexOf('=');
    if (i <= 0) throw new UsageError(`invalid --filter ${JSON.stringify(f)}: expected KEY=VALUE`);
    const k = f.slice(0, i);
    if (!(NETWORK_FILTERS as readonly string[]).includes(k)) throw new UsageError(`invalid --filter ${JSON.stringify(f)}: the keys are ${NETWORK_FILTERS.join(', ')}`);
    byKey.set(k, [...(byKey.get(k) ?? []), f.slice(i + 1)]);
  }
  const builtin = (n: NetworkRecord): boolean => PREDEFINED[n.name] !== undefined;
  for (const v of byKey.get('type') ?? []) if (v !== 'custom' && v !== 'builtin') throw new UsageError(`invalid --filter "type=${v}": custom or builtin`);
  for (const v of byKey.get('dangling') ?? []) if (!['true', 'false', '1', '0'].includes(v)) throw new UsageError(`invalid --filter "dangling=${v}": true or false`);
  const test: Record<(typeof NETWORK_FILTERS)[number], (n: NetworkRecord, v: string) => boolean> = {
    driver: (n, v) => n.driver === v,
    scope: (n, v) => n.scope === v,
    name: (n, v) => filterMatch(v, n.name),
    id: (n, v) => filterMatch(v, n.id),
    type: (n, v) => builtin(n) === (v === 'builtin'),
    // docker: a dangling network is a custom one no container uses
    dangling: (n, v) => (!builtin(n) && endpoints(n) === 0) === (v === 'true' || v === '1'),
    label: (n, v) => {
      const j = v.indexOf('=');
      return j < 0 ? v in n.labels : n.labels[v.slice(0, j)] === v.slice(j + 1);
    },
  };
  return nets.filter((n) =>
    [...byKey].every(([k, vs]) => (k === 'label' ? vs.every((v) => test.label(n, v)) : vs.some((v) => test[k as (typeof NETWORK_FILTERS)[number]](n, v)))),
  );
}

/**
 * Runs CMD in the sandbox's netns (nsenter --net, so the sandbox's mount stays ours; a host-network
 * sandbox runs it directly); resolves to its exit status, 128+N for signal N, and like a shell 127
 * (not found) or 126 (not executable) when it cannot start, with one line on `stderr`.
 */
function execIn(sb: Sandbox, cmd: string[], stderr: (s: string) => void, onChild?: (kill: (sig: NodeJS.Signals) => void) => void): Promise<number> {
  const [file, ...args] = sb.key ? ['nsenter', `--net=${sb.key}`, '--', ...cmd] : cmd;
  return new Promise((resolve) => {
    const child = spawn(file!, args, { stdio: 'inherit' });
    onChild?.((sig) => child.kill(sig));
    child.once('error', (e: NodeJS.ErrnoException) => {
      stderr(`cnm: sandbox ${JSON.stringify(sb.name)}: cannot run ${JSON.stringify(file)}: ${e.code ?? e.message}\n`);
      resolve(e.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? signalNumber(signal) : 0)));
  });
}

const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
const signalNumber = (s: NodeJS.Signals): number => SIGNALS[s] ?? 1;

const COMMANDS: Record<string, Command> = {
  'network create': {
    usage: 'cnm network create [OPTIONS] NETWORK',
    about: 'Create a network; prints its ID',
    options: {
      driver: { type: 'string', short: 'd' },
      subnet: { type: 'string', multiple: true },
      'ip-range': { type: 'string', multiple: true },
      gateway: { type: 'string', multiple: true },
      'aux-address': { type: 'string', multiple: true },
      ipv6: { type: 'boolean' },
      internal: { type: 'boolean' },
      opt: { type: 'string', short: 'o', multiple: true },
      label: { type: 'string', multiple: true },
    },
    help: [
      '  -d, --driver NAME          bridge (default), null, host, cni, overlay (needs --cluster-store)',
      '      --subnet CIDR          a subnet (repeat for more; IPv6 needs --ipv6)',
      '      --ip-range CIDR        allocate from this part of its subnet',
      '      --gateway IP           gateway of its subnet (default: the first usable address)',
      '      --aux-address NAME=IP  reserve an address (never handed out)',
      '      --ipv6                 enable IPv6',
      '      --internal             no masquerade and no default route (no way out)',
      '  -o, --opt KEY=VALUE        driver option (bridge: com.docker.network.bridge.name, ...enable_ip_masquerade,',
      '                             com.docker.network.driver.mtu; cni: cni.network=NAME; overlay: host-prefix=N, vni=N)',
      '      --label KEY=VALUE      label the network',
    ],
    async run(c) {
      exactly(c, 1, 'NETWORK');
      const ctl = await c.controller();
      const n = await ctl.newNetwork(str(c.values.driver) ?? 'bridge', c.args[0]!, {
        ipam: { subnets: strs(c.values.subnet), ipRanges: strs(c.values['ip-range']), gateways: strs(c.values.gateway), auxAddresses: keyValues('--aux-address', strs(c.values['aux-address'])) },
        ipv6: c.values.ipv6 === true,
        internal: c.values.internal === true,
        options: keyValues('--opt', strs(c.values.opt)),
        labels: keyValues('--label', strs(c.values.label).map((l) => (l.includes('=') ? l : `${l}=`))), // docker: a bare key has the value 
      });
      c.io.stdout(`${n.id}\n`);
      return 0;
    },
  },
  'network ls': {
    usage: 'cnm network ls [OPTIONS]',
    about: 'List networks',
    options: { quiet: { type: 'boolean', short: 'q' }, filter: { type: 'string', short: 'f', multiple: true }, 'no-trunc': { type: 'boolean' }, format: { type: 'string' } },
    help: [
      '  -q, --quiet            only IDs',
      '  -f, --filter K=V       name=X, id=X (X: a regular expression found in it), driver=X, label=K or label=K=V,',
      '                         scope=local, type=custom|builtin, dangling=true|false; several values of one key: any may',
      '                         match (label: all must), different keys: all must',
      '      --no-trunc         full IDs',
      "      --format json      one JSON object per line, docker's (string values)",
    ],
    async run(c) {
      exactly(c, 0, '');
      const format = str(c.values.format);
      if (format !== undefined && format !== 'json') throw new UsageError(`unsupported --format ${JSON.stringify(format)} (only json)`);
      const ctl = await c.controller();
      const nets = filterNetworks(
        (await ctl.networks()).map((n) => n.record),
        strs(c.values.filter),
        (n) => ctl.endpointRecords({ networkID: n.id }).length,
      );
      nets.sort((a, b) => a.name.localeCompare(b.name));
      const noTrunc = c.values['no-trunc'] === true;
      if (c.values.quiet === true) c.io.stdout(nets.map((n) => `${short(n.id, noTrunc)}\n`).join(''));
      else if (format === 'json')
        // docker's `{{json .}}` of its network context: every value a string, keys in order
        c.io.stdout(
          nets
            .map((n) =>
              JSON.stringify({
                CreatedAt: goTime(n.created),
                Driver: n.driver,
                ID: short(n.id, noTrunc),
                IPv6: String(n.ipv6),
                Internal: String(n.internal),
                Labels: Object.entries(n.labels)
                  .sort(([a], [b]) => a.localeCompare(b))
                  .map(([k, v]) => `${k}=${v}`)
                  .join(','),
                Name: n.name,
                Scope: n.scope,
              }) + '\n',
            )
            .join(''),
        );
      else c.io.stdout(table([['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'], ...nets.map((n) => [short(n.id, noTrunc), n.name, n.driver, n.scope])]));
      return 0;
    },
  },
  'network inspect': {
    usage: 'cnm network inspect NETWORK...',
    about: 'Show networks as a JSON array (docker network inspect)',
    options: {},
    help: [],
    async run(c) {
      atLeastOne(c, 'NETWORK');
      const ctl = await c.controller();
      const out: unknown[] = [];
      let status = 0;
      for (const ref of c.args)
        try {
          out.push((await ctl.network(ref)).inspect());
        } catch (e) {
          if (!(e instanceof CnmError) || e.kind !== 'not-found') throw e;
          c.io.stderr(`cnm: ${e.message}\n`);
          status = 1;
        }
      c.io.stdout(JSON.stringify(out, null, 4) + '\n');
      return status;
    },
  },
  'network connect': {
    usage: 'cnm network connect [--ip IP] [--ip6 IP] NETWORK SANDBOX',
    about: 'Connect a sandbox to a network',
    options: { ip: { type: 'string' }, ip6: { type: 'string' } },
    help: ['      --ip IP    this IPv4 address', '      --ip6 IP   this IPv6 address'],
    async run(c) {
      exactly(c, 2, 'NETWORK and SANDBOX');
      const ctl = await c.controller();
      const net = await ctl.network(c.args[0]!);
      await net.connect(ctl.sandbox(c.args[1]!), { ipv4: str(c.values.ip), ipv6: str(c.values.ip6) });
      return 0;
    },
  },
  'network disconnect': {
    usage: 'cnm network disconnect [-f] NETWORK SANDBOX',
    about: 'Disconnect a sandbox from a network',
    options: { force: { type: 'boolean', short: 'f' } },
    help: ['  -f, --force   succeed when not connected; also clean an endpoint whose sandbox is gone'],
    async run(c) {
      exactly(c, 2, 'NETWORK and SANDBOX');
      const ctl = await c.controller();
      const net = await ctl.network(c.args[0]!);
      const force = c.values.force === true;
      let sb: Sandbox;
      try {
        sb = ctl.sandbox(c.args[1]!);
      } catch (e) {
        if (!force || !(e instanceof CnmError) || e.kind !== 'not-found') throw e;
        // The sandbox is gone: its endpoint (named after it) is cleaned all the same.
        for (const ep of net.endpoints()) if (ep.name === c.args[1]) await ep.delete({ force: true });
        return 0;
      }
      try {
        await net.disconnect(sb);
      } catch (e) {
        if (!force || !(e instanceof CnmError) || e.kind !== 'not-found') throw e;
      }
      return 0;
    },
  },
  'network rm': {
    usage: 'cnm network rm NETWORK...',
    about: 'Remove networks (refused while endpoints are attached)',
    options: {},
    help: [],
    async run(c) {
      atLeastOne(c, 'NETWORK');
      const ctl = await c.controller();
      let status = 0;
      for (const ref of c.args)
        try {
          await (await ctl.network(ref)).delete();
          c.io.stdout(`${ref}\n`);
        } catch (e) {
          c.io.stderr(`cnm: ${errorMessage(e)}\n`);
          status = 1;
        }
      return status;
    },
  },
  'network prune': {
    usage: 'cnm network prune [-f]',
    about: 'Remove all networks without endpoints (after cleaning endpoints a killed cnm left)',
    options: { force: { type: 'boolean', short: 'f' } },
    help: ['  -f, --force   do not ask for confirmation'],
    async run(c) {
      exactly(c, 0, '');
      if (c.values.force !== true) {
        c.io.stderr('WARNING! This will remove all custom networks not used by at least one sandbox.\nAre you sure you want to continue? [y/N] ');
        if (!/^y(es)?$/i.test((c.io.readLine() ?? '').trim())) return 0;
      }
      const removed = await (await c.controller()).prune();
      if (removed.length) c.io.stdout(`Deleted Networks:\n${removed.map((n) => `${n}\n`).join('')}`);
      return 0;
    },
  },
  'sandbox create': {
    usage: 'cnm sandbox create NAME',
    about: 'Create a sandbox (a netns at /run/netns/NAME); prints its key',
    options: {},
    help: [],
    async run(c) {
      exactly(c, 1, 'NAME');
      const sb = await (await c.controller()).newSandbox(c.args[0]!);
      c.io.stdout(`${sb.key}\n`);
      return 0;
    },
  },
  'sandbox ls': {
    usage: 'cnm sandbox ls [-q]',
    about: 'List sandboxes',
    options: { quiet: { type: 'boolean', short: 'q' } },
    help: ['  -q, --quiet   only IDs'],
    async run(c) {
      exactly(c, 0, '');
      const ctl = await c.controller();
      const nets = new Map((await ctl.networkRecords()).map((n) => [n.id, n.name]));
      const sbs = ctl.sandboxes();
      if (c.values.quiet === true) c.io.stdout(sbs.map((s) => `${short(s.id)}\n`).join(''));
      else
        c.io.stdout(
          table([
            ['SANDBOX ID', 'NAME', 'KEY', 'NETWORKS'],
            ...sbs.map((s) => [short(s.id), s.name, s.key || '(host)', s.endpoints().map((e) => `${nets.get(e.record.networkID) ?? '?'}:${e.record.ifName ?? '-'}`).join(',')]),
          ]),
        );
      return 0;
    },
  },
  'sandbox rm': {
    usage: 'cnm sandbox rm NAME...',
    about: 'Remove sandboxes (every network is left first, then the netns goes)',
    options: {},
    help: [],
    async run(c) {
      atLeastOne(c, 'NAME');
      const ctl = await c.controller();
      let status = 0;
      for (const ref of c.args)
        try {
          await ctl.sandbox(ref).delete();
          c.io.stdout(`${ref}\n`);
        } catch (e) {
          c.io.stderr(`cnm: ${errorMessage(e)}\n`);
          status = 1;
        }
      return status;
    },
  },
  'sandbox exec': {
    usage: 'cnm sandbox exec NAME -- CMD...',
    about: "Run a command in a sandbox's network namespace; exits with its status",
    options: {},
    help: [],
    takesCommand: true,
    async run(c) {
      exactly(c, 1, 'NAME');
      return execIn((await c.controller()).sandbox(c.args[0]!), c.cmd, c.io.stderr);
    },
  },
  run: {
    usage: 'cnm run [--name NAME] --network NET [--network NET2]... [--ip IP] [--ip6 IP] [--rm] -- CMD...',
    about: "Create a sandbox, connect it, run CMD in it; exits with CMD's status (125: cnm failed)",
    options: { name: { type: 'string' }, network: { type: 'string', multiple: true }, ip: { type: 'string' }, ip6: { type: 'string' }, rm: { type: 'boolean' } },
    help: [
      '      --name NAME     the sandbox name (default cnm-<random>)',
      '      --network NET   connect to NET (repeat: eth0, eth1, ... in this order; "host" runs in the host netns)',
      '      --ip IP         IPv4 address on the first network',
      '      --ip6 IP        IPv6 address on the first network',
      '      --rm            disconnect and remove the sandbox afterwards (also when CMD fails or is interrupted)',
    ],
    takesCommand: true,
    async run(c) {
      exactly(c, 0, '');
      const nets = strs(c.values.network);
      if (!nets.length) throw new UsageError('needs --network');
      return runCommand(c, nets);
    },
  },
};

/** cnm run: see the command's help. Failures of cnm itself exit 125. */
async function runCommand(c: Ctx, netRefs: string[]): Promise<number> {
  const ctl = await c.controller();
  const networks: Network[] = [];
  for (const r of netRefs) networks.push(await ctl.network(r));
  const hostNetwork = networks.some((n) => n.record.driver === PREDEFINED.host || ctl.driver(n.record.driver).hostNetwork);
  let interrupted: NodeJS.Signals | null = null;
  let killChild: ((sig: NodeJS.Signals) => void) | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted ??= sig;
    killChild?.(sig);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let sb: Sandbox | null = null;
  let started = false;
  try {
    sb = await ctl.newSandbox(str(c.values.name) ?? `cnm-${randomHex(4)}`, { hostNetwork });
    for (const [i, n] of networks.entries()) {
      if (interrupted) break;
      await n.connect(sb, i === 0 ? { ipv4: str(c.values.ip), ipv6: str(c.values.ip6) } : {});
    }
    if (interrupted) return 128 + signalNumber(interrupted);
    started = true;
    return await execIn(sb, c.cmd, c.io.stderr, (kill) => (killChild = kill));
  } catch (e) {
    c.io.stderr(`cnm: ${errorMessage(e)}\n`);
    return 125;
  } finally {
    // A run that never got to CMD leaves nothing, --rm or not: a half-connected sandbox is of no
    // use and would hold its name (docker keeps such a container in state Created).
    if (sb && (c.values.rm === true || !started))
      try {
        await sb.delete();
      } catch (e) {
        c.io.stderr(`cnm: removing sandbox ${JSON.stringify(sb.name)}: ${errorMessage(e)}\n`);
      }
    for (const s of signals) process.off(s, onSignal);
  }
}

const GROUPS: Record<string, string> = { network: 'Manage networks', sandbox: 'Manage sandboxes' };

function mainHelp(): string {
  const lines = ['usage: cnm [global options] COMMAND', "Docker's Container Network Model (networks, endpoints, sandboxes) on CNI", '', 'commands:'];
  for (const [name, cmd] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(20)}${cmd.about}`);
  lines.push(`  ${'docker-plugin'.padEnd(20)}Serve a Docker network and IPAM driver (see cnm docker-plugin --help)`);
  return [...lines, '', ...GLOBAL_HELP, ''].join('\n');
}

function groupHelp(group: string): string {
  const lines = [`usage: cnm ${group} COMMAND`, GROUPS[group]!, '', 'commands:'];
  for (const [name, cmd] of Object.entries(COMMANDS)) if (name.startsWith(`${group} `)) lines.push(`  ${name.slice(group.length + 1).padEnd(12)}${cmd.about}`);
  return [...lines, '', ...GLOBAL_HELP, ''].join('\n');
}

function commandHelp(cmd: Command): string {
  return [`usage: ${cmd.usage}`, cmd.about, ...(cmd.help.length ? ['', 'options:', ...cmd.help] : []), '', ...GLOBAL_HELP, ''].join('\n');
}

/** Runs one cnm command line; returns the exit status. */
export async function cnm(argv: string[], io: CnmIO = processIO()): Promise<number> {
  if (argv[0] === '--version') {
    io.stdout(`cnm: ${versionLine()}\n`);
    return 0;
  }
  // Pass 1: only the global options are known; the first positionals name the command.
  let tokens;
  try {
    tokens = parseArgs({ args: argv, options: GLOBAL, strict: false, allowPositionals: true, tokens: true }).tokens;
  } catch (e) {
    io.stderr(`cnm: ${errorMessage(e)} (see cnm --help)\n`);
    return 1;
  }
  const words: Array<{ index: number; value: string }> = [];
  for (const t of tokens) {
    if (t.kind === 'option-terminator') break;
    if (t.kind === 'positional' && words.length < 2) words.push({ index: t.index, value: t.value });
  }
  // --help anywhere before `--` (after it, it belongs to CMD).
  const end = tokens.find((t) => t.kind === 'option-terminator')?.index ?? argv.length;
  const wantsHelp = tokens.some((t) => t.kind === 'option' && t.name === 'help' && t.index < end);
  const group = words[0]?.value;
  let name: string | undefined;
  if (group && GROUPS[group]) name = words[1] ? `${group} ${words[1].value}` : undefined;
  else name = group;
  // The Docker plugin daemon has a command line of its own, loaded only when it runs.
  if (name === 'docker-plugin') return (await import('./docker/server')).dockerPluginMain(argv.filter((_, i) => i !== words[0]!.index), io.env);
  if (!group || (GROUPS[group] && !words[1])) {
    if (wantsHelp) io.stdout(group ? groupHelp(group) : mainHelp());
    else io.stderr(`cnm${group ? ` ${group}` : ''}: needs a command (see cnm${group ? ` ${group}` : ''} --help)\n`);
    return wantsHelp ? 0 : 1;
  }
  const cmd = name ? COMMANDS[name] : undefined;
  if (!cmd) {
    io.stderr(`cnm: unknown command ${JSON.stringify(name)} (see cnm --help)\n`);
    return 1;
  }
  if (wantsHelp) {
    io.stdout(commandHelp(cmd));
    return 0;
  }
  // Pass 2: strict, with the command's options, on the arguments without the command words.
  const used = new Set(words.slice(0, GROUPS[group] ? 2 : 1).map((w) => w.index));
  const rest = argv.filter((_, i) => !used.has(i));
  const dashdash = rest.indexOf('--');
  const head = dashdash < 0 ? rest : rest.slice(0, dashdash);
  const tail = dashdash < 0 ? [] : rest.slice(dashdash + 1);
  try {
    if (cmd.takesCommand && !tail.length) throw new UsageError('needs -- CMD...');
    if (!cmd.takesCommand && dashdash >= 0) head.push(...tail);
    const { values, positionals } = parseArgs({ args: head, options: { ...GLOBAL, ...cmd.options }, strict: true, allowPositionals: true });
    const env = io.env;
    const stateDir = str(values['state-dir']) || env.CNM_STATE_DIR || DEFAULT_STATE_DIR;
    const cniPath = (str(values['cni-path']) ?? env.CNI_PATH ?? '/opt/cni/bin').split(':').filter(Boolean);
    const confDir = str(values['conf-dir']) || env.NETCONFPATH || '/etc/cni/net.d';
    const pools = strs(values['default-address-pool']).map(parseAddressPool);
    const clusterStore = str(values['cluster-store']);
    const overlayStateDir = str(values['overlay-state-dir']) || DEFAULT_OVERLAY_STATE_DIR;
    const log = loggerFromEnv(env, 'cnm');
    let ctl: Promise<NetworkController> | undefined;
    // The etcd client is loaded only for --cluster-store.
    const cluster = async () => (clusterStore ? await (await import('./cluster-store')).clusterOptions(clusterStore, overlayStateDir) : { stores: {}, drivers: [] });
    const controller = (): Promise<NetworkController> =>
      (ctl ??= log.step('open', async () => {
        const cl = await cluster();
        return NetworkController.open({ stateDir, cniPath, confDir, executor: ownPluginsExecutor(), log, ...(pools.length ? { defaultAddressPools: pools } : {}), stores: cl.stores, drivers: cl.drivers });
      }));
    return await cmd.run({ io, values, args: positionals, cmd: tail, controller });
  } catch (e) {
    const parseError = parseArgsProblem(e);
    if (e instanceof UsageError || parseError !== undefined) io.stderr(`cnm ${name}: ${parseError ?? (e as Error).message} (usage: ${cmd.usage})\n`);
    else io.stderr(`cnm: ${errorMessage(e)}\n`);
    return name === 'run' ? 125 : 1;
  }
}
