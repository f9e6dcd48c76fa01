// The portmap plugin's verbs (the reference's plugins/meta/portmap): a chained plugin that forwards
// host ports to the pod's addresses from prevResult, with iptables or nftables. ADD reads top to
// bottom: config → prevResult → pod addresses → read each family's table (one process each) →
// conflicts → route_localnet → one write transaction per family (iptables) or for all (nftables) →
// the attachment record (records.ts) → stale UDP conntrack entries of the mapped ports.
// DEL and GC find the pod's rules by its chain name or comment, never by its current address; the
// record tells DEL and GC which attachments have rules, with which backend and to which addresses.
import { CniError, ErrPluginNotAvailable, errorMessage } from '../../../shared/cni/errors';
import { parseValidAttachments, type GCAttachment } from '../../../shared/cni/gc';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { contains, type Family, type IP } from '../../../shared/ip';
import { AF_INET, NETLINK_NETFILTER } from '../../../shared/linux/netlink/constants';
import { deleteConntrackForDstPort, IPPROTO_UDP } from '../../../shared/linux/netlink/conntrack';
import { FileError } from '../../../shared/linux/files';
import { getLink } from '../../../shared/linux/netlink/link';
import { listRoutes } from '../../../shared/linux/netlink/route';
import { withNetlink } from '../../../shared/linux/netlink/socket';
import { sysctlGet, sysctlSet } from '../../../shared/linux/sysctl';
import { readTable, transact, transactEach, undoLines } from '../../../shared/netfilter/iptables';
import type { MasqBackend } from '../../../shared/netfilter/masquerade';
import { findTool } from '../../../shared/netfilter/tool';
import { parsePrevResult, requirePrevResult } from '../../../shared/plugin/prev-result';
import { Attempts } from '../../../shared/plugin/attempts';
import { AttachmentRecords, recordName } from '../../../shared/plugin/attachment-records';
import { Rollback } from '../../../shared/plugin/rollback';
import { loadPortMapConf, podAddresses, type PodAddress, type PortMapConf } from './config';
import * as ipt from './iptables';
import * as nft from './nftables';
import { PORTMAP_RECORDS, type PortMapRecord } from './records';

type Store = AttachmentRecords<PortMapRecord>;

const FAMILIES: Family[] = [4, 6];
const famName = (f: Family): string => (f === 4 ? 'IPv4' : 'IPv6');

async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadPortMapConf(a);
  const prev = parsePrevResult(conf.prevResult, a.cniVersion);
  if (!prev) throw new Error('must be called as chained plugin'); // the reference's text
  if (!conf.portMappings.length) return prev; // nothing to forward: no netfilter process at all
  const pods = podAddresses(prev, a.ifName);
  if (!pods.length) return prev;

  const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
  // Opened (and locked against GC) before any rule: a store that cannot be made fails the ADD unchanged.
  const store = AttachmentRecords.create(conf.dataDir, conf.name, PORTMAP_RECORDS);
  try {
    store.lock();
    if (conf.backend === 'nftables') {
      const tables = new Map(pods.map((p) => [p.family, nft.readTable(p.family)]));
      for (const p of pods) nft.checkConflicts(conf, a.containerID, p.family, tables.get(p.family)!);
      localnetRouting(conf, pods, rollback);
      nft.writeScript(
        pods.flatMap((p) => nft.addLines(conf, a.containerID, p, tables.get(p.family)!)),
        `setting up port mappings for ${conf.name}/${a.containerID}`,
      );
      rollback.push(() => nftDelAttachment(a.containerID, pods, `taking back port mappings of ${conf.name}/${a.containerID}`));
    } else {
      const tables = new Map(pods.map((p) => [p.family, ipt.readForAdd(conf, a.containerID, p.family)]));
      for (const p of pods) ipt.checkConflicts(conf, a.containerID, p.family, tables.get(p.family)!);
      localnetRouting(conf, pods, rollback);
      for (const p of pods) {
        const what = `setting up ${famName(p.family)} port mappings for ${conf.name}/${a.containerID}`;
        const done = transact(p.family, 'nat', what, (nat) => ipt.addLines(conf, a.containerID, p, nat), tables.get(p.family));
        // A later family's failure takes this one's change back: the ADD applies whole or not at all.
        rollback.push(() => void transact(p.family, 'nat', `taking back ${famName(p.family)} port mappings`, (now) => undoLines(done.lines, now, done.before)));
      }
    }
    // After the rules: a record names only rules that exist. If it cannot be written, the rules go too.
    store.write(recordName(a.containerID, a.ifName), { containerID: a.containerID, ifName: a.ifName, backend: conf.backend, pods, portMappings: conf.portMappings });
  } catch (e) {
    await rollback.run();
    throw e;
  } finally {
    store.close();
  }
  deleteStaleUDPFlows(a, conf, pods);
  return prev; // passed through unchanged, as the reference
}

