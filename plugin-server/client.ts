// What a plugin process does first: hand the invocation to the node's plugin server (server.ts)
// when one serves this network namespace, and print what the server's run of it printed. A plugin
// exec'd by a runtime then costs a bun start and one round trip instead of loading and running its
// code cold. This module loads nothing but bun:ffi: it runs before the plugins' modules are imported.
import { AF_UNIX, close, connect, peerCredentials, POLLIN, pollOne, readFd, setSocketTimeout, SO_RCVTIMEO, SO_SNDTIMEO, SOCK_CLOEXEC, SOCK_STREAM, socket } from '../shared/linux/libc';
import { EAGAIN, EINTR } from '../shared/linux/netlink/errno';
import { missingEnv, VERBS, type Env, type Verb } from '../shared/cni/verbs';
import { jsonBytes, parseJsonFrame, readFrame, socketAddress, writeAllFd, writeFrame, type Hello } from './protocol';

/** The environment variable that keeps a plugin from using the server (`off`), e.g. to compare both ways. */
export const SERVER_SWITCH = 'CNIKIT_PLUGIN_SERVER';

// Anyone in the netns can bind the abstract name and never accept: a connect to a full backlog
// would block for good. Past this the plugin runs the verb itself.
const CONNECT_DEADLINE_MS = 200;
// All the server's threads busy (or a verb of theirs hung, or one that execs a plugin needing a
// thread itself): past this the plugin runs the verb itself. The server has not started it then:
// it starts a verb only once the Stdin frame came, which this client sends only after the Answer.
const ANSWER_DEADLINE_MS = 1000;

/**
 * How a forwarded invocation ended: the server ran it (`exitCode` to exit with), or it is to run
 * here (`declined`: why, when a server answered; `readStdin`: stdin as already read, if it was).
 */
export type Forwarded = { served: true; exitCode: number } | { served: false; declined?: string; readStdin?: () => Buffer };

/**
 * Runs the plugin invocation (`plugin` as exec'd, with `argv`, `env` and this process's stdin) on the
 * plugin server of this network namespace, and writes its stdout and stderr here. Not served (the
 * caller runs it in-process) when: there are arguments, `CNIKIT_PLUGIN_SERVER=off`, the verb is
 * not ADD, DEL, CHECK, GC or STATUS or lacks a variable it requires (the skel reports that), stdin
 * cannot be read, no server listens or none connects within CONNECT_DEADLINE_MS, the listener is
 * not of our effective uid, none answers within ANSWER_DEADLINE_MS, or the server declined (server.ts)
 * with the reason in `declined`. Stdin is read first, whole (the skel reads it for these verbs too):
 * a slow producer then never holds a server thread. A connection lost after the server took the
 * verb is a CNI error (code 999) on stdout and exit 1, never a second run here: the verb may have
 * run. Never throws.
 */
export function forwardToPluginServer(plugin: string, argv: readonly string[], env: Env): Forwarded {
  const verb = env.CNI_COMMAND as Verb | undefined;
  if (argv.length > 0 || env[SERVER_SWITCH] === 'off') return { served: false };
  if (verb === undefined || verb === 'VERSION' || !VERBS.includes(verb) || missingEnv(verb, env).length > 0) return { served: false };
  const stdin = readStdin();
  if (stdin === null) return { served: false }; // the skel reads it again and reports the error in its words (code 5)
  const here = { served: false, readStdin: () => Buffer.from(stdin) } as const;
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return here;
  try {
    setSocketTimeout(fd, SO_SNDTIMEO, CONNECT_DEADLINE_MS); // an AF_UNIX connect waits SO_SNDTIMEO at most
    if (connect(fd, socketAddress()) < 0) return here; // ECONNREFUSED, ENOENT: no server; EAGAIN: a full backlog
    // Anyone can bind an abstract name first: only a listener of our own uid gets our config.
    const peer = peerCredentials(fd);
    if (typeof peer === 'number' || peer.uid !== process.geteuid?.()) return here;
    setSocketTimeout(fd, SO_RCVTIMEO, ANSWER_DEADLINE_MS);
    let answer: Record<string, unknown>;
    try {
      writeFrame(fd, jsonBytes({ plugin, env: env as Record<string, string> } satisfies Hello));
      answer = parseJsonFrame(readFrame(fd));
    } catch {
      return here; // nothing ran: the server takes a verb only with its Stdin frame
    }
    if (answer.go !== true) return { ...here, declined: typeof answer.declined === 'string' ? answer.declined : 'an answer that is neither go nor declined' };
    setSocketTimeout(fd, SO_RCVTIMEO, 0); // the verb takes what it takes (a runtime has its own timeout)
    setSocketTimeout(fd, SO_SNDTIMEO, 0);
    let exitCode: unknown, stdout: unknown, stderr: unknown;
    try {
      writeFrame(fd, stdin);
      ({ exitCode, stdout, stderr } = parseJsonFrame(readFrame(fd)));
      if (typeof exitCode !== 'number' || typeof stdout !== 'string' || typeof stderr !== 'string') throw new Error('an outcome without exitCode, stdout and stderr');
    } catch (e) {
      return { served: true, exitCode: lostConnection(stdin, e) };
    }
    return { served: true, exitCode: print(exitCode, stdout, stderr) };
  } finally {
    close(fd);
  }
}

/** Stdin whole, or null when it cannot be read (a directory, say: EISDIR on the first read). */
function readStdin(): Uint8Array | null {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const buf = new Uint8Array(65536);
    const n = readFd(0, buf);
    if (n === -EAGAIN) {
      const r = pollOne(0, POLLIN, -1); // a non-blocking pipe: wait for more
      if (r >= 0 || r === -EINTR) continue;
    }
    if (n < 0) return null;
    if (n === 0) break;
    chunks.push(buf.subarray(0, n));
  }
  return Buffer.concat(chunks);
}

/** Writes the server's stdout and stderr here; the exit code, 1 when stdout cannot take the output (the runtime must not take a lost result for success). */
function print(exitCode: number, stdout: string, stderr: string): number {
  tryWrite(2, stderr); // a closed stderr loses only diagnostics
  try {
    if (stdout) writeAllFd(1, new TextEncoder().encode(stdout), 'wait');
    return exitCode;
  } catch (e) {
    tryWrite(2, `cannot write the ${exitCode === 0 ? 'result' : 'error'} to stdout: ${(e as Error).message}\n`);
    return 1;
  }
}

/**
 * The CNI error for a server that went away after it took the verb, on stdout; returns the exit
 * code 1. Code 999 and the error shape of shared/cni/errors.ts, whose modules this client does not
 * load; in the config's cniVersion (the skel's CURRENT_VERSION, 1.1.0, when it has none).
 */
function lostConnection(stdin: Uint8Array, e: unknown): number {
  let cniVersion = '1.1.0';
  try {
    const v = (JSON.parse(new TextDecoder().decode(stdin)) as { cniVersion?: unknown }).cniVersion;
    if (typeof v === 'string' && v) cniVersion = v;
  } catch {
    /* not JSON: the default version */
  }
  const why = e instanceof Error ? e.message : String(e);
  const msg = `the plugin server's connection was lost during the verb (${why}); its outcome is unknown`;
  tryWrite(1, `${JSON.stringify({ cniVersion, code: 999, msg }, null, 4)}\n`);
  return 1;
}

function tryWrite(fd: number, s: string): void {
  try {
    if (s) writeAllFd(fd, new TextEncoder().encode(s), 'wait');
  } catch {
    /* nowhere left to report */
  }
}
