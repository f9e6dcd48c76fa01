// The firewall plugin's verbs (the reference's plugins/meta/firewall): a chained plugin that lets a
// pod's traffic through the host's FORWARD filtering (replies in, everything out) and, with
// `ingressPolicy`, isolates bridges from each other. It changes nothing in the pod's netns, so no verb
// needs CNI_NETNS. One netfilter transaction per verb and family (iptables) or per verb (nftables).
// ADD reads top to bottom: config → prevResult → the pod's addresses (and bridge) → rules → (iptables)
// the attachment record (records.ts), which DEL and GC use to find the reference-format rules → prevResult out.
import { CniError, errorMessage, ErrPluginNotAvailable, ErrTryAgainLater } from '../../../shared/cni/errors';
import { configError } from '../../../shared/cni/config';
import { parseValidAttachments } from '../../../shared/cni/gc';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { formatIP, ipEqual, type Family, type IP } from '../../../shared/ip';
import { readTable, transact, transactEach, undoLines } from '../../../shared/netfilter/iptables';
import { runTool, NetfilterError } from '../../../shared/netfilter/tool';
import { parsePrevResult } from '../../../shared/plugin/prev-result';
import { Attempts } from '../../../shared/plugin/attempts';
import { Rollback } from '../../../shared/plugin/rollback';
import { bridgeName, loadFirewallConf, podAddresses, type FirewallConf } from './config';
import * as ipt from './iptables';
import * as nft from './nftables';
import { FileError } from '../../../shared/linux/files';
import { AttachmentRecords, DataDirLock } from '../../../shared/plugin/attachment-records';
import { addressesRecordedElsewhere, FIREWALL_RECORDS, recordName, type RecordStore } from './records';

/** The prevResult every verb but DEL needs (code 7: firewall only makes sense chained after an interface plugin). */
function requirePrev(conf: FirewallConf, cniVersion: string): Result {
  const prev = parsePrevResult(conf.prevResult, cniVersion);
  if (!prev) throw configError('prevResult', undefined, 'missing prevResult from earlier plugin: chain "firewall" after the plugin that creates the interface');
  return prev;
}

function isolationOf(conf: FirewallConf, prev: Result): ipt.IsolationPlan | undefined {
  return conf.ingressPolicy === 'open' ? undefined : { bridge: bridgeName(prev, conf.ingressPolicy), policy: conf.ingressPolicy };
}

const FAMILIES = [4, 6] as const;
const ofFamily = (ips: IP[], f: Family): IP[] => ips.filter((ip) => ip.family === f);

/** A held xtables lock is "try again later" (code 11), not a plugin failure. */
function netfilterError(e: unknown): unknown {
  if (e instanceof NetfilterError && e.kind === 'try-again') return new CniError(ErrTryAgainLater, e.message, '', { cause: e });
  return e;
}

async function cmdAdd(a: CmdArgs): Promise<Result> {
  const conf = loadFirewallConf(a);
  const prev = requirePrev(conf, a.cniVersion);
  const ips = podAddresses(prev);
  const isolation = isolationOf(conf, prev);
  const what = `adding firewall rules for ${conf.name}/${a.containerID}`;
  try {
    if (conf.backend === 'nftables') {
      if (ips.length || isolation) nft.applyScript(nft.addScript(ips, nft.attachmentComment(conf.name, a.containerID, a.ifName), isolation), what);
      return prev;
    }
    // Each family is one transaction; if IPv6's fails, exactly what IPv4's added (rules, and the
    // chains it created) is taken back: no partial change.
    const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
    // Opened (and locked) before any rule: a store that cannot be made fails the ADD unchanged.
    const store = ips.length ? AttachmentRecords.create(conf.dataDir, conf.name, FIREWALL_RECORDS) : null;
    let all: DataDirLock | null = null;
    try {
      // The dataDir's lock, then the network's (one order everywhere): DEL and GC of any network
      // read every record before their restore, and must not see this ADD half done.
      all = store && DataDirLock.take(conf.dataDir, 'firewall');
      store?.lock();
      for (const f of FAMILIES) {
        const mine = ofFamily(ips, f);
        if (!mine.length) continue; // as the reference: a family's chains only when the pod has an address of it
        const added = transact(f, 'filter', what, (t) => ipt.addLines(t, { adminChain: conf.adminChain, ips: mine, isolation }), undefined, ipt.addScope(conf.adminChain, mine)).lines;
        if (added.length) rollback.push(() => void transact(f, 'filter', `${what} (undo)`, (t) => undoLines(added, t)));
      }
      // After the rules: a record names only rules that exist. If it cannot be written, the rules go too.
      store?.write(recordName(a.containerID, a.ifName), { containerID: a.containerID, ifName: a.ifName, ips });
    } catch (e) {
      await rollback.run();
      throw e;
    } finally {
      store?.close();
      all?.release();
    }
    return prev;
  } catch (e) {
    throw netfilterError(e);
  }
}