/**
 * Deletes the conntrack entries of the mapped UDP host ports, after the rules are in: a UDP flow
 * seen before (e.g. a client retrying towards a port that was not mapped yet) would otherwise keep
 * its old entry and never be NATed. As in the reference, a failure is only logged.
 */
function deleteStaleUDPFlows(a: CmdArgs, conf: PortMapConf, pods: PodAddress[]): void {
  const ports = [...new Set(conf.portMappings.filter((m) => m.protocol === 'udp').map((m) => m.hostPort))];
  if (!ports.length) return;
  try {
    withNetlink(
      (nl) => {
        for (const p of pods) for (const port of ports) deleteConntrackForDstPort(nl, p.family, IPPROTO_UDP, port);
      },
      undefined,
      NETLINK_NETFILTER,
    );
  } catch (e) {
    a.log.warn(`failed to delete stale UDP conntrack entries for ${conf.name}/${a.containerID}: ${errorMessage(e)}`);
  }
}

/**
 * route_localnet=1 on the host interface that routes to the pod's IPv4 address, so that 127/8 may
 * cross to it (localhost access to a mapped port, the reference's enableLocalnetRouting). Undone by
 * `rollback` when this ADD fails; left set by DEL, as the reference (other pods may need it).
 */
function localnetRouting(conf: PortMapConf, pods: PodAddress[], rollback: Rollback): void {
  const v4 = pods.find((p) => p.family === 4);
  if (!conf.snat || !v4) return;
  const ifName = routingInterface(v4.net.ip);
  if (!ifName) return;
  const key = `net/ipv4/conf/${ifName}/route_localnet`;
  const old = sysctlGet(key);
  if (sysctlSet(key, '1')) rollback.push(() => sysctlSet(key, old));
}

/** The interface of the most specific main-table route to `ip` in the host netns, or undefined. */
function routingInterface(ip: IP): string | undefined {
  return withNetlink((nl) => {
    const best = listRoutes(nl, { family: AF_INET })
      .filter((r) => r.oif !== undefined && contains(r.dst, ip))
      .sort((x, y) => y.dst.prefix - x.dst.prefix)[0];
    return best ? getLink(nl, best.oif!).name : undefined;
  });
}

/**
 * Removes the container's rules, found by the per-pod chain name (iptables) or the container-ID
 * comment (nftables): no netns or prevResult needed, and a pod whose address changed is still
 * cleaned. The attachment record says which backend wrote the rules and to which addresses: that
 * backend is cleaned first, in the families of the recorded addresses, and with portMappings the
 * configured backend too when it is another (the config changed since ADD), in both families as the
 * reference. nftables rules carry only the container ID, so with a record only those leading to a
 * recorded address go (the same container on another network keeps its rules); without one, every
 * rule with the container ID (upstream's DEL). Without portMappings and without a record (the
 * reference removes nothing then): nothing to do and no netfilter process run. A family whose table
 * cannot be read is skipped (no IPv6 nat here) unless the record has an address in it (DEL fails,
 * naming it) or, without a record, neither can be read. The record goes last: a failed DEL keeps it
 * for the retry and for GC.
 */
async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  const name = recordName(a.containerID, a.ifName);
  const what = `removing port mappings of ${conf.name}/${a.containerID}`;
  let store: Store | null = null;
  let record: PortMapRecord | null = null;
  try {
    store = AttachmentRecords.open(conf.dataDir, conf.name, PORTMAP_RECORDS);
    record = store?.read(name) ?? null;
  } catch (e) {
    // Unreadable: with portMappings the rules are still found by name; without, nothing tells us where.
    a.log.warn(`DEL: attachment record ${conf.name}/${name} unreadable: ${errorMessage(e)}`);
  }
  try {
    // The recorded backend first (it wrote the rules), then the configured one if the config changed since.
    const backends = new Set<MasqBackend>([...(record ? [record.backend] : []), ...(conf.portMappings.length ? [conf.backend] : [])]);
    for (const backend of backends) {
      const needed = backend === record?.backend ? [...new Set(record.pods.map((p) => p.family))] : [];
      const families = conf.portMappings.length ? FAMILIES : needed;
      const failed = delRules(conf.name, a.containerID, backend, families, record?.pods ?? null, what);
      const missed = needed.filter((f) => failed.has(f));
      if (missed.length) throw new Error(`${what}: ${missed.map((f) => `${famName(f)} ${backend} table unreadable (${failed.get(f)})`).join('; ')}; attachment record kept`);
      if (!record && failed.size === families.length) throw unusable(failed);
      for (const [f, e] of failed) a.log.warn(`DEL: ${famName(f)} ${backend} table skipped: ${e}`);
    }
    // Neither a record nor portMappings: a runtime that does not repeat the capability args, and the
    // record lost or kept under another dataDir (the one before the default moved to /run/cni). With
    // iptables-nft the pod's chain is looked up by name, one netlink request per family and no process,
    // so its DNAT rules do not outlive the pod (the reference removes nothing then, nor do we with
    // iptables-legacy, where only an iptables-save per family could tell).
    if (!record && !conf.portMappings.length && conf.backend === 'iptables') {
      const left = FAMILIES.filter((f) => {
        try {
          return ipt.chainLeft(conf.name, a.containerID, f) === true;
        } catch (e) {
          a.log.warn(`DEL: ${famName(f)} nat table not searched for ${conf.name}/${a.containerID}'s chain: ${errorMessage(e)}`);
          return false;
        }
      });
      if (left.length) delRules(conf.name, a.containerID, 'iptables', left, null, what);
    }
    if (record) store!.remove(name);
  } finally {
    store?.close();
  }
}

