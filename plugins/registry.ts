// Every plugin the multi-call executable answers to; the build links exactly these names.
import { basename } from 'node:path';
import type { Plugin } from '../shared/cni/skel';
import { inProcessExecutor } from '../shared/cni/invoke';
import { processExecutor, type Executor } from '../shared/cni/exec';
import { isOwnExecutable } from '../shared/self';
import { hostLocal } from '../ipam/host-local/main';
import { staticIPAM } from '../ipam/static/main';
import { bridge } from './bridge/main';
import { tuning } from './meta/tuning/main';
import { firewall } from './meta/firewall/main';
import { portmap } from './meta/portmap/main';
import { bandwidth } from './meta/bandwidth/main';
import { loopback } from './main/loopback/main';
import { ptp } from './main/ptp/main';
import { overlay } from './meta/overlay/main';

export const plugins: Readonly<Record<string, Plugin>> = {
  'host-local': hostLocal,
  static: staticIPAM,
  bridge,
  tuning,
  firewall,
  loopback,
  ptp,
  portmap,
  bandwidth,
  overlay,
};

/** The plugin a file in CNI_PATH is when it is ours (a link or copy of this executable under a plugin's name); else undefined. */
export const ownPlugin = (file: string): Plugin | undefined => (isOwnExecutable(file) ? plugins[basename(file)] : undefined);

/** Our own plugins found in CNI_PATH run in-process; others are exec'd. */
export const ownPluginsExecutor = (): Executor => inProcessExecutor(ownPlugin, processExecutor);
