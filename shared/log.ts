// Diagnostics for people, never for the runtime: a plugin's stdout is its CNI result, so log lines
// go to stderr or to a file. Library code gets a Logger passed in (CmdArgs.log) and never writes to
// stderr itself. The debug switch (README, "Version and debugging"):
//   CNIKIT_LOG=debug|info|warn|error|off   (default warn: only what the reference would also log)
//   CNIKIT_LOG_FILE=/path                  append there (created 0600) instead of stderr
import { constants, openSync, writeSync } from 'node:fs';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  /** True when a message at `level` would be written: guard building costly messages with it. */
  enabled(level: LogLevel): boolean;
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  /** A logger writing to the same place at the same level, its lines tagged `scope` (e.g. "ADD"). */
  child(scope: string): Logger;
  /**
   * Runs `fn` (sync or async) and logs at debug "<name>: 1.2 ms", or "<name>: failed after 1.2 ms"
   * when it throws (the error is rethrown unchanged). Without debug it only runs `fn`.
   */
  step<T>(name: string, fn: () => T): T;
}

export interface LoggerOptions {
  level: LogLevel | 'off';
  /** Receives each complete line, newline included. Must not throw. */
  write: (line: string) => void;
  /** Tag for every line, e.g. "bridge[4711]". */
  name: string;
  /** Milliseconds on a monotonic clock (default performance.now). */
  now?: () => number;
}

const rank = (l: LogLevel | 'off'): number => (l === 'off' ? -1 : LOG_LEVELS.indexOf(l));

/** A logger from explicit options; `loggerFromEnv` is what entry points use. */
export function createLogger(o: LoggerOptions, scope = ''): Logger {
  const max = rank(o.level);
  const now = o.now ?? (() => performance.now());
  const enabled = (l: LogLevel): boolean => rank(l) <= max;
  const emit = (l: LogLevel, msg: string): void => {
    if (!enabled(l)) return;
    const where = scope ? `${o.name} ${scope}` : o.name;
    o.write(`${new Date().toISOString()} ${where} ${l}: ${msg.replace(/\n/g, '\\n')}\n`);
  };
  const log: Logger = {
    enabled,
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    child: (s) => createLogger(o, scope ? `${scope} ${s}` : s),
    step<T>(name: string, fn: () => T): T {
      if (!enabled('debug')) return fn();
      const t0 = now();
      const done = (ok: boolean): void => emit('debug', `${name}: ${ok ? '' : 'failed after '}${(now() - t0).toFixed(1)} ms`);
      let r: T;
      try {
        r = fn();
      } catch (e) {
        done(false);
        throw e;
      }
      if (r instanceof Promise)
        return r.then(
          (v) => (done(true), v),
          (e) => {
            done(false);
            throw e;
          },
        ) as T;
      done(true);
      return r;
    },
  };
  return log;
}

/** Writes nothing; for callers that have no logger to pass (tests, tools). */
export const silentLogger: Logger = createLogger({ level: 'off', write: () => {}, name: '' });

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The logger an entry point hands to library code, configured by CNIKIT_LOG and CNIKIT_LOG_FILE.
 * Costs two env lookups; the log file is opened on the first line written (O_APPEND, 0600, not
 * through a symlink). A log that cannot be opened or written is dropped, with one line on stderr
 * for a file that cannot be opened: logging never changes what a plugin does. Lines meant for
 * stderr go to `stderr` (default: fd 2; the plugin server collects them for its client's stderr).
 */
export function loggerFromEnv(env: Env, name: string, stderr: (line: string) => void = (line) => writeQuietly(2, line)): Logger {
  const want = env.CNIKIT_LOG?.toLowerCase();
  const level: LogLevel | 'off' = want === 'off' || (LOG_LEVELS as readonly string[]).includes(want ?? '') ? (want as LogLevel | 'off') : 'warn';
  const file = env.CNIKIT_LOG_FILE;
  const write = (line: string): void => (file ? writeQuietly(logFileFd(file, name), line) : stderr(line));
  return createLogger({ level, write, name: `${name}[${process.pid}]` });
}

// One fd per log file for the whole process: a long-running caller creates a logger per in-process
// plugin call, and a file opened per logger would leak one fd each.
const logFiles = new Map<string, number>();

/** The fd lines for `file` go to, opened on first use (O_APPEND, 0600, not through a symlink); stderr (2) if it cannot be opened. */
function logFileFd(file: string, name: string): number {
  let fd = logFiles.get(file);
  if (fd === undefined) {
    try {
      fd = openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      fd = 2;
      writeQuietly(2, `${name}: cannot open CNIKIT_LOG_FILE ${JSON.stringify(file)}: ${(e as Error).message}; logging to stderr\n`);
    }
    logFiles.set(file, fd);
  }
  return fd;
}

function writeQuietly(fd: number, s: string): void {
  try {
    writeSync(fd, s);
  } catch {
    /* a closed stderr or a full disk must not fail the plugin */
  }
}
