// The entry of the one multi-call executable. A plugin exec'd under its own name first offers the
// invocation to the node's plugin server (plugin-server/client.ts: only bun:ffi is loaded so far);
// when none runs it, the rest of the executable is loaded and dispatches (dispatch.ts).
// --bytecode rejects top-level await, so the entry is plain calls.
import { forwardToPluginServer } from './plugin-server/client';
import { invokedAs } from './shared/invocation';
import { onMainThread } from './shared/lazy-builtins';

const invoked = invokedAs(process.argv0);
let declined: string | undefined;
let readStdin: (() => Buffer) | undefined;
// Worker threads load this entry too (dispatch.ts serves their jobs); `cnikit <name>` is a person's
// command line, not a runtime's exec.
if (!invoked.self && onMainThread()) {
  const f = forwardToPluginServer(invoked.name, process.argv.slice(2), process.env);
  if (f.served) process.exit(f.exitCode);
  ({ declined, readStdin } = f);
}
import('./dispatch').then(
  (d) => d.start(declined, readStdin),
  (e: unknown) => {
    process.stderr.write(`${invoked.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
