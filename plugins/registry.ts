// Every plugin the multi-call executable answers to; the build links exactly these names.
// Each plugin's modules are imported when it runs: the bundle is split per dynamic import(), so a
// plugin process loads its own code and what it shares, not the other nine plugins' (tuning VERSION,
// hyperfine medians, 2026-11-30: 11.3-12.2 ms with every plugin imported at start, 10.8-11.6 ms so,
// 10.4-11.1 ms for a build that holds tuning alone).
import { basename } from 'node:path';
import type { Plugin } from '../shared/cni/skel';
import { inProcessExecutor } from '../shared/cni/invoke';
import { processExecutor, type Executor } from '../shared/cni/exec';
import { isOwnExecutable } from '../shared/self';

const loaders: Readonly<Record<string, () => Promise<Plugin>>> = {
  'host-local': async () => (await import('../ipam/host-local/main')).hostLocal,
  static: async () => (await import('../ipam/static/main')).staticIPAM,
  bridge: async () => (await import('./bridge/main')).bridge,
  tuning: async () => (await import('./meta/tuning/main')).tuning,
  firewall: async () => (await import('./meta/firewall/main')).firewall,
  loopback: async () => (await import('./main/loopback/main')).loopback,
  ptp: async () => (await import('./main/ptp/main')).ptp,
  portmap: async () => (await import('./meta/portmap/main')).portmap,
  bandwidth: async () => (await import('./meta/bandwidth/main')).bandwidth,
  overlay: async () => (await import('./meta/overlay/main')).overlay,
};

/** The plugin names, in the order `--list` prints them. */
export const pluginNames: readonly string[] = Object.keys(loaders);

/** The plugin `name` (its modules loaded now), or undefined when we have none of that name. */
export async function loadPlugin(name: string): Promise<Plugin | undefined> {
  return Object.hasOwn(loaders, name) ? loaders[name]!() : undefined;
}

/** The plugin name a file in CNI_PATH stands for when it is ours (a link or copy of this executable under a plugin's name); else undefined. */
export function ownPluginName(file: string): string | undefined {
  const name = basename(file);
  return Object.hasOwn(loaders, name) && isOwnExecutable(file) ? name : undefined;
}

/** The plugin a file in CNI_PATH is when it is ours, loaded; else undefined. */
export async function ownPlugin(file: string): Promise<Plugin | undefined> {
  const name = ownPluginName(file);
  return name === undefined ? undefined : loadPlugin(name);
}

/** Our own plugins found in CNI_PATH run in-process; others are exec'd. `stderr`: where the delegated plugins' stderr goes (default: fd 2; see inProcessExecutor). */
export const ownPluginsExecutor = (stderr?: (text: string) => void): Executor => inProcessExecutor(ownPlugin, processExecutor, stderr);
