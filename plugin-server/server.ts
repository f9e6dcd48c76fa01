// The node's plugin server (`cnikit plugin-server`): a long-running process that runs the plugins'
// verbs for plugin processes the runtime exec's (client.ts), warm, in-process, as the CNM daemon and
// the Docker plugin run theirs. The runtime still execs /opt/cni/bin/<plugin> for every verb, with
// the usual environment and stdin; that process only forwards them here and prints what the verb
// printed, so the protocol a runtime sees is unchanged, and without a server every plugin runs
// itself as before. The same design as Multus's thick plugin or Antrea's CNI server, with the
// exec'd process kept to a bun start and one round trip.
//
// Who is served: a client of the server's effective uid (SO_PEERCRED), in the server's network
// namespace (the socket is abstract, so only that netns reaches it), mount and user namespaces
// (paths in the config and environment then name the same files), exec'd from the same executable
// file (an upgraded /opt/cni/bin/cnikit is not served by the old build). Anything else is declined
// before the verb starts, and the client runs the plugin itself.
//
// Each of N worker threads blocks in accept(2) on the one listening socket and runs one verb at a
// time: setns(2) moves only the calling thread, and a plugin's netns work is synchronous within its
// verb (shared/linux/netns.ts), so N verbs run at once as N plugin processes would.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { accept4, AF_UNIX, bind, close, listen, peerCredentials, setSocketTimeout, SHUT_RDWR, shutdown, SO_RCVTIMEO, SO_SNDTIMEO, SOCK_CLOEXEC, SOCK_STREAM, socket } from '../shared/linux/libc';
import { EADDRINUSE, EBADF, EINVAL, errnoMessage } from '../shared/linux/netlink/errno';
import { workerThreads } from '../shared/lazy-builtins';
import { entryModule } from '../shared/linux/netns-worker';
import { runPlugin, stdoutIsGone, type Env, type Outcome as RunOutcome, type Plugin } from '../shared/cni/skel';
import { errorMessage, parseArgsProblem } from '../shared/cni/errors';
import { versionLine } from '../shared/self';
import { loggerFromEnv } from '../shared/log';
import { loadPlugin, ownPluginsExecutor } from '../plugins/registry';
import { jsonBytes, parseJsonFrame, readFrame, SERVER_THREAD_MARK, SOCKET_NAME, socketAddress, writeFrame, type Answer, type Outcome } from './protocol';

const DEFAULT_THREADS = 4;
const MAX_THREADS = 64;
const BACKLOG = 128;
// A client sends its Hello and stdin as soon as it connects; one that does not is stuck or gone.
const IO_TIMEOUT_MS = 10_000;
// How long a stopping server waits for verbs in flight (a runtime's own timeout for a plugin is longer).
const STOP_GRACE_MS = 30_000;
// A thread that dies this soon after it started would die again: the server stops instead of looping.
const MIN_THREAD_LIFE_MS = 1000;

const HELP = `usage: plugin-server [--threads N]
Runs the CNI plugins' verbs for the plugin processes exec'd in this network namespace, warm and
in-process: each exec'd plugin hands its verb here and prints the outcome. Runs until SIGTERM or
SIGINT (verbs in flight finish first); without it every plugin runs its verb itself.
  --threads N   verbs run at once (1-${MAX_THREADS}, default ${DEFAULT_THREADS}); a plugin that finds every
                thread busy for 1 s runs its verb itself
  --version     print the version and build ID (plugins of another build are not served)
  -h, --help    print this help
`;

