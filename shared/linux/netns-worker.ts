// Netns work on a thread of its own, for long-running processes (a CNM daemon, an overlay agent).
// setns(2) switches only the calling thread, and JS resumes an await on whatever netns the thread is
// in then, so a daemon never setns's its event-loop thread: it hands a synchronous job to a worker
// thread, which enters the namespace with withNetns, runs the job, switches back and posts the result.
//
// The worker runs the process's own entry module (Bun.main: inside the compiled executable a
// module of its embedded bundle, so no extra build entry is needed), so a job is a named function
// registered with defineNetnsJob when its module loads, in both threads; only its name and
// structured-cloneable arguments and results cross the thread boundary. The entry must branch:
//   if (isNetnsWorkerThread()) serveNetnsJobs(); else main();
import type { Worker } from 'node:worker_threads';
import { isMarkedWorkerThread, workerThreads } from '../lazy-builtins';
import { CniError } from '../cni/errors';
import { SyscallError } from './libc';
import { errorKind, type ErrorKind } from './netlink/errno';
import { NetlinkError } from './netlink/errors';
import { AsyncNetnsWorkError, isAsyncFunction, NetnsError, NetnsNotFoundError, NetnsRestoreError, NotNetnsError, withNetns, type SyncNetnsWork } from './netns';
import { SysctlError } from './sysctl';

const WORKER_MARK = 'cnikit-netns-worker';


/** A registered job: synchronous, taking A and returning R (both structured-cloneable). */
export interface NetnsJob<A, R> {
  readonly name: string;
  /** Type-only: carries A and R to NetnsWorker.run. */
  readonly __types?: (a: A) => R;
}

const jobs = new Map<string, (args: unknown) => unknown>();

/**
 * Registers `run` as the job `name` and returns its handle for NetnsWorker.run. Call at module top
 * level, so the worker thread (which loads the same modules) registers it too. `run` must be
 * synchronous (its type refuses promises, withNetns refuses them at run time). Throws if the name is taken.
 */
export function defineNetnsJob<A, R>(name: string, run: (args: A) => ReturnType<SyncNetnsWork<R>>): NetnsJob<A, R> {
  if (jobs.has(name)) throw new Error(`netns job "${name}" is defined twice`);
  if (isAsyncFunction(run)) throw new AsyncNetnsWorkError(`job ${name}`, 'before');
  jobs.set(name, run as (args: unknown) => unknown);
  return { name };
}

/** True on a thread started by NetnsWorker: the entry then calls serveNetnsJobs() instead of its main. */
export function isNetnsWorkerThread(): boolean {
  return isMarkedWorkerThread(WORKER_MARK);
}

interface Request {
  id: number;
  job: string;
  netns: string;
  args: unknown;
}

/** An error as it crosses the thread boundary: its class name, message and own data fields. */
interface ErrorData {
  name: string;
  message: string;
  fields: Record<string, unknown>;
}

type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: ErrorData };

function toData(e: unknown): ErrorData {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e), fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) fields[k] = v;
  fields.kind = errorKind(e);
  return { name: e.name, message: e.message, fields };
}

/** A failure in the worker whose class is not rebuilt on this side: its name, message and kind survive. */
export class NetnsJobError extends Error {
  constructor(
    name: string,
    message: string,
    readonly kind: ErrorKind,
  ) {
    super(message);
    this.name = name;
  }
}

// The classes callers branch on (instanceof, isNotFound) are rebuilt from their fields.
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const REBUILD: Record<string, (m: string, f: Record<string, unknown>) => Error> = {
  NetlinkError: (_m, f) => new NetlinkError(str(f.op), str(f.object), num(f.errno), str(f.extack)),
  NetnsNotFoundError: (_m, f) => new NetnsNotFoundError(str(f.path)),
  NotNetnsError: (_m, f) => new NotNetnsError(str(f.path)),
  NetnsError: (m, f) => new NetnsError(str(f.path), m, num(f.errno)),
  NetnsRestoreError: (_m, f) => new NetnsRestoreError(num(f.errno)),
  SysctlError: (_m, f) => new SysctlError(str(f.key), f.op === 'writing' ? 'writing' : 'reading', num(f.errno)),
  SyscallError: (_m, f) => new SyscallError(str(f.op), num(f.errno)),
  CniError: (m, f) => new CniError(num(f.code), m, str(f.details)),
};

