// The overlay plugin's verbs (flannel's CNI plugin is the pattern): a pod on an overlay network is a
// bridge + host-local pod on this host's subnet of it. The subnet comes from the host lease the
// overlay agent wrote (overlay/lease-file.ts); the pod path never talks to etcd, so an ADD costs
// what a bridge ADD costs. ADD saves the delegate config, so DEL and CHECK work the same way after
// the lease changed or went away.
import { CniError, ErrPluginNotAvailable, ErrTryAgainLater, errorMessage } from '../../../shared/cni/errors';
import { setupIPMasq, teardownIPMasq } from '../../../shared/netfilter/masquerade';
import { delegateAdd, delegateCheck, delegateDel } from '../../../shared/cni/invoke';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { AttachmentRecords, recordName, type RecordCodec } from '../../../shared/plugin/attachment-records';
import { readLease, type HostLease } from '../../../overlay/lease-file';
import { attachmentsDir, delegateConf, loadOverlayConf, type OverlayConf } from './config';

type Delegate = Record<string, unknown>;

const codec: RecordCodec<Delegate> = {
  plugin: 'overlay',
  maxBytes: 16 * 1024,
  encode: (d) => JSON.stringify(d),
  decode(data, shown) {
    const d = JSON.parse(data.toString('utf8')) as unknown;
    if (typeof d !== 'object' || d === null || (d as Delegate).type !== 'bridge') throw new Error(`${shown} is not an overlay delegate config`);
    return d as Delegate;
  },
};

/** The agent's lease, or CniError 11 (try again later) naming the network and where it looked. */
function requireLease(conf: OverlayConf, code = ErrTryAgainLater): HostLease {
  const lease = readLease(conf.stateDir, conf.network);
  if (!lease)
    throw new CniError(code, `overlay network "${conf.network}" has no host lease on this host yet`, `no ${conf.network}.json in ${conf.stateDir}: is the overlay agent running, and is "${conf.network}" defined in etcd?`);
  return lease;
}

// What a runtime puts in this call's config for the plugin that does the work (CHECK's prevResult,
// capability arguments): passed on to the bridge with the call's own cniVersion.
const PER_CALL = ['cniVersion', 'prevResult', 'runtimeConfig', 'args'] as const;

/** The delegated bridge's CmdArgs: the same call with the delegate config (and this call's per-call keys) as stdin. */
function withConf(a: CmdArgs, d: Delegate): CmdArgs {
  const conf: Delegate = { ...d };
  for (const k of PER_CALL) if (a.conf[k] !== undefined) conf[k] = a.conf[k];
  return { ...a, conf, stdinData: Buffer.from(JSON.stringify(conf)) };
}

async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadOverlayConf(a);
  const lease = requireLease(conf);
  const d = delegateConf(conf, lease);
  const records = AttachmentRecords.create(attachmentsDir(conf), conf.network, codec);
  const name = recordName(a.containerID, a.ifName);
  try {
    records.write(name, d); // first: a DEL after a crash mid-ADD still finds what to release
    let result: Result | undefined;
    try {
      result = await delegateAdd('bridge', withConf(a, d));
      if (conf.ipMasq) setupIPMasq(conf.ipMasqBackend, overlayAddresses(result, lease), conf.name, { containerID: a.containerID, ifname: a.ifName });
      return result;
    } catch (e) {
      if (result) await delegateDel('bridge', withConf(a, d)).catch((u: unknown) => a.log.warn(`cleanup after failed ADD: ${errorMessage(u)}`));
      records.remove(name);
      throw e;
    }
  } finally {
    records.close();
  }
}

/**
 * The pod's IPv4 addresses with the overlay's prefix instead of the host subnet's: the masquerade
 * rules exempt the network of each address, so traffic to any host's pods keeps its source
 * (flannel's rule), and only what leaves the overlay is masqueraded.
 */
function overlayAddresses(r: Result, lease: HostLease): string[] {
  return (r.ips ?? []).filter((ip) => !ip.address.includes(':')).map((ip) => `${ip.address.split('/')[0]}/${lease.subnet.prefix}`);
}

async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadOverlayConf(a);
  if (conf.ipMasq) teardownIPMasq(conf.name, { containerID: a.containerID, ifname: a.ifName });
  const records = AttachmentRecords.open(attachmentsDir(conf), conf.network, codec);
  if (!records) return; // no ADD got as far as the bridge: nothing to release
  try {
    const name = recordName(a.containerID, a.ifName);
    const d = records.read(name);
    if (!d) return;
    await delegateDel('bridge', withConf(a, d));
    records.remove(name);
  } finally {
    records.close();
  }
}

async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadOverlayConf(a);
  const records = AttachmentRecords.open(attachmentsDir(conf), conf.network, codec);
  const d = records?.read(recordName(a.containerID, a.ifName));
  records?.close();
  if (!d) throw new CniError(ErrTryAgainLater, `overlay network "${conf.network}": no attachment of container ${a.containerID} on ${a.ifName}`);
  await delegateCheck('bridge', withConf(a, d));
}

/** Ready when the agent has leased this host a subnet of the network. */
function cmdStatus(a: CmdArgs): void {
  requireLease(loadOverlayConf(a), ErrPluginNotAvailable);
}

export const overlay: Plugin = {
  name: 'overlay',
  about: 'CNI overlay plugin: pods on this host\'s subnet of a VXLAN overlay network (the overlay agent\'s host lease), wired by bridge + host-local',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, status: cmdStatus },
};
