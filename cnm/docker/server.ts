// `cnm docker-plugin`: the Docker legacy plugin daemon (docker/cli docs/extend/plugin_api.md).
// HTTP/1.1 POSTs on a unix socket `<socket-dir>/<name>.sock`, where dockerd discovers it by name;
// one JSON body per call, one JSON answer. Errors are HTTP 500 with {"Err": msg}, which dockerd
// shows as "NetworkDriver.<Method>: msg" (IpamDriver.* likewise), the method named for the user.
// node:http and node:net are imported where used: the bundle would otherwise load them at every
// plugin's start (esbuild hoists a node built-in's static import to the top of the one bundle).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../../shared/cni/errors';
import { processExecutor, type Executor } from '../../shared/cni/exec';
import { Runner } from '../../runner/runner';
import { ownPluginsExecutor } from '../../plugins/registry';
import { NetworkDriver } from './driver';
import { IpamDriver } from './ipam';
import { bodyObject, type Json } from './protocol';
import { PluginState } from './records';
import { collectPhases, enablePhases } from './timings';

export const DEFAULT_SOCKET_DIR = '/run/docker/plugins';
export const DEFAULT_STATE_DIR = '/var/lib/cnikit/cnm';
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_CNI_PATH = '/opt/cni/bin';
const MAX_BODY = 1 << 20;
/** Docker's plugin names (the socket's file stem): lower-case, as `docker plugin` requires. */
const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export interface PluginOptions {
  name: string;
  socketDir: string;
  stateDir: string;
  confDir: string;
  cniPath: string[];
  /** per CNI plugin process (the runner kills it after this); Docker itself waits forever (cnm-shim.md §1.2) */
  timeoutMs: number;
  /** how the chain's plugins run; default: ours in-process, others exec'd */
  executor?: Executor;
  /** one line per request and per notable event; default: stderr */
  log?: (line: string) => void;
  /** period of the garbage collection after the start-up one; 0: none */
  gcIntervalMs?: number;
}

export interface RunningPlugin {
  socket: string;
  close(): Promise<void>;
}

/**
 * Starts the plugin: takes the state directory's lock, collects garbage left by an earlier run,
 * removes a stale socket (one nobody answers on) and listens. Throws an Error naming the cause
 * (a bad name, a live socket of another process, a held state lock, a state directory in the way).
 */
export async function startDockerPlugin(o: PluginOptions): Promise<RunningPlugin> {
  if (!NAME_RE.test(o.name)) throw new Error(`--name ${JSON.stringify(o.name)}: a plugin name is 1-64 of a-z 0-9 _ . - (Docker looks it up in lower case)`);
  const log = o.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const state = new PluginState(o.stateDir);
  try {
    await state.lockInstance();
  } catch (e) {
    state.close();
    throw new Error(`state directory ${o.stateDir}: ${errorMessage(e)}`, { cause: e });
  }
  const runner = new Runner({
    path: o.cniPath,
    cacheDir: state.cacheDir,
    timeoutMs: o.timeoutMs,
    executor: o.executor ?? ownPluginsExecutor(),
    onStderr: (c) => log(`plugin: ${c.toString().trimEnd()}`),
  });
  const network = new NetworkDriver({ name: o.name, state, runner, confDir: o.confDir, cniPath: o.cniPath, log });
  const ipam = new IpamDriver({ state });
  const handlers: Record<string, (b: Json) => Promise<Json>> = {
    'Plugin.Activate': async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }),
    ...network.handlers,
    ...ipam.handlers,
  };
  let server: Server | undefined;
  let gcTimer: NodeJS.Timeout | undefined;
  try {
    await network.collectGarbage(0, true);
    mkdirSync(o.socketDir, { recursive: true, mode: 0o700 });
    const socket = join(o.socketDir, `${o.name}.sock`);
    await removeStaleSocket(socket);
    await enablePhases();
    const { createServer } = await import('node:http');
    const closing = { now: false };
    server = createServer((req, res) => void serve(handlers, log, req, res, closing));
    // Docker holds a connection per plugin client; keep-alive must not outlive a stopped daemon.
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(socket, () => resolve());
    });
    chmodSync(socket, 0o660);
    log(`docker-plugin ${o.name}: serving ${socket} (state ${state.path}, conf ${o.confDir}, CNI path ${o.cniPath.join(':')})`);
    if (o.gcIntervalMs) {
      gcTimer = setInterval(() => void network.collectGarbage(o.gcIntervalMs!, false).catch((e) => log(`gc: ${errorMessage(e)}`)), o.gcIntervalMs);
      gcTimer.unref();
    }
    const srv = server;
    return {
      socket,
      // Requests in flight finish (an endpoint half made would be the next start's garbage), bounded
      // by the plugin timeout; idle keep-alive connections close at once, busy ones after their answer.
      close: async () => {
        clearInterval(gcTimer);
        closing.now = true;
        const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
        srv.closeIdleConnections();
        const drain = setTimeout(() => srv.closeAllConnections(), o.timeoutMs);
        await closed;
        clearTimeout(drain);
        try {
          unlinkSync(socket);
        } catch {
          /* already gone */
        }
        state.close();
      },
    };
  } catch (e) {
    server?.close();
    state.close();
    throw e;
  }
}