/**
 * Removes this attachment's rules. iptables: the reference's rules carry no container ID, so they
 * are found by address: the prevResult's (as the reference) and the attachment record's (so DEL
 * also works without prevResult or when the address changed). A record-only address that another
 * attachment's record names is kept (it was reused). Then the record goes. A pod the reference
 * ADDed has no record: prevResult alone, as today. Records and rules are changed under the
 * dataDir's and the network's locks (code 11 after 10 s). nftables: found by the attachment's comment.
 * Chains, jumps and bridge isolation stay (shared by other pods). A missing tool means there is
 * nothing of ours to remove.
 */
async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadFirewallConf(a);
  try {
    if (conf.backend === 'nftables') {
      const t = nft.readTable();
      if (!t) return;
      const comment = nft.attachmentComment(conf.name, a.containerID, a.ifName);
      nft.deleteElements(t.pods.filter((p) => p.comment === comment), `removing firewall rules of ${conf.name}/${a.containerID}`);
      return;
    }
  } catch (e) {
    if (e instanceof NetfilterError && e.notFound) return;
    throw netfilterError(e);
  }
  let ips: IP[] = [];
  try {
    const prev = parsePrevResult(conf.prevResult, a.cniVersion);
    ips = prev ? podAddresses(prev) : [];
  } catch (e) {
    a.log.warn(`DEL: prevResult unreadable, its addresses cannot be matched: ${errorMessage(e)}`);
  }
  const name = recordName(a.containerID, a.ifName);
  let store: RecordStore | null = null;
  let all: DataDirLock | null = null;
  try {
    // Locked (dataDir, then network: ADD's order) from the record read to the record's removal: an
    // ADD reusing a record-only address cannot finish in between (it would skip the rules it finds,
    // and this DEL would then remove them from under the new pod).
    try {
      all = DataDirLock.take(conf.dataDir, 'firewall');
      store = AttachmentRecords.open(conf.dataDir, conf.name, FIREWALL_RECORDS);
      store?.lock();
      const extra = (store?.read(name)?.ips ?? []).filter((r) => !ips.some((p) => ipEqual(p, r)));
      if (extra.length) {
        const live = addressesRecordedElsewhere(conf.dataDir, conf.name, new Set([name]));
        for (const ip of extra) {
          if (live.has(formatIP(ip))) a.log.warn(`DEL: ${formatIP(ip)} from ${conf.name}/${name}'s record is another attachment's now; its rules stay`);
          else ips.push(ip);
        }
      }
    } catch (e) {
      if (e instanceof CniError) throw e; // a held lock (code 11): retried later, never removed unlocked
      a.log.warn(`DEL: attachment record of ${conf.name}/${name} unreadable, using prevResult alone: ${errorMessage(e)}`);
    }
    try {
      if (!ips.length) a.log.info('DEL: no pod address in prevResult or an attachment record; no iptables rule is removed');
      const families = FAMILIES.filter((f) => ofFamily(ips, f).length);
      transactEach(families, 'filter', `removing firewall rules of ${conf.name}/${a.containerID}`, (t, f) => ipt.delLines(t, ofFamily(ips, f)), undefined, ipt.delScope(ips));
    } catch (e) {
      if (!(e instanceof NetfilterError && e.notFound)) throw netfilterError(e);
    }
    // After the rules: a DEL that failed above keeps the record, so a retry still knows the addresses.
    store?.remove(name);
  } finally {
    store?.close();
    all?.release();
  }
}

/** The reference's cmdCheck: the chains, jumps and the pod's rules are there (nftables: its elements and the forward chain). */
async function cmdCheck(a: CmdArgs): Promise<void> {
  const conf = loadFirewallConf(a);
  const prev = requirePrev(conf, a.cniVersion);
  const ips = podAddresses(prev);
  if (conf.backend === 'nftables') {
    if (ips.length) nft.checkTable(nft.readTable(), ips, nft.attachmentComment(conf.name, a.containerID, a.ifName), isolationOf(conf, prev));
    return;
  }
  for (const f of FAMILIES) {
    const mine = ofFamily(ips, f);
    if (mine.length) ipt.checkTable(readTable(f, 'filter'), conf.adminChain, mine);
  }
}

