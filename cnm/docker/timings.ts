// Per-request phase timings for the request log line ("CreateEndpoint ... -> ok (58.1 ms: ADD 24.1,
// hand-over 17.2, ...)"), so an operator (and the bench) sees what an endpoint's time went to: the
// chain, or the kernel's link moves. Collected per request through AsyncLocalStorage, so concurrent
// requests never mix their phases.
import { AsyncLocalStorage } from 'node:async_hooks';

const current = new AsyncLocalStorage<string[]>();

/** Runs `fn` collecting the phases it times; returns its result and the phases ("name ms" each). */
export async function collectPhases<T>(fn: () => Promise<T>): Promise<{ value: T; phases: string[] }> {
  const phases: string[] = [];
  const value = await current.run(phases, fn);
  return { value, phases };
}

/** Runs `fn`, recording its wall time as phase `name` of the current request (if any). */
export async function phase<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    current.getStore()?.push(`${name} ${(performance.now() - t0).toFixed(1)}`);
  }
}
