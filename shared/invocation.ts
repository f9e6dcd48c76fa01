// How the multi-call executable was invoked, decided once for the entry (main.ts) and dispatch.ts.
// No imports: main.ts decides with it before anything else loads.

/** The executable's own name: invoked under it (or as bun or node running the sources), the first argument names the plugin or tool. */
export const SELF = 'cnikit';

/**
 * The name this process was invoked as (the last component of argv0), and whether that is a
 * person's `cnikit <name> ...` (or bun's or node's) rather than a runtime's exec of a plugin link.
 */
export function invokedAs(argv0: string): { name: string; self: boolean } {
  const name = argv0.slice(argv0.lastIndexOf('/') + 1);
  return { name, self: name === SELF || name === 'bun' || name === 'node' };
}
