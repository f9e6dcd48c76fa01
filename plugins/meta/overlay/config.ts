// The overlay plugin's network configuration: which overlay network, where the agent writes its host
// leases, the pod MTU, and masquerading (ipMasq, ipMasqBackend) done by this plugin for the whole overlay.
import * as z from 'zod/mini';
import { configError, opt, parseConfig, sparseObject, stateDirFromConfig } from '../../../shared/cni/config';
import type { CmdArgs } from '../../../shared/cni/skel';
import { formatCIDR } from '../../../shared/ip';
import { checkMasqBackend, type MasqBackend } from '../../../shared/netfilter/masquerade';
import { DEFAULT_STATE_DIR, type HostLease } from '../../../overlay/lease-file';
import { MIN_POD_MTU, isNetworkName } from '../../../overlay/network';

/**
 * The plugin's own state (flannel's dataDir): <dataDir>/attachments/<network>/ holds the delegate
 * config ADD used, for DEL and CHECK; <dataDir>/ipam is host-local's dataDir. Default: <stateDir>/pods,
 * next to the host lease the addresses come from, so every user of one agent (CNI pods, cnm
 * sandboxes) shares one address store per network, and the reservations go with the lease.
 */
export const dataDirOf = (stateDir: string): string => `${stateDir}/pods`;
export const attachmentsDir = (c: OverlayConf): string => `${c.dataDir}/attachments`;

export interface OverlayConf {
  name: string;
  cniVersion: string;
  /** the overlay network's name in etcd */
  network: string;
  stateDir: string;
  dataDir: string;
  ipMasq: boolean;
  ipMasqBackend: MasqBackend | undefined; // undefined: autodetect
  mtu: number | undefined;
}

function schema(raw: unknown) {
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: () => opt(z.string()),
      network: () => z.string(),
      stateDir: () => opt(z.string()),
      dataDir: () => opt(z.string()),
      ipMasq: () => opt(z.boolean()),
      ipMasqBackend: () => opt(z.string()),
      mtu: () => opt(z.int()),
    },
    { required: ['name', 'network'], loose: true },
  );
}

/** Parses the config; throws CniError code 7 naming the field and its value. */
export function loadOverlayConf(a: CmdArgs): OverlayConf {
  const c = parseConfig(schema(a.conf), a.conf);
  if (!isNetworkName(c.network)) throw configError('network', c.network, 'must be an overlay network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)');
  if (c.mtu !== undefined && c.mtu !== null && c.mtu < MIN_POD_MTU) throw configError('mtu', c.mtu, `must be at least ${MIN_POD_MTU}`);
  const stateDir = stateDirFromConfig('stateDir', c.stateDir, DEFAULT_STATE_DIR);
  return {
    name: c.name,
    cniVersion: a.cniVersion,
    network: c.network,
    stateDir,
    dataDir: stateDirFromConfig('dataDir', c.dataDir, dataDirOf(stateDir)),
    ipMasq: c.ipMasq ?? false,
    ipMasqBackend: checkMasqBackend(c.ipMasqBackend),
    mtu: c.mtu ?? undefined,
  };
}

/**
 * The bridge + host-local config a pod on this host gets (flannel's delegate): the host subnet for
 * addresses, the host's bridge of this VNI as gateway and default route, the overlay's MTU (or a
 * smaller one the config asks for: a larger one could not cross the tunnel). Throws CniError 7 for
 * an MTU over the overlay's.
 */
export function delegateConf(conf: OverlayConf, lease: HostLease): Record<string, unknown> {
  if (conf.mtu !== undefined && conf.mtu > lease.mtu) throw configError('mtu', conf.mtu, `exceeds the MTU ${lease.mtu} of overlay network "${conf.network}" (underlay MTU − 50)`);
  return {
    cniVersion: conf.cniVersion,
    // The overlay network's name, not this config's: host-local keys its store by it, so pods of
    // any config and cnm sandboxes on one network share one store of this host's subnet.
    name: conf.network,
    type: 'bridge',
    bridge: lease.bridge,
    isGateway: true,
    isDefaultGateway: true,
    // Masquerading is this plugin's (main.ts): the bridge's would exempt only this host's subnet
    // and rewrite the source of traffic to every other host's pods.
    ipMasq: false,
    mtu: conf.mtu ?? lease.mtu,
    ipam: { type: 'host-local', subnet: formatCIDR(lease.hostSubnet), dataDir: `${conf.dataDir}/ipam` },
  };
}
