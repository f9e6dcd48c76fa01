// The one multi-call executable, once main.ts found no plugin server to hand the invocation to:
// dispatch on the name it was invoked as (a link per plugin in /opt/cni/bin), or on its first
// argument when invoked as `cnikit <name>`.
import { pluginMain, writeAll, type Plugin } from './shared/cni/skel';
import { errorMessage } from './shared/cni/errors';
import { SUPPORTED_VERSIONS } from './shared/cni/version';
import { loadPlugin, ownPluginsExecutor, pluginNames } from './plugins/registry';
import { isNetnsWorkerThread, serveNetnsJobs } from './shared/linux/netns-worker';
import { versionLine } from './shared/self';
import { loggerFromEnv } from './shared/log';
import { isMarkedWorkerThread } from './shared/lazy-builtins';
import { SERVER_THREAD_MARK } from './plugin-server/protocol';
import { invokedAs, SELF } from './shared/invocation';

/**
 * CLI commands that are not CNI plugins, linked and dispatched by name like the plugins. Each is
 * imported when called (as each plugin is: plugins/registry.ts), so a plugin's start-up does not pay
 * for the runner, the CNM library or the etcd client.
 */
const tools: Readonly<Record<string, (argv: string[]) => Promise<number>>> = {
  cnitool: async (argv) => (await import('./runner/cli')).cnitool(argv),
  cnm: async (argv) => (await import('./cnm/cli')).cnm(argv),
  'overlay-agent': async (argv) => (await import('./overlay/cli')).overlayAgent(argv),
  'plugin-server': async (argv) => (await import('./plugin-server/server')).pluginServer(argv),
};

function usage(): string {
  return [
    `${SELF}: CNI plugins in one executable (CNI protocol versions ${SUPPORTED_VERSIONS.join(', ')})`,
    `usage: ${SELF} <plugin>   (or invoke through a link named after the plugin)`,
    `       ${SELF} --list     (print the plugin names, one per line)`,
    `       ${SELF} --version  (print the version and build ID; <plugin> --version and cnitool --version too)`,
    `debugging: CNIKIT_LOG=debug logs each verb's steps with timings to stderr, CNIKIT_LOG_FILE=path to a file`,
    `plugins: ${pluginNames.join(', ')}`,
    `tools: ${Object.keys(tools).join(', ')}`,
    '',
  ].join('\n');
}

async function main(declined: string | undefined, readStdin: (() => Buffer) | undefined): Promise<void> {
  const invoked = invokedAs(process.argv0);
  let name = invoked.name;
  let argv = process.argv.slice(2);
  if (invoked.self) {
    const arg = process.argv[2];
    if (arg === '--list') process.exit(print(1, [...pluginNames, ...Object.keys(tools)].join('\n') + '\n'));
    if (arg === '--version') process.exit(print(1, `${versionLine()}\n`));
    if (!arg || arg === '--help' || arg === '-h') {
      print(2, usage());
      process.exit(arg ? 0 : 2);
    }
    name = arg;
    argv = argv.slice(1);
  }
  const tool = tools[name];
  if (tool) process.exit(await tool(argv));
  const plugin: Plugin | undefined = await loadPlugin(name);
  if (!plugin) {
    print(2, `${SELF}: unknown plugin "${name}"\n${usage()}`);
    process.exit(2);
  }
  const log = loggerFromEnv(process.env, name);
  if (declined !== undefined) log.debug(`the plugin server declined (${declined}); running here`);
  // Our own plugins found in CNI_PATH (links or copies of this executable) run in-process.
  await pluginMain(plugin, argv, { executor: ownPluginsExecutor(), log, readStdin });
}

/** Writes synchronously; 0, or 1 when the text could not be written (a closed pipe), quietly. */
function print(fd: number, text: string): number {
  try {
    writeAll(fd, text);
    return 0;
  } catch {
    return 1;
  }
}

/**
 * What the entry (main.ts) runs when no plugin server ran the invocation (`declined`: why the server
 * did not, for the debug log; `readStdin`: stdin as the entry read it already, if it did). A NetnsWorker thread or a plugin server thread loads the same entry
 * and serves its jobs instead. Whatever escapes main (a fatal NetnsRestoreError above all: this
 * thread is in the wrong netns; a tool whose stdout is a closed pipe; a bug) is one line on stderr
 * and exit 1, never bun's stack and source.
 */
export function start(declined?: string, readStdin?: () => Buffer): void {
  if (isNetnsWorkerThread()) serveNetnsJobs();
  // imported only here: a plugin that runs its verb itself does not load the server's modules
  else if (isMarkedWorkerThread(SERVER_THREAD_MARK)) void import('./plugin-server/server').then((m) => m.servePluginRequests());
  else
    main(declined, readStdin).catch((e: unknown) => {
      print(2, `${invokedAs(process.argv0).name}: ${errorMessage(e)}\n`);
      process.exit(1);
    });
}
