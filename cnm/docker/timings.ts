// Per-request phase timings for the request log line ("CreateEndpoint ... -> ok (58.1 ms: ADD 24.1,
// hand-over 17.2, ...)"), so an operator (and the bench) sees what an endpoint's time went to: the
// chain, or the kernel's link moves. Collected per request through AsyncLocalStorage, so concurrent
// requests never mix their phases; node:async_hooks is loaded by enablePhases() (the daemon's
// start), not by every plugin that shares the bundle.
import type { AsyncLocalStorage } from 'node:async_hooks';

let current: AsyncLocalStorage<string[]> | undefined;

/** Turns phase collection on (once per process). */
export async function enablePhases(): Promise<void> {
  current ??= new (await import('node:async_hooks')).AsyncLocalStorage<string[]>();
}

/** Runs `fn` collecting the phases it times (none before enablePhases); returns its result and the phases ("name ms" each). */
export async function collectPhases<T>(fn: () => Promise<T>): Promise<{ value: T; phases: string[] }> {
  const phases: string[] = [];
  const value = current ? await current.run(phases, fn) : await fn();
  return { value, phases };
}

/** Runs `fn`, recording its wall time as phase `name` of the current request (if any). */
export async function phase<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    current?.getStore()?.push(`${name} ${(performance.now() - t0).toFixed(1)}`);
  }
}
