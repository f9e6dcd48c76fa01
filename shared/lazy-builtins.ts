// Node built-in modules a plugin process needs only on some paths, loaded when first used. In the
// bun executable each import of them is start-up time every process pays (hyperfine, 2026-11-30,
// executables built with our flags: empty 3.8 ms, importing node:child_process alone 5.6 ms), while
// most plugin verbs exec nothing (DEL never does, tuning and loopback never) and only the long-running
// tools start threads. node:fs stays a plain import: every verb reads or writes a file.

/** node:child_process, for the plugins' and netfilter tools' execs. */
export const childProcess = () => process.getBuiltinModule('node:child_process');

/** node:worker_threads, for the netns worker threads of long-running processes. */
export const workerThreads = () => process.getBuiltinModule('node:worker_threads');

// Bun.isMainThread answers without loading node:worker_threads (undefined outside bun, e.g. jest).
const bunIsMainThread = (globalThis as { Bun?: { isMainThread: boolean } }).Bun?.isMainThread;

/**
 * True on a worker thread started with `workerData[mark] === true` (a netns worker, a plugin server
 * thread): the entry then serves that thread's jobs instead of running its main. On bun's main
 * thread it answers without loading node:worker_threads.
 */
export function isMarkedWorkerThread(mark: string): boolean {
  return !onMainThread() && (workerThreads().workerData as Record<string, unknown> | null)?.[mark] === true;
}

/** True on the process's main thread; on bun without loading node:worker_threads. */
export const onMainThread = (): boolean => bunIsMainThread ?? workerThreads().isMainThread;