/** Unlinks a socket file nobody listens on (a killed predecessor's); refuses one that answers. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const { createConnection } = await import('node:net');
  const live = await new Promise<boolean>((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path}: another process serves this plugin socket`);
  unlinkSync(path);
}

const shortIds = (b: Json): string =>
  ['NetworkID', 'EndpointID', 'PoolID', 'Address']
    .filter((k) => typeof b[k] === 'string' && b[k] !== '')
    .map((k) => `${k}=${k.endsWith('ID') && k !== 'PoolID' ? (b[k] as string).slice(0, 12) : (b[k] as string)}`)
    .join(' ');

async function serve(handlers: Record<string, (b: Json) => Promise<Json>>, log: (l: string) => void, req: IncomingMessage, res: ServerResponse, closing: { now: boolean }): Promise<void> {
  const started = process.hrtime.bigint();
  const method = (req.url ?? '').replace(/^\//, '');
  let body: Json = {};
  let status = 200;
  let answer: Json = {};
  const { phases } = await collectPhases(async () => {
    try {
      const handler = req.method === 'POST' && Object.hasOwn(handlers, method) ? handlers[method] : undefined;
      const text = await readBody(req);
      if (!handler) {
        status = 404;
        answer = { Err: `${req.method} ${req.url}: not implemented by this plugin` };
      } else {
        // EndpointOperInfo never fails (an error there aborts the container's start): not even on a bad body.
        body = method === 'NetworkDriver.EndpointOperInfo' ? tryBodyObject(text) : bodyObject(text);
        answer = await handler(body);
      }
    } catch (e) {
      status = 500;
      answer = { Err: errorMessage(e) };
    }
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const took = `${ms.toFixed(1)} ms${phases.length ? `: ${phases.join(', ')}` : ''}`;
  log(`${method} ${shortIds(body)}${shortIds(body) ? ' ' : ''}-> ${status === 200 ? 'ok' : `${status} ${String(answer.Err)}`} (${took})`);
  const out = JSON.stringify(answer);
  res.writeHead(status, { 'Content-Type': 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(out), ...(closing.now ? { Connection: 'close' } : {}) });
  res.end(out);
}

function tryBodyObject(text: string): Json {
  try {
    return bodyObject(text);
  } catch {
    return {};
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(new Error(`request body larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const USAGE = `usage: cnm docker-plugin --name NAME [--socket-dir ${DEFAULT_SOCKET_DIR}] [--state-dir DIR]
                         [--cni-path DIR[:DIR]] [--conf-dir ${DEFAULT_CONF_DIR}] [--timeout SECONDS] [--exec-plugins]
Serves the Docker network and IPAM driver NAME on <socket-dir>/NAME.sock in the foreground
(docker network create -d NAME [--ipam-driver NAME] ...), one log line per request on stderr.
  --state-dir   records, result cache and address stores (default $CNM_STATE_DIR, else ${DEFAULT_STATE_DIR})
  --cni-path    plugin directories (default $CNI_PATH, else ${DEFAULT_CNI_PATH})
  --conf-dir    where -o cni.network=X finds conflist X (default $NETCONFPATH, else ${DEFAULT_CONF_DIR})
  --timeout     bound of each plugin process's run (default 60)
  --exec-plugins  exec our own plugins too (default: those in --cni-path run in-process, others are exec'd)
Start it before dockerd and stop it after (SIGTERM/SIGINT remove the socket); its state survives restarts.
`;

/**
 * The `docker-plugin` subcommand: parses `argv`, runs until SIGTERM/SIGINT, returns the exit code
 * (0 after a signal, 1 when it cannot start: one line on stderr; 2 for a usage error).
 */
export async function dockerPluginMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        name: { type: 'string' },
        'socket-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        'cni-path': { type: 'string' },
        'conf-dir': { type: 'string' },
        timeout: { type: 'string' },
        'exec-plugins': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`cnm docker-plugin: ${errorMessage(e)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const timeout = Number(values.timeout ?? '60');
  if (!values.name || !Number.isFinite(timeout) || timeout <= 0) {
    process.stderr.write(`cnm docker-plugin: ${values.name ? `--timeout ${values.timeout}: not a positive number of seconds` : '--name is required'}\n${USAGE}`);
    return 2;
  }
  let running: RunningPlugin;
  try {
    running = await startDockerPlugin({
      name: values.name,
      socketDir: values['socket-dir'] ?? DEFAULT_SOCKET_DIR,
      stateDir: values['state-dir'] ?? env.CNM_STATE_DIR ?? DEFAULT_STATE_DIR,
      confDir: values['conf-dir'] ?? env.NETCONFPATH ?? DEFAULT_CONF_DIR,
      cniPath: (values['cni-path'] ?? env.CNI_PATH ?? DEFAULT_CNI_PATH).split(':').filter(Boolean),
      timeoutMs: timeout * 1000,
      gcIntervalMs: 60_000,
      ...(values['exec-plugins'] ? { executor: processExecutor } : {}),
    });
  } catch (e) {
    process.stderr.write(`cnm docker-plugin: ${errorMessage(e)}\n`);
    return 1;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  process.stderr.write(`docker-plugin ${values.name}: ${signal}, stopping\n`);
  await running.close();
  return 0;
}