/**
 * Deletes the rules of `containerID` on `network` with `backend` in `families`: iptables by the
 * per-pod chain name; nftables, when `pods` is given (the recorded addresses), only the rules leading
 * to them, else every rule commented with the container ID. Returns the families whose table could
 * not be read (with the error), which were skipped; a write failure throws.
 */
function delRules(network: string, containerID: string, backend: MasqBackend, families: Family[], pods: PodAddress[] | null, what: string): Map<Family, string> {
  if (backend === 'nftables') {
    const { tables, failed } = readFamilies(families, (f) => nft.readTable(f, containerID));
    nft.deleteRules(tables.map(([f, rules]) => [f, pods ? nft.attachmentRules(containerID, pods, f, rules) : nft.containerRules(containerID, rules)]), what);
    return failed;
  }
  const { tables, failed } = readFamilies(families, (f) => readTable(f, 'nat', ipt.delScope(network, containerID)));
  transactEach(tables.map(([f]) => f), 'nat', what, (t) => ipt.delLines(network, containerID, t), new Map(tables));
  return failed;
}

/** ADD's rollback: deletes the nftables rules of `containerID` to its addresses `pods` (one read per family, one batch). */
function nftDelAttachment(containerID: string, pods: PodAddress[], what: string): void {
  const fams = [...new Set(pods.map((p) => p.family))];
  nft.deleteRules(fams.map((f) => [f, nft.attachmentRules(containerID, pods, f, nft.readTable(f, containerID))]), what);
}

/** One family's nat table (in-process with iptables-nft, else one iptables-save). Throws NetfilterError. */
const readNat = (f: Family): ipt.NatTable => readTable(f, 'nat');

/** The error when no family's table can be read. */
const unusable = (failed: Map<Family, string>): Error => new Error(`neither IPv4 nor IPv6 netfilter is usable: ${[...failed].map(([f, e]) => `${famName(f)}: ${e}`).join('; ')}`);

/** Runs `read` for each of `families`: the tables read, and the families that failed with their error. */
function readFamilies<T>(families: Family[], read: (f: Family) => T): { tables: Array<[Family, T]>; failed: Map<Family, string> } {
  const tables: Array<[Family, T]> = [];
  const failed = new Map<Family, string>();
  for (const f of families) {
    try {
      tables.push([f, read(f)]);
    } catch (e) {
      failed.set(f, errorMessage(e));
    }
  }
  return { tables, failed };
}

/** The pod's rules are all in place for each of its addresses (the reference's cmdCheck, stricter: see checkFamily). */
async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  const prev = requirePrevResult(conf.prevResult, a.cniVersion);
  if (!conf.portMappings.length) return;
  for (const p of podAddresses(prev, a.ifName)) {
    if (conf.backend === 'nftables') nft.checkFamily(conf, a.containerID, p, nft.readTable(p.family));
    else ipt.checkFamily(conf, a.containerID, p, readNat(p.family));
  }
}