/** The `plugin-server` tool: listens on @${SOCKET_NAME} and serves until SIGTERM/SIGINT. Returns the exit code (2: usage, 1: cannot listen). */
export async function pluginServer(argv: string[]): Promise<number> {
  let threads = DEFAULT_THREADS;
  try {
    const { values } = parseArgs({ args: argv, options: { threads: { type: 'string' }, version: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
    if (values.help || values.version) {
      process.stdout.write(values.help ? HELP : `${versionLine()}\n`);
      return 0;
    }
    if (values.threads !== undefined) {
      threads = Number(values.threads);
      if (!/^\d+$/.test(values.threads) || threads < 1 || threads > MAX_THREADS) throw new Error(`--threads: ${JSON.stringify(values.threads)} is not a number from 1 to ${MAX_THREADS}`);
    }
  } catch (e) {
    process.stderr.write(`plugin-server: ${parseArgsProblem(e) ?? errorMessage(e)} (see plugin-server --help)\n`);
    return 2;
  }
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bound = fd < 0 ? fd : bind(fd, socketAddress());
  const listening = bound < 0 ? bound : listen(fd, BACKLOG);
  if (listening < 0) {
    const why = -listening === EADDRINUSE ? 'another plugin server already listens in this network namespace' : errnoMessage(-listening);
    process.stderr.write(`plugin-server: cannot listen on @${SOCKET_NAME}: ${why}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    const running = new Set<Worker>();
    let stopping = false;
    // Stops accepting; verbs in flight finish (a verb cut short is a half-wired pod), for at most
    // STOP_GRACE_MS. shutdown(2) of the listening socket wakes every thread blocked in accept(2)
    // (close(2) would not), and each thread ends once its verb is done.
    const stop = (code: number): void => {
      if (stopping) return;
      stopping = true;
      shutdown(fd, SHUT_RDWR);
      const done = (): void => {
        close(fd);
        resolve(code);
      };
      if (running.size === 0) return done();
      const timer = setTimeout(() => {
        process.stderr.write(`plugin-server: ${running.size} verbs still running after ${STOP_GRACE_MS} ms; stopping anyway\n`);
        done();
      }, STOP_GRACE_MS);
      for (const w of running)
        w.on('exit', () => {
          if (running.size === 0) {
            clearTimeout(timer);
            done();
          }
        });
    };
    // Each thread's connection in flight (-1: none), so that when a thread dies mid-verb its client
    // gets an end of file (and reports code 999) rather than waiting forever: fds are the process's.
    const inFlight = new Int32Array(new SharedArrayBuffer(4 * threads)).fill(-1);
    const startThread = (slot: number): void => {
      const started = Date.now();
      const w: Worker = new (workerThreads().Worker)(entryModule(), { workerData: { [SERVER_THREAD_MARK]: true, fd, inFlight, slot } satisfies ThreadData & { [SERVER_THREAD_MARK]: true } });
      running.add(w);
      w.on('error', (e) => process.stderr.write(`plugin-server: a thread failed: ${errorMessage(e)}\n`));
      w.on('exit', () => {
        running.delete(w);
        const conn = Atomics.exchange(inFlight, slot, -1);
        if (conn >= 0) {
          shutdown(conn, SHUT_RDWR);
          close(conn);
        }
        if (stopping) return;
        if (Date.now() - started < MIN_THREAD_LIFE_MS) {
          process.stderr.write('plugin-server: a thread ended right after it started; stopping\n');
          return stop(1);
        }
        startThread(slot); // after the thread found itself in another netns than its own, or a crash
      });
    };
    for (let i = 0; i < threads; i++) startThread(i);
    process.once('SIGTERM', () => stop(0));
    process.once('SIGINT', () => stop(0));
    process.stderr.write(`plugin-server: listening on @${SOCKET_NAME} with ${threads} thread${threads === 1 ? '' : 's'} (pid ${process.pid})\n`);
    // `ip netns exec` gives its command a mount namespace of its own: no runtime's plugin is in it.
    if (readlinkOr('/proc/self/ns/mnt') !== readlinkOr('/proc/1/ns/mnt'))
      process.stderr.write('plugin-server: warning: this server runs in another mount namespace than PID 1 (ip netns exec?); only plugins in the same one are served (use nsenter --net)\n');
  });
}

function readlinkOr(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** What a server thread gets from the main thread. */
interface ThreadData {
  fd: number; // the listening socket
  inFlight: Int32Array; // shared: each thread's connection in flight, -1 when none
  slot: number; // this thread's index in inFlight
}

/**
 * A server thread: accepts connections on the listening socket it was given and serves each, one at
 * a time, until the socket is shut down. A thread that finds itself in another netns than its own
 * after a verb (the verb could not switch back: a NetnsRestoreError, whatever caught it) ends, and
 * the main thread starts another: nothing more may run there.
 */
export function servePluginRequests(): void {
  const { fd, inFlight, slot } = workerThreads().workerData as ThreadData;
  const self = identity('self');
  const home = readlinkSync('/proc/thread-self/ns/net');
  void (async () => {
    for (;;) {
      const conn = accept4(fd, SOCK_CLOEXEC); // blocks this thread only
      if (conn < 0) {
        if (conn === -EBADF || conn === -EINVAL) return process.exit(0); // the listening socket was shut down: the server stops (in a worker: this thread ends)
        continue; // ECONNABORTED, EMFILE...: that client gets ECONNRESET and runs its plugin itself
      }
      Atomics.store(inFlight, slot, conn);
      try {
        await serveConnection(conn, self);
      } catch {
        /* the client went away mid-frame: nothing to answer */
      } finally {
        Atomics.store(inFlight, slot, -1); // before close: the fd number may be reused at once
        close(conn);
      }
      if (readlinkSync('/proc/thread-self/ns/net') !== home) return process.exit(1);
    }
  })();
}

/** What must be the same for a client and the server: the executable file, namespaces, privileges. */
interface Identity {
  exe: string; // device:inode of the executable (it stays the running file's after an upgrade renames a new one into place)
  mnt: string; // e.g. mnt:[4026531841]
  user: string;
  root: string; // the root directory (a chroot), where absolute paths start
  // CapEff, NoNewPrivs, Seccomp (/proc/<pid>/status) and the LSM label: a root client confined by
  // its service (fewer capabilities, a seccomp filter, an AppArmor or SELinux domain) is not
  // handed the server's unconfined privileges; and the umask the files a verb writes are made with
  privileges: string;
}

const PRIVILEGE_LINES = /^(Umask|CapEff|NoNewPrivs|Seccomp):.*$/gm;

/** The identity of the process `pid` (or this one) from /proc. Throws (ENOENT, EACCES) when it is not visible. */
function identity(pid: number | 'self'): Identity {
  const exe = statSync(`/proc/${pid}/exe`);
  const status = readFileSync(`/proc/${pid}/status`, 'latin1').match(PRIVILEGE_LINES) ?? [];
  let label = '';
  try {
    label = readFileSync(`/proc/${pid}/attr/current`, 'latin1');
  } catch {
    /* no LSM */
  }
  return { exe: `${exe.dev}:${exe.ino}`, mnt: readlinkSync(`/proc/${pid}/ns/mnt`), user: readlinkSync(`/proc/${pid}/ns/user`), root: readlinkSync(`/proc/${pid}/root`), privileges: [...status, label].join('\n') };
}

/**
 * Why the server does not run this client's verb, or undefined when it does. `peer` passed the uid
 * check already; a client of another uid is declined before anything it sent is read.
 */
function declineReason(peer: { pid: number }, self: Identity): string | undefined {
  let them: Identity;
  try {
    if (peer.pid <= 0) throw new Error('no pid');
    them = identity(peer.pid);
  } catch {
    return "the client's process is not visible to the server (another PID namespace)";
  }
  if (them.mnt !== self.mnt) return 'the client runs in another mount namespace';
  if (them.user !== self.user) return 'the client runs in another user namespace';
  if (them.exe !== self.exe) return "the client's executable is not the server's (installed again since the server started?)";
  if (them.root !== self.root) return "the client's root directory is not the server's";
  if (them.privileges !== self.privileges) return "the client's umask, capabilities, seccomp filter or security label are not the server's";
  return stdoutIsGone(peer.pid) ?? undefined; // the client reports that itself
}

/** Serves one connection (protocol.ts). Throws when the client went away mid-frame. */
async function serveConnection(conn: number, self: Identity): Promise<void> {
  setSocketTimeout(conn, SO_RCVTIMEO, IO_TIMEOUT_MS);
  setSocketTimeout(conn, SO_SNDTIMEO, IO_TIMEOUT_MS);
  const decline = (declined: string): void => writeFrame(conn, jsonBytes({ declined } satisfies Answer));
  // The socket is abstract: any user in the netns can connect. Another uid is answered at once, its
  // frames unread (its config is not ours to run, and it cannot hold a thread for IO_TIMEOUT_MS).
  const peer = peerCredentials(conn);
  if (typeof peer === 'number') return decline(`cannot read the client's credentials: ${errnoMessage(-peer)}`);
  const uid = process.geteuid?.();
  if (peer.uid !== uid) return decline(`the client's uid ${peer.uid} is not the server's (${uid})`);
  // Read before answering: a client still writing its Hello when the connection closes gets EPIPE, not the answer.
  const hello = parseJsonFrame(readFrame(conn));
  const declined = declineReason(peer, self);
  if (declined !== undefined) return decline(declined);
  const plugin: Plugin | undefined = typeof hello.plugin === 'string' ? await loadPlugin(hello.plugin) : undefined;
  if (!plugin) return decline(`no plugin ${JSON.stringify(hello.plugin)} here`);
  if (typeof hello.env !== 'object' || hello.env === null) return decline('a request without an environment');
  const env = hello.env as Env;
  // Relative paths would resolve against the server's working directory, not the client's.
  if ((env.CNI_PATH ?? '').split(':').some((d) => d !== '' && !d.startsWith('/')) || (env.CNIKIT_LOG_FILE && !env.CNIKIT_LOG_FILE.startsWith('/')))
    return decline('a relative path in CNI_PATH or CNIKIT_LOG_FILE');
  writeFrame(conn, jsonBytes({ go: true } satisfies Answer));
  const stdin = Buffer.from(readFrame(conn)); // the verb starts only now (protocol.ts)
  let stderr = '';
  const toStderr = (text: string): void => void (stderr += text);
  const run = (e: Env): Promise<RunOutcome> => runPlugin(plugin, e, () => stdin, { executor: ownPluginsExecutor(toStderr), log: loggerFromEnv(e, plugin.name, toStderr) });
  const out = await run(env);
  try {
    writeFrame(conn, jsonBytes({ exitCode: out.exitCode, stdout: out.stdout, stderr: stderr + out.stderr } satisfies Outcome));
  } catch (e) {
    // The client is gone (the runtime killed it, say on its timeout): an exec'd plugin would have
    // died mid-ADD, and the runtime's DEL may already have run, on another thread, before this ADD
    // finished. An ADD that worked but reached nobody is taken back, as that DEL would have.
    if (env.CNI_COMMAND === 'ADD' && out.exitCode === 0) await run({ ...env, CNI_COMMAND: 'DEL' });
    throw e;
  }
}
