// `cnikit overlay-agent`: the command line of the overlay agent (overlay/agent.ts). Loaded with a
// dynamic import from main.ts, so plugins never pay for the etcd client at start-up.
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { errorMessage } from '../shared/cni/errors';
import { writeAll } from '../shared/cni/skel';
import { parseIP } from '../shared/ip';
import { createLogger, LOG_LEVELS, type LogLevel } from '../shared/log';
import { OverlayAgent } from './agent';
import { parseEndpoints } from './etcd';
import { DEFAULT_STATE_DIR } from './lease-file';
import { DEFAULT_PREFIX } from './network';

const DEFAULT_TTL = 30;

const USAGE = `usage: cnikit overlay-agent --etcd http://IP:2379[,http://IP2:2379...] --underlay-ip ADDR [options]
  Runs on every host: leases a host subnet for every overlay network defined in etcd, creates its
  VXLAN device and programs routes/neighbours/FDB entries towards every other host's subnet.
  --etcd URLS          etcd client endpoints, comma-separated
  --underlay-ip ADDR   this host's address on the network that joins the hosts (the local VTEP)
  --name HOST          this host's name in etcd (default: the hostname)
  --state-dir DIR      where host leases are written for the overlay plugin and cnm (default ${DEFAULT_STATE_DIR})
  --lease-ttl SECONDS  etcd lease TTL: a host that dies loses its subnets this long after (default ${DEFAULT_TTL})
  --etcd-prefix P      etcd key prefix (default ${DEFAULT_PREFIX})
  --log-level LEVEL    error|warn|info|debug (default info), to stderr
Stops on SIGTERM/SIGINT and leaves the data plane as it is: a restarted agent takes it over.
`;

/** Runs the agent until SIGTERM/SIGINT; 0 then, 2 for a bad command line, 1 when the host is unusable. */
export async function overlayAgent(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        etcd: { type: 'string' },
        'underlay-ip': { type: 'string' },
        name: { type: 'string' },
        'state-dir': { type: 'string' },
        'lease-ttl': { type: 'string' },
        'etcd-prefix': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    // parseArgs' own errors are TypeErrors (ERR_PARSE_ARGS_*) whose message is the point
    // ("--name -x": the value starts with a dash, write --name=-x).
    return usageError((e as Error).message.replace(/\n/g, ' '));
  }
  if (values.help) {
    writeAll(1, USAGE);
    return 0;
  }
  const str = (k: string): string | undefined => values[k] as string | undefined;
  if (!str('etcd')) return usageError('--etcd is required');
  if (!str('underlay-ip')) return usageError('--underlay-ip is required');
  let hosts: string[];
  try {
    hosts = parseEndpoints('--etcd', str('etcd')!);
  } catch (e) {
    return usageError(errorMessage(e));
  }
  const underlayIP = parseIP(str('underlay-ip')!);
  if (!underlayIP || underlayIP.family !== 4) return usageError(`--underlay-ip ${JSON.stringify(str('underlay-ip'))}: not an IPv4 address`);
  const ttlText = str('lease-ttl') ?? String(DEFAULT_TTL);
  const ttl = Number(ttlText);
  if (!/^\d+$/.test(ttlText) || ttl < 2 || ttl > 3600) return usageError(`--lease-ttl ${JSON.stringify(ttlText)}: must be whole seconds, 2..3600`);
  let prefix = str('etcd-prefix') ?? DEFAULT_PREFIX;
  if (!prefix.startsWith('/')) return usageError(`--etcd-prefix ${JSON.stringify(prefix)}: must start with "/"`);
  if (!prefix.endsWith('/')) prefix += '/';
  const name = str('name') ?? hostname();
  if (!name || /[\s/]/.test(name)) return usageError(`--name ${JSON.stringify(name)}: must be non-empty, without "/" or whitespace`);
  const level = (str('log-level') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) return usageError(`--log-level ${JSON.stringify(level)}: one of ${LOG_LEVELS.join(', ')}`);
  const log = createLogger({ level, name: `overlay-agent[${process.pid}]`, write: (l) => writeStderr(l) });

  const agent = new OverlayAgent({ hosts, underlayIP, name, stateDir: str('state-dir') ?? DEFAULT_STATE_DIR, ttl, prefix, log });
  const stop = (): void => {
    log.info('stopping; the data plane stays');
    agent.stop();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await agent.run();
    return 0;
  } catch (e) {
    log.error(errorMessage(e));
    if (e instanceof Error && e.stack) log.debug(e.stack);
    return 1;
  } finally {
    agent.close();
  }
}

function usageError(msg: string): number {
  writeStderr(`overlay-agent: ${msg}\n${USAGE}`);
  return 2;
}

function writeStderr(s: string): void {
  try {
    writeAll(2, s);
  } catch {
    /* nowhere left to say it */
  }
}