/**
 * GC (spec 1.1): removes the rules of this network's attachments that are not in
 * `cni.dev/valid-attachments`. nftables: the elements by comment. iptables: by the attachment
 * records; a stale record's addresses lose their pod rules (one transaction per family for the
 * whole GC), unless another attachment's record names them, then the record goes. Rules without a
 * record (ADDed by the reference) cannot be attributed: they stay, and are logged. Best effort: every
 * step runs, the failures are reported together; a record whose rules could not be removed stays
 * for the next GC. Holds the dataDir's and the network's locks for the whole run (code 11 after 10 s).
 */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadFirewallConf(a);
  const valid = parseValidAttachments(a.conf);
  if (conf.backend === 'nftables') {
    try {
      const t = nft.readTable();
      if (t) nft.deleteElements(nft.staleElements(t, conf.name, valid), `garbage-collecting firewall rules of ${conf.name}`);
    } catch (e) {
      if (e instanceof NetfilterError && e.notFound) return;
      throw netfilterError(e);
    }
    return;
  }
  // The dataDir's lock, then the network's (ADD's order), for the whole run: the live check reads
  // every network's records, and no ADD or DEL of any network may change them before our restore.
  const all = DataDirLock.take(conf.dataDir, 'firewall');
  let store: RecordStore | null = null;
  try {
    store = AttachmentRecords.open(conf.dataDir, conf.name, FIREWALL_RECORDS);
  } catch (e) {
    all?.release();
    throw e;
  }
  const keep = new Set(valid.map((v) => recordName(v.containerID, v.ifname)));
  const attempts = new Attempts(errorMessage);
  const stale = new Map<string, IP[]>(); // record name -> its addresses
  try {
    store?.lock();
    for (const name of store?.names() ?? []) {
      if (keep.has(name)) continue;
      await attempts.run(`reading ${store!.path}/${name}`, () => {
        try {
          stale.set(name, store!.read(name)?.ips ?? []);
        } catch (e) {
          if (e instanceof FileError) throw e;
          // Not a record (its addresses are unknowable): it goes, or every later GC would trip on it.
          a.log.warn(`GC: ${errorMessage(e)}; removing it, its rules (if any) cannot be found`);
          stale.set(name, []);
        }
      });
    }
    const live = addressesRecordedElsewhere(conf.dataDir, conf.name, new Set(stale.keys()));
    const staleIPs = new Set([...stale.values()].flat().map(formatIP));
    const gone = [...stale.values()].flat().filter((ip) => !live.has(formatIP(ip)));
    const failed = new Set<Family>();
    for (const f of FAMILIES) {
      await attempts.run(`removing IPv${f} firewall rules of stale attachments of ${conf.name}`, () => {
        try {
          const t = readTable(f, 'filter');
          const unrecorded = ipt.podAddressesInTable(t).filter((s) => !live.has(s) && !staleIPs.has(s));
          if (unrecorded.length)
            a.log.info(`GC: CNI-FORWARD rules for ${unrecorded.join(', ')} have no attachment record (ADDed by another firewall plugin?); left in place`);
          const mine = ofFamily(gone, f);
          if (mine.length) transact(f, 'filter', `garbage-collecting firewall rules of ${conf.name}`, (tt) => ipt.delLines(tt, mine), t);
        } catch (e) {
          if (e instanceof NetfilterError && e.notFound) return; // no iptables: no rule of ours either
          failed.add(f);
          throw netfilterError(e);
        }
      });
    }
    for (const [name, ips] of stale) {
      if (ips.some((ip) => failed.has(ip.family))) continue;
      await attempts.run(`removing ${store!.path}/${name}`, () => store!.remove(name));
    }
  } finally {
    store?.close();
    all?.release();
  }
  attempts.throwIfAny();
}

/** STATUS (spec 1.1): code 50 unless the backend's tool runs and can read the kernel's tables. */
async function cmdStatus(a: CmdArgs): Promise<void> {
  const conf = loadFirewallConf(a);
  const [tool, args] = conf.backend === 'nftables' ? ['nft', ['list', 'tables']] : ['iptables-save', ['-t', 'filter']];
  let why: string | undefined;
  try {
    const r = runTool(tool, args as string[]);
    if (r.status !== 0) why = `${tool} ${(args as string[]).join(' ')} failed (exit ${r.status}): ${r.stderr.trim().split('\n')[0]}`;
  } catch (e) {
    why = errorMessage(e);
  }
  if (why) throw new CniError(ErrPluginNotAvailable, `firewall backend ${JSON.stringify(conf.backend)} is not usable: ${why}`);
}

export const firewall: Plugin = {
  name: 'firewall',
  about: 'cnikit firewall plugin (FORWARD accept rules for the pod, bridge isolation; reference: containernetworking/plugins firewall)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck, gc: cmdGC, status: cmdStatus },
};
