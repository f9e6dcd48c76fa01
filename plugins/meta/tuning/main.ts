// The tuning plugin's verbs (the reference's plugins/meta/tuning): a chained plugin that sets
// sysctls in the pod's netns and the MAC, promiscuous mode, MTU, all-multicast mode and transmit
// queue length of the pod's interface, saving the link's original values for DEL.
// ADD reads top to bottom: config rules → prevResult → sysctls → save the link → change the link → result.
import { errorMessage } from '../../../shared/cni/errors';
import type { CmdArgs, Plugin } from '../../../shared/cni/skel';
import type { Result } from '../../../shared/cni/types';
import { NetnsNotFoundError, withNetns } from '../../../shared/linux/netns';
import { getLink, type Link } from '../../../shared/linux/netlink/link';
import { withNetlink } from '../../../shared/linux/netlink/socket';
import { sysctlGet, sysctlSet } from '../../../shared/linux/sysctl';
import { requirePrevResult } from '../../../shared/plugin/prev-result';
import { Rollback } from '../../../shared/plugin/rollback';
import { changesLink, checkAllowlist, loadTuningConf, planTuning, readAllowlist, rejectDuplicatedSysctlKeys } from './config';
import { changeLink, podLink, restoreLink, savedFrom } from './link';
import { decodeSavedLink, readSavedLinkFile, removeSavedLink, savedLinkPath, writeSavedLink } from './saved-link';


async function cmdAdd(a: CmdArgs): Promise<Result> {
  rejectDuplicatedSysctlKeys(a.stdinData);
  const conf = loadTuningConf(a);
  const plan = planTuning(conf, a.ifName);
  checkAllowlist(plan.sysctls, readAllowlist());
  const result = requirePrevResult(conf.prevResult, a.cniVersion); // chained only
  const savedPath = savedLinkPath(conf.dataDir, a.containerID, a.ifName);

  // Unlike the reference, a failed ADD takes back what it changed: sysctls, the link, the saved file.
  const rollback = new Rollback((e) => a.log.warn(`cleanup after failed ADD: ${errorMessage(e)}`));
  try {
    // /proc/sys/net is the netns of the thread that opens it: all of this runs inside the pod's.
    withNetns(a.netns, () => {
      for (const s of plan.sysctls) {
        const old = sysctlGet(s.path);
        if (sysctlSet(s.path, s.value)) rollback.push(() => withNetns(a.netns, () => sysctlSet(s.path, old)));
      }
      if (!changesLink(plan)) return;
      withNetlink((nl) => {
        const link = podLink(nl, a.ifName);
        const saved = savedFrom(link, plan);
        writeSavedLink(savedPath, saved);
        rollback.push(() => removeSavedLink(savedPath));
        rollback.push(() => {
          const failures = withNetns(a.netns, () => withNetlink((n) => restoreLink(n, a.ifName, saved)));
          if (failures !== 'gone' && failures.length) throw new Error(failures.join('; '));
        });
        changeLink(nl, link, plan);
      });
    });
  } catch (e) {
    await rollback.run();
    throw e;
  }
  // The reference's updateResultsMacAddr: every interface of that name gets the new MAC.
  if (plan.mac) for (const i of result.interfaces ?? []) if (i.name === a.ifName) i.mac = plan.mac;
  return result;
}

/**
 * Restores the saved link values and removes the file. Never fails for the pod's state: the netns
 * or the interface being gone means there is nothing left to restore, and a restore that fails is
 * reported on stderr with the file kept for a later DEL, because an error here would stop the
 * runtime's DEL of the plugins before us in the chain (their veth and address would leak).
 */
async function cmdDel(a: CmdArgs): Promise<void> {
  const conf = loadTuningConf(a);
  const savedPath = savedLinkPath(conf.dataDir, a.containerID, a.ifName);
  let text: string | undefined;
  try {
    text = readSavedLinkFile(savedPath);
  } catch (e) {
    a.log.warn(`DEL: cannot read ${savedPath}, nothing restored: ${errorMessage(e)}`); // e.g. a symlink in its place
    return;
  }
  if (text === undefined) return; // nothing saved, or an earlier DEL restored it
  const saved = decodeSavedLink(text);
  if (saved && a.netns) {
    let failures: string[] | 'gone';
    try {
      failures = withNetns(a.netns, () => withNetlink((nl) => restoreLink(nl, a.ifName, saved)));
    } catch (e) {
      if (!(e instanceof NetnsNotFoundError)) {
        a.log.warn(`DEL: keeping ${savedPath}: ${errorMessage(e)}`);
        return;
      }
      failures = 'gone';
    }
    if (failures !== 'gone' && failures.length) {
      a.log.warn(`DEL: keeping ${savedPath}: ${failures.join('; ')}`);
      return;
    }
  }
  removeSavedLink(savedPath);
}

/** Each configured sysctl and link value still holds in the pod (the reference's cmdCheck, its messages). */
async function cmdCheck(a: CmdArgs): Promise<void> {
  rejectDuplicatedSysctlKeys(a.stdinData);
  const conf = loadTuningConf(a);
  const plan = planTuning(conf, a.ifName);
  requirePrevResult(conf.prevResult, a.cniVersion);
  withNetns(a.netns, () => {
    for (const s of plan.sysctls) {
      const cur = sysctlGet(s.path);
      // Compared by whitespace-separated fields: the kernel prints tcp_rmem's "4096 87380 6291456"
      // with tabs, so the reference's exact comparison fails its own ADD there.
      if (fields(cur) !== fields(s.value))
        throw new Error(`Error: Tuning configured value of /proc/sys/${s.path} is ${s.value}, current value is ${cur}`);
    }
    withNetlink((nl) => {
      let link: Link;
      try {
        link = getLink(nl, a.ifName);
      } catch {
        throw new Error(`Cannot find container link ${a.ifName}`);
      }
      if (plan.mac && plan.mac !== link.mac)
        throw new Error(`Error: Tuning configured Ethernet of ${a.ifName} is ${plan.mac}, current value is ${link.mac}`);
      if (plan.promisc !== link.promisc)
        throw new Error(`Error: Tuning link ${a.ifName} configured promisc is ${plan.promisc}, current value is ${link.promisc ? 1 : 0}`);
      if (plan.mtu && plan.mtu !== link.mtu) throw new Error(`Error: Tuning configured MTU of ${a.ifName} is ${plan.mtu}, current value is ${link.mtu}`);
      if (plan.allmulti !== undefined && plan.allmulti !== link.allmulti)
        throw new Error(`Error: Tuning configured all-multicast mode of ${a.ifName} is ${plan.allmulti}, current value is ${link.allmulti}`);
      if (plan.txQLen !== undefined && plan.txQLen !== link.txQLen)
        throw new Error(`Error: Tuning configured Transmit Queue Length of ${a.ifName} is ${plan.txQLen}, current value is ${link.txQLen}`);
    });
  });
}

const fields = (v: string): string => v.trim().split(/\s+/).join(' ');

export const tuning: Plugin = {
  name: 'tuning',
  about: 'cnikit tuning plugin (sysctls and link settings of the pod interface; reference: containernetworking/plugins tuning)',
  funcs: { add: cmdAdd, del: cmdDel, check: cmdCheck },
};
