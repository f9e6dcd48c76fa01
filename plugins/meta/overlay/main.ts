// The overlay plugin's verbs (flannel's CNI plugin is the pattern): a pod on an overlay network is a
// bridge + host-local pod on this host's subnet of it. The subnet comes from the host lease the
// overlay agent wrote (overlay/lease-file.ts); the pod path never talks to etcd, so an ADD costs
// what a bridge ADD costs. ADD saves the delegate config, so DEL and CHECK work the same way after
// the lease changed or went away.
import { CniError, ErrPluginNotAvailable, ErrTryAgainLater, errorMessage } from '../../../shared/cni/errors';
import { parseValidAttachments, validAttachmentsConf, type GCAttachment } from '../../../shared/cni/gc';
import { gcIPMasq, setupIPMasq, teardownIPMasq } from '../../../shared/netfilter/masquerade';
import { delegateAdd, delegateCheck, delegateDel, delegateGC } from '../../../shared/cni/invoke';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { Attempts } from '../../../shared/plugin/attempts';
import { AttachmentRecords, recordName, type RecordCodec } from '../../../shared/plugin/attachment-records';
import { readLease, type HostLease } from '../../../overlay/lease-file';
import { attachmentsDir, delegateConf, loadOverlayConf, type OverlayConf } from './config';

type Delegate = Record<string, unknown>;

/**
 * An attachment's record: the delegate config ADD used and the name of the config that ADDed it.
 * The network's records and address store are shared by every config on it and by cnm sandboxes;
 * GC, which a runtime calls with the attachments of one config, must keep the others'.
 */
interface AttachmentRecord {
  /** the ADDing config's name; undefined in a record written before it was kept */
  config?: string;
  delegate: Delegate;
}

const isDelegate = (d: unknown): d is Delegate => typeof d === 'object' && d !== null && (d as Delegate).type === 'bridge';

const codec: RecordCodec<AttachmentRecord> = {
  plugin: 'overlay',
  maxBytes: 16 * 1024,
  encode: (r) => JSON.stringify(r),
  decode(data, shown) {
    const raw = JSON.parse(data.toString('utf8')) as unknown;
    if (isDelegate(raw)) return { delegate: raw }; // the first format: the bare delegate config
    const r = raw as { config?: unknown; delegate?: unknown } | null;
    if (typeof r !== 'object' || r === null || !isDelegate(r.delegate) || (r.config !== undefined && typeof r.config !== 'string')) throw new Error(`${shown} is not an overlay attachment record`);
    return { config: r.config, delegate: r.delegate };
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
    records.write(name, { config: conf.name, delegate: d }); // first: a DEL after a crash mid-ADD still finds what to release
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
    const r = records.read(name);
    if (!r) return;
    await delegateDel('bridge', withConf(a, r.delegate));
    records.remove(name);
  } finally {
    records.close();
  }
}

async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadOverlayConf(a);
  const records = AttachmentRecords.open(attachmentsDir(conf), conf.network, codec);
  const d = records?.read(recordName(a.containerID, a.ifName))?.delegate;
  records?.close();
  if (!d) throw new CniError(ErrTryAgainLater, `overlay network "${conf.network}": no attachment of container ${a.containerID} on ${a.ifName}`);
  await delegateCheck('bridge', withConf(a, d));
}

/**
 * Spec 1.1 GC, for the attachments this config ADDed: the delegated bridge (and through it host-local)
 * collects against `cni.dev/valid-attachments` widened by every attachment recorded under another
 * config name (other configs' pods and cnm sandboxes share the network's address store, and the
 * runtime names only its own); then this config's masquerade rules and the records of its stale
 * attachments go. The bridge's config is the current lease's, or with no lease (the network was
 * removed) a record's: they all name the same bridge and address store. Best effort: every step runs, failures are reported together, a
 * record stays when the bridge's GC failed or was skipped (an unreadable record might be another config's
 * attachment; the next GC retries). Throws CniError 7 for a malformed list.
 */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadOverlayConf(a);
  const valid = parseValidAttachments(a.conf); // a malformed list fails here, before anything is swept
  const attempts = new Attempts(errorMessage);
  const keep = new Set(valid.map((v) => recordName(v.containerID, v.ifname)));
  const records = AttachmentRecords.open(attachmentsDir(conf), conf.network, codec);
  try {
    records?.lock();
    const others: GCAttachment[] = [];
    const stale: string[] = [];
    let recorded: Delegate | undefined;
    const unread: string[] = []; // records that could not be read: whose they are is unknown
    for (const name of records?.names() ?? []) {
      let r: AttachmentRecord | null;
      try {
        r = records!.read(name);
      } catch (e) {
        unread.push(`${records!.path}/${name}: ${errorMessage(e)}`);
        continue;
      }
      if (!r) continue; // gone meanwhile (a DEL)
      recorded = r.delegate;
      const at = name.indexOf(':');
      if (r.config !== conf.name) others.push({ containerID: name.slice(0, at), ifname: name.slice(at + 1) });
      else if (!keep.has(name)) stale.push(name);
    }
    let lease: HostLease | null = null;
    await attempts.run('reading the host lease', () => (lease = readLease(conf.stateDir, conf.network)));
    const d = lease ? delegateConf({ ...conf, mtu: undefined }, lease) : recorded;
    let bridgeDone = !d; // nothing was ever ADDed here: the bridge has nothing of ours to collect
    // An unreadable record may be another config's attachment: its address must not be collected.
    if (unread.length)
      await attempts.run('bridge GC', () => {
        throw new Error(`skipped, unreadable attachment records: ${unread.join('; ')}`);
      });
    else if (d)
      await attempts.run('bridge GC', async () => {
        await delegateGC('bridge', withConf(a, { ...d, ...validAttachmentsConf([...valid, ...others]) }));
        bridgeDone = true;
      });
    await attempts.run('ipMasq GC', () => gcIPMasq(conf.name, valid));
    if (bridgeDone) for (const name of stale) await attempts.run(`removing ${records!.path}/${name}`, () => records!.remove(name));
  } finally {
    records?.close();
  }
  attempts.throwIfAny();
}

/** Ready when the agent has leased this host a subnet of the network. */
function cmdStatus(a: CmdArgs): void {
  requireLease(loadOverlayConf(a), ErrPluginNotAvailable);
}

export const overlay: Plugin = {
  name: 'overlay',
  about: 'CNI overlay plugin: pods on this host\'s subnet of a VXLAN overlay network (the overlay agent\'s host lease), wired by bridge + host-local',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
