// The one multi-call executable: dispatch on the name it was invoked as (a link per plugin in
// /opt/cni/bin), or on its first argument when invoked as `cnikit <name>`.
import { basename } from 'node:path';
import { pluginMain, type Plugin } from './shared/cni/skel';
import { inProcessExecutor } from './shared/cni/invoke';
import { processExecutor } from './shared/cni/exec';
import { isOwnExecutable } from './shared/cni/own-executable';
import { SUPPORTED_VERSIONS } from './shared/cni/version';
import { plugins } from './plugins/registry';
import { cnitool } from './runner/cli';
import { isNetnsWorkerThread, serveNetnsJobs } from './shared/linux/netns-worker';

/** CLI commands that are not CNI plugins, linked and dispatched by name like the plugins. */
const tools: Readonly<Record<string, (argv: string[]) => Promise<number>>> = { cnitool };

const SELF = 'cnikit';

function usage(): string {
  return [
    `${SELF}: CNI plugins in one executable (CNI protocol versions ${SUPPORTED_VERSIONS.join(', ')})`,
    `usage: ${SELF} <plugin>   (or invoke through a link named after the plugin)`,
    `       ${SELF} --list     (print the plugin names, one per line)`,
    `plugins: ${Object.keys(plugins).join(', ')}`,
    `tools: ${Object.keys(tools).join(', ')}`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  let name = basename(process.argv0);
  let argv = process.argv.slice(2);
  if (name === SELF || name === 'bun' || name === 'node') {
    const arg = process.argv[2];
    if (arg === '--list') {
      process.stdout.write([...Object.keys(plugins), ...Object.keys(tools)].join('\n') + '\n');
      return;
    }
    if (!arg || arg === '--help' || arg === '-h') {
      process.stderr.write(usage());
      process.exit(arg ? 0 : 2);
    }
    name = arg;
    argv = argv.slice(1);
  }
  const tool = tools[name];
  if (tool) process.exit(await tool(argv));
  const plugin: Plugin | undefined = plugins[name];
  if (!plugin) {
    process.stderr.write(`${SELF}: unknown plugin "${name}"\n${usage()}`);
    process.exit(2);
  }
  // Our own plugins found in CNI_PATH (links or copies of this executable) run in-process.
  const executor = inProcessExecutor((file) => (isOwnExecutable(file) ? plugins[basename(file)] : undefined), processExecutor);
  await pluginMain(plugin, { executor });
}

// --bytecode rejects top-level await, so the entry is a plain call. A NetnsWorker thread loads this
// same module (shared/linux/netns-worker.ts) and serves netns jobs instead. An error no verb turned
// into a CNI error (a fatal NetnsRestoreError above all: this thread is in the wrong netns) ends the process.
if (isNetnsWorkerThread()) serveNetnsJobs();
else
  main().catch((e: unknown) => {
    process.stderr.write(`${SELF}: fatal: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
