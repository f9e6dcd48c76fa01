// The firewall plugin's verbs (the reference's plugins/meta/firewall): a chained plugin that lets a
// pod's traffic through the host's FORWARD filtering (replies in, everything out) and, with
// `ingressPolicy`, isolates bridges from each other. It changes nothing in the pod's netns, so no verb
// needs CNI_NETNS. One netfilter transaction per verb and family (iptables) or per verb (nftables).
// ADD reads top to bottom: config → prevResult → the pod's addresses (and bridge) → rules → prevResult out.
import { CniError, errorMessage, ErrPluginNotAvailable, ErrTryAgainLater } from '../../../shared/cni/errors';
import { configError } from '../../../shared/cni/config';
import { parseValidAttachments } from '../../../shared/cni/gc';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import type { Family, IP } from '../../../shared/ip';
import { runTool, NetfilterError } from '../../../shared/netfilter/tool';
import { parsePrevResult } from '../../../shared/plugin/prev-result';
import { Rollback } from '../../../shared/plugin/rollback';
import { bridgeName, loadFirewallConf, podAddresses, type FirewallConf } from './config';
import * as ipt from './iptables';
import * as nft from './nftables';

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
    // Each family is one transaction; if IPv6's fails, IPv4's pod rules are taken back (no partial change).
    const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
    try {
      for (const f of FAMILIES) {
        const mine = ofFamily(ips, f);
        if (!mine.length) continue; // as the reference: a family's chains only when the pod has an address of it
        ipt.transact(f, what, (t) => ipt.addLines(t, { adminChain: conf.adminChain, ips: mine, isolation }));
        rollback.push(() => ipt.transact(f, `${what} (undo)`, (t) => ipt.delLines(t, mine)));
      }
    } catch (e) {
      await rollback.run();
      throw e;
    }
    return prev;
  } catch (e) {
    throw netfilterError(e);
  }
}

/**
 * Removes this attachment's rules. iptables: the reference's rules carry no container ID, so they
 * are found by the prevResult's addresses, as the reference does; without a prevResult there is
 * nothing to match and nothing is removed (logged). nftables: found by the attachment's comment,
 * prevResult or not. Chains, jumps and bridge isolation stay (shared by other pods). A missing tool
 * means there is nothing of ours to remove.
 */
async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadFirewallConf(a);
  try {
    if (conf.backend === 'nftables') {
      const t = nft.readTable();
      if (!t) return;
      const comment = nft.attachmentComment(conf.name, a.containerID, a.ifName);
      nft.applyScript(nft.deleteScript(t.pods.filter((p) => p.comment === comment)), `removing firewall rules of ${conf.name}/${a.containerID}`);
      return;
    }
    let ips: IP[] = [];
    try {
      const prev = parsePrevResult(conf.prevResult, a.cniVersion);
      ips = prev ? podAddresses(prev) : [];
    } catch (e) {
      a.log.warn(`DEL: prevResult unreadable, no iptables rule can be matched: ${errorMessage(e)}`);
    }
    if (!ips.length) a.log.info('DEL: no pod address in prevResult; the iptables rules are matched by address, so none is removed');
    for (const f of FAMILIES) {
      const mine = ofFamily(ips, f);
      if (mine.length) ipt.transact(f, `removing firewall rules of ${conf.name}/${a.containerID}`, (t) => ipt.delLines(t, mine));
    }
  } catch (e) {
    if (e instanceof NetfilterError && e.notFound) return;
    throw netfilterError(e);
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
    if (mine.length) ipt.checkTable(ipt.readFilterTable(f), conf.adminChain, mine);
  }
}

/**
 * GC (spec 1.1): nftables removes the elements of this network whose attachment is not in
 * `cni.dev/valid-attachments`. The iptables rules (the reference's) name no container, so nothing
 * there can be attributed to an attachment; iptables GC removes nothing (logged).
 */
async function cmdGC(a: CmdArgs): Promise<void> {
  const conf = loadFirewallConf(a);
  const valid = parseValidAttachments(a.conf);
  if (conf.backend !== 'nftables') {
    a.log.info('GC: iptables firewall rules carry no container ID; nothing to collect');
    return;
  }
  try {
    const t = nft.readTable();
    if (t) nft.applyScript(nft.deleteScript(nft.staleElements(t, conf.name, valid)), `garbage-collecting firewall rules of ${conf.name}`);
  } catch (e) {
    if (e instanceof NetfilterError && e.notFound) return;
    throw netfilterError(e);
  }
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
