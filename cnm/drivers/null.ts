// The null driver (Docker's `none`): the sandbox gets its loopback up and nothing else. A join is
// the `loopback` plugin on `lo`, so even this goes through CNI and shows in the result cache.
import { cniAdd, cniDel, removeConflist, writeConflist } from './cni-attach';
import type { Driver, DriverContext } from './driver';
import { invalid, noAddresses } from '../errors';
import type { NetworkRecord } from '../model';

const list = (n: NetworkRecord): Record<string, unknown> => ({ cniVersion: '1.1.0', name: n.name, plugins: [{ type: 'loopback' }] });

export const nullDriver: Driver = {
  name: 'null',
  scope: 'local',
  usesIpam: false,
  ifName: 'lo',
  exclusive: true,

  async createNetwork(n: NetworkRecord, ctx: DriverContext) {
    if (n.ipam.config.length) throw invalid(`network ${JSON.stringify(n.name)}: the null driver has no addresses (no --subnet)`);
    if (Object.keys(n.options).length) throw invalid(`network ${JSON.stringify(n.name)}: the null driver takes no options`);
    writeConflist(ctx, n.name, list(n));
  },
  async deleteNetwork(n, ctx) {
    removeConflist(ctx, n.name);
  },
  async join(j, ctx) {
    if (j.endpoint.requested) throw noAddresses(j.network);
    await cniAdd(ctx, list(j.network), j);
    return {};
  },
  async leave(j, ctx) {
    await cniDel(ctx, list(j.network), j);
  },
};
