// Every plugin the multi-call executable answers to; the build links exactly these names.
import type { Plugin } from '../shared/cni/skel';
import { hostLocal } from '../ipam/host-local/main';
import { bridge } from './bridge/main';
import { tuning } from './meta/tuning/main';

export const plugins: Readonly<Record<string, Plugin>> = {
  'host-local': hostLocal,
  bridge,
  tuning,
};
