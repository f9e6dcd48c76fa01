// What a plugin process does first: hand the invocation to the node's plugin server (server.ts)
// when one serves this network namespace, and print what the server's run of it printed. A plugin
// exec'd by a runtime then costs a bun start and one round trip instead of loading and running its
// code cold. This module loads nothing but bun:ffi: it runs before the plugins' modules are imported.
import { AF_UNIX, close, connect, errnoMessage, peerCredentials, pollOne, readFd, SOCK_CLOEXEC, SOCK_STREAM, socket } from '../shared/linux/libc';
import { EAGAIN } from '../shared/linux/netlink/errno';
import { missingEnv, type Env } from '../shared/cni/verbs';
import { readFrame, socketAddress, STDIN_ERROR, STDIN_OK, writeAllFd, writeFrame, type Answer, type Hello, type Outcome } from './protocol';

/** The environment variable that keeps a plugin from using the server (`off`), e.g. to compare both ways. */
export const SERVER_SWITCH = 'CNIKIT_PLUGIN_SERVER';

/** How a forwarded invocation ended: the server ran it (`exitCode` to exit with), or it is to run here. */
export type Forwarded = { served: true; exitCode: number } | { served: false; declined?: string };

const POLLIN = 1;

/**
 * Runs the plugin invocation (`plugin` as exec'd, with `argv`, `env` and this process's stdin) on the
 * plugin server of this network namespace, and writes its stdout and stderr here. Not served (the
 * caller runs it in-process) when: there are arguments, `CNIKIT_PLUGIN_SERVER=off`, the verb is
 * not ADD, DEL, CHECK, GC or STATUS or lacks a variable it requires (the skel reports that), no
 * server listens, the listener is not of our effective uid, or the server declined (a different
 * executable, mount or user namespace: server.ts) with the reason in `declined`. Stdin is read only
 * once the server took the verb, so a plugin run here reads it whole. A connection lost after the server took the verb is a CNI error (code 999) on stdout
 * and exit 1, never a second run here: the verb may have run. Never throws.
 */
export function forwardToPluginServer(plugin: string, argv: readonly string[], env: Env): Forwarded {
  const verb = env.CNI_COMMAND;
  if (argv.length > 0 || env[SERVER_SWITCH] === 'off') return { served: false };
  if (verb !== 'ADD' && verb !== 'DEL' && verb !== 'CHECK' && verb !== 'GC' && verb !== 'STATUS') return { served: false };
  if (missingEnv(verb, env).length > 0) return { served: false };
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return { served: false };
  try {
    if (connect(fd, socketAddress()) < 0) return { served: false }; // ECONNREFUSED, ENOENT: no server here
    // Anyone can bind an abstract name first: only a listener of our own uid gets our config.
    const peer = peerCredentials(fd);
    if (typeof peer === 'number' || peer.uid !== process.geteuid?.()) return { served: false };
    let answer: Answer;
    try {
      writeFrame(fd, json({ plugin, env: env as Record<string, string> } satisfies Hello));
      answer = JSON.parse(new TextDecoder().decode(readFrame(fd))) as Answer;
    } catch {
      return { served: false }; // nothing ran: the server took no verb yet
    }
    if ('declined' in answer) return { served: false, declined: answer.declined };
    const stdin = readStdin();
    let outcome: Outcome;
    try {
      writeFrame(fd, stdin);
      outcome = JSON.parse(new TextDecoder().decode(readFrame(fd))) as Outcome;
    } catch (e) {
      return { served: true, exitCode: lostConnection(stdin, e) };
    }
    return { served: true, exitCode: print(outcome) };
  } finally {
    close(fd);
  }
}

/** Stdin whole, as the Stdin frame: STDIN_OK and the bytes, or STDIN_ERROR and why it could not be read. */
function readStdin(): Uint8Array {
  const chunks: Uint8Array[] = [Uint8Array.of(STDIN_OK)];
  for (;;) {
    const buf = new Uint8Array(65536);
    const n = readFd(0, buf);
    if (n === -EAGAIN && pollOne(0, POLLIN, -1) >= 0) continue; // a non-blocking pipe
    if (n < 0) return Uint8Array.of(STDIN_ERROR, ...new TextEncoder().encode(errnoMessage(-n)));
    if (n === 0) break;
    chunks.push(buf.subarray(0, n));
  }
  return Buffer.concat(chunks);
}

/** Writes the server's stdout and stderr here; the exit code, 1 when stdout cannot take the output (the runtime must not take a lost result for success). */
function print(o: Outcome): number {
  try {
    if (o.stderr) writeAllFd(2, new TextEncoder().encode(o.stderr));
  } catch {
    /* a closed stderr loses only diagnostics */
  }
  try {
    if (o.stdout) writeAllFd(1, new TextEncoder().encode(o.stdout));
    return o.exitCode;
  } catch (e) {
    tryWrite(2, `cannot write the ${o.exitCode === 0 ? 'result' : 'error'} to stdout: ${(e as Error).message}\n`);
    return 1;
  }
}

/** The CNI error for a server that went away after it took the verb (code 999), on stdout; returns the exit code 1. */
function lostConnection(stdinFrame: Uint8Array, e: unknown): number {
  let cniVersion = '1.1.0';
  try {
    const v = (JSON.parse(new TextDecoder().decode(stdinFrame.subarray(1))) as { cniVersion?: unknown }).cniVersion;
    if (typeof v === 'string' && v) cniVersion = v;
  } catch {
    /* not JSON: the default version */
  }
  const msg = `the plugin server's connection was lost during the verb (${(e as Error).message}); its outcome is unknown`;
  tryWrite(1, `${JSON.stringify({ cniVersion, code: 999, msg }, null, 4)}\n`);
  return 1;
}

function tryWrite(fd: number, s: string): void {
  try {
    writeAllFd(fd, new TextEncoder().encode(s));
  } catch {
    /* nowhere left to report */
  }
}

const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
