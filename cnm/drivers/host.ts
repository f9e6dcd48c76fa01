// The host driver: a sandbox on the host network has no namespace of its own, it runs in the netns
// cnm runs in. Nothing to attach, so no CNI call at all (as Docker's host driver does nothing).
import { invalid, noAddresses } from '../errors';
import type { Driver } from './driver';

export const hostDriver: Driver = {
  name: 'host',
  scope: 'local',
  usesIpam: false,
  exclusive: true,
  hostNetwork: true,

  async createNetwork(n) {
    if (n.ipam.config.length || Object.keys(n.options).length) throw invalid(`network ${JSON.stringify(n.name)}: the host driver takes no --subnet and no options`);
  },
  async deleteNetwork() {},
  async join(j) {
    if (j.endpoint.requested) throw noAddresses(j.network);
    return {};
  },
  async leave() {},
};