function fromData(d: ErrorData): Error {
  const rebuild = REBUILD[d.name];
  if (rebuild) return rebuild(d.message, d.fields);
  return new NetnsJobError(d.name, d.message, errorKind(d.fields));
}

/**
 * The worker thread's side: answers each request by running the job inside its netns. After a
 * NetnsRestoreError the thread is in the wrong namespace for good: it runs nothing more and answers
 * every later request with that error, until NetnsWorker (told by the first answer) terminates it.
 */
export function serveNetnsJobs(): void {
  const port = workerThreads().parentPort;
  if (!port || !isNetnsWorkerThread()) throw new Error('serveNetnsJobs() outside a netns worker thread');
  let poisoned: ErrorData | undefined;
  port.on('message', (req: Request) => {
    if (poisoned) return port.postMessage({ id: req.id, ok: false, error: poisoned } satisfies Reply);
    try {
      const run = jobs.get(req.job);
      if (!run) throw new Error(`unknown netns job "${req.job}" (not defined in the worker's modules)`);
      port.postMessage({ id: req.id, ok: true, value: withNetns(req.netns, () => run(req.args) as never) } satisfies Reply);
    } catch (e) {
      const error = toData(e);
      if (e instanceof NetnsRestoreError) poisoned = error;
      port.postMessage({ id: req.id, ok: false, error } satisfies Reply);
    }
  });
}

/** Where a worker thread's code comes from: the running entry module (inside the compiled executable, its embedded bundle). */
export function entryModule(): string {
  const bun = (globalThis as { Bun?: { main?: string } }).Bun;
  const main = bun?.main ?? process.argv[1];
  if (!main) throw new Error('cannot tell which module the process runs (a worker thread loads it)');
  return main;
}

/**
 * One worker thread that runs netns jobs one at a time; started on first use, restarted after it
 * died (a fatal NetnsRestoreError ends it). While no job is pending it does not keep the process alive.
 */
export class NetnsWorker {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { w: Worker; resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  /** `entry`: the module the worker loads (default: the process's entry module). */
  constructor(private readonly entry: string = entryModule()) {}

  /**
   * Runs `job(args)` on the worker thread inside the network namespace at `netns` (a path such as
   * /var/run/netns/x or /proc/<pid>/ns/net). Resolves with the job's result; rejects with the job's
   * error, rebuilt as its class for NetlinkError, Netns*Error, SysctlError, SyscallError and
   * CniError (else NetnsJobError with name, message, kind), or with an Error if the thread died.
   * The calling thread's netns never changes.
   */
  run<A, R>(job: NetnsJob<A, R>, netns: string, args: A): Promise<R> {
    const w = this.thread();
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { w, resolve: resolve as (v: unknown) => void, reject });
      w.ref();
      w.postMessage({ id, job: job.name, netns, args } satisfies Request);
    });
  }

  /** Ends the thread; jobs still pending are rejected. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (!w) return;
    await w.terminate();
    this.failAll(w, new Error('netns worker closed'));
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = new (workerThreads().Worker)(this.entry, { workerData: { [WORKER_MARK]: true } });
    w.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (![...this.pending.values()].some((q) => q.w === w)) w.unref();
      if (r.ok) p.resolve(r.value);
      else {
        const e = fromData(r.error);
        if (e instanceof NetnsRestoreError) this.discard(w);
        p.reject(e);
      }
    });
    w.on('error', (e) => {
      this.discard(w);
      this.failAll(w, new Error(`netns worker failed: ${e.message}`, { cause: e }));
    });
    w.on('exit', (code) => {
      this.discard(w);
      this.failAll(w, new Error(`netns worker exited (code ${code})`));
    });
    return (this.worker = w);
  }

  private discard(w: Worker): void {
    if (this.worker === w) this.worker = undefined;
    void w.terminate();
  }

  /** Rejects the jobs sent to `w` (a job sent to a newer thread is not affected). */
  private failAll(w: Worker, e: Error): void {
    for (const [id, p] of this.pending) {
      if (p.w !== w) continue;
      this.pending.delete(id);
      p.reject(e);
    }
  }
}