/**
 * Spec 1.1 GC (the reference's portmap has none): removes the rules and attachment records of this
 * network's attachments that are not in `cni.dev/valid-attachments`. iptables: the per-pod chains
 * of this network (the entry rules' comment names it) whose container is not valid, recorded or not,
 * one read and at most one write per family. nftables: the rules carry only the container ID
 * (upstream's format), so a stale attachment is known by its record and its rules by ID and recorded
 * address, one script for all; rules without a record here (another network's, or ADDed by the
 * reference) are left, and logged. Best effort: every step runs, the failures are reported together;
 * a record whose rules could not be removed stays for the next GC, as does one with an address in a
 * family whose table could not be read (skipped, as on a host without IPv6 nat; reported then).
 */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  const valid = parseValidAttachments(a.conf);
  const store = AttachmentRecords.open(conf.dataDir, conf.name, PORTMAP_RECORDS);
  const attempts = new Attempts(errorMessage);
  try {
    store?.lock();
    const stale = await staleRecords(a, store, valid, attempts);
    const validIDs = new Set(valid.map((v) => v.containerID));
    let removed = false;
    let failed = new Map<Family, string>(); // families whose table could not be read: their rules were not looked for
    if (conf.backend === 'nftables') {
      await attempts.run(`removing nftables port mappings of stale attachments of ${conf.name}`, () => {
        const read = readFamilies(FAMILIES, nft.readTable);
        failed = read.failed;
        if (!read.tables.length) throw unusable(failed);
        // A container with another, valid attachment here keeps its rules (they share the comment).
        const gone = [...stale.values()].filter((r): r is PortMapRecord => !!r && r.backend === 'nftables' && !validIDs.has(r.containerID));
        nft.deleteRules(read.tables.map(([f, rules]) => [f, gone.flatMap((r) => nft.attachmentRules(r.containerID, r.pods, f, rules))]), `garbage-collecting port mappings of ${conf.name}`);
        const recorded = new Set((store?.names() ?? []).map((n) => n.slice(0, n.indexOf(':'))));
        const unrecorded = [...new Set(read.tables.flatMap(([, rules]) => rules.flatMap((r) => (r.comment !== undefined && !recorded.has(r.comment) ? [r.comment] : []))))];
        if (unrecorded.length)
          a.log.info(`GC: nftables port mappings of ${unrecorded.join(', ')} have no attachment record of ${conf.name} (another network's, or ADDed by another portmap plugin?); left to DEL`);
        removed = true;
      });
    } else {
      await attempts.run(`removing iptables port mappings of stale attachments of ${conf.name}`, () => {
        const read = readFamilies(FAMILIES, readNat);
        failed = read.failed;
        if (!read.tables.length) throw unusable(failed);
        for (const [f, nat] of read.tables) transact(f, 'nat', `garbage-collecting port mappings of ${conf.name}`, (t) => ipt.gcLines(conf.name, validIDs, t), nat);
        removed = true;
      });
    }
    // A record of the other backend (the config changed since its ADD) stays: this run did not look
    // for its rules; so does one with an address in a family whose table could not be read (reported).
    if (removed)
      for (const [name, r] of stale) {
        if (r && r.backend !== conf.backend) continue;
        const missed = [...new Set((r?.pods ?? []).map((p) => p.family))].filter((f) => failed.has(f));
        await attempts.run(`removing ${store!.path}/${name}`, () => {
          if (missed.length) throw new Error(`kept: ${missed.map((f) => `${famName(f)} ${conf.backend} table unreadable (${failed.get(f)})`).join('; ')}`);
          store!.remove(name);
        });
      }
  } finally {
    store?.close();
  }
  attempts.throwIfAny();
}

/** The records of `store` not named by `valid` (null for one that is not a record: it goes, its rules cannot be found). */
async function staleRecords(a: CmdArgs, store: Store | null, valid: GCAttachment[], attempts: Attempts): Promise<Map<string, PortMapRecord | null>> {
  const keep = new Set(valid.map((v) => recordName(v.containerID, v.ifname)));
  const stale = new Map<string, PortMapRecord | null>();
  for (const name of store?.names() ?? []) {
    if (keep.has(name)) continue;
    await attempts.run(`reading ${store!.path}/${name}`, () => {
      try {
        stale.set(name, store!.read(name));
      } catch (e) {
        if (e instanceof FileError) throw e;
        a.log.warn(`GC: ${errorMessage(e)}; removing it, its rules (if any) cannot be found`);
        stale.set(name, null);
      }
    });
  }
  return stale;
}

/** STATUS: code 50 when the backend's tool cannot read its IPv4 table here (not installed, no permission, no nat support). */
async function cmdStatus(a: CmdArgs): Promise<void> {
  const conf = loadPortMapConf(a);
  try {
    if (conf.backend === 'nftables') {
      // The table is read in-process; ADD still needs nft to write it.
      if (!findTool('nft')) throw new Error('nft not found in PATH or /usr/sbin, /sbin, /usr/bin, /bin');
      nft.readTable(4);
    } else readNat(4);
  } catch (e) {
    throw new CniError(ErrPluginNotAvailable, `${conf.backend} is not usable: ${errorMessage(e)}`, '', { cause: e });
  }
}

export const portmap: Plugin = {
  name: 'portmap',
  about: 'cnikit portmap plugin (host port forwarding with iptables or nftables; reference: containernetworking/plugins portmap)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
