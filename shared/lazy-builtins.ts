// Node built-in modules a plugin process needs only on some paths, loaded when first used. In the
// bun executable each import of them is start-up time every process pays (hyperfine, 2026-11-30,
// executables built with our flags: empty 3.8 ms, importing node:child_process alone 5.6 ms), while
// most plugin verbs exec nothing (DEL never does, tuning and loopback never) and only the long-running
// tools start threads. node:fs stays a plain import: every verb reads or writes a file.

/** node:child_process, for the plugins' and netfilter tools' execs. */
export const childProcess = () => process.getBuiltinModule('node:child_process');

/** node:worker_threads, for the netns worker threads of long-running processes. */
export const workerThreads = () => process.getBuiltinModule('node:worker_threads');
