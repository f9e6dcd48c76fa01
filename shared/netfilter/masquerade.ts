// Masquerade for a pod's addresses (the reference's SetupIPMasqForNetworks and friends): pick a
// backend, install; teardown and GC always sweep both backends, since the pod may have been set up
// by another version or configuration.
import { CniError, errorMessage, ErrInvalidNetworkConfig } from '../cni/errors';
import type { Family } from '../ip';
import { familyOf } from '../ip';
import { findTool, NetfilterError } from './tool';
import { gcIPMasqIPTables, setupIPMasqIPTables, teardownIPMasqIPTables } from './masquerade-iptables';
import { gcIPMasqNFTables, setupIPMasqNFTables, teardownIPMasqNFTables } from './masquerade-nftables';

export type MasqBackend = 'iptables' | 'nftables';

/**
 * A config's `ipMasqBackend`: undefined/null = autodetect (defaultBackend), `iptables` or `nftables`.
 * Anything else throws CniError code 7 with the reference's message (`unknown ipmasq backend "x"`).
 */
export function checkMasqBackend(v: string | null | undefined): MasqBackend | undefined {
  if (v === undefined || v === null || v === 'iptables' || v === 'nftables') return v ?? undefined;
  throw new CniError(ErrInvalidNetworkConfig, `unknown ipmasq backend ${JSON.stringify(v)}`);
}

/** The reference prefers iptables unless only nftables is available. */
export function defaultBackend(): MasqBackend {
  return !findTool('iptables') && findTool('nft') ? 'nftables' : 'iptables';
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

export function setupIPMasq(backend: MasqBackend | undefined, addresses: string[], network: string, a: Attachment): void {
  if ((backend ?? defaultBackend()) === 'nftables') setupIPMasqNFTables(addresses, network, a.ifname, a.containerID);
  else setupIPMasqIPTables(addresses, network, a.containerID);
}

/** Runs every sweep, collecting errors; a missing tool means that backend has nothing to remove. */
function sweepAll(steps: Array<() => void>): void {
  const errs: string[] = [];
  for (const s of steps) {
    try {
      s();
    } catch (e) {
      if (e instanceof NetfilterError && e.notFound) continue;
      errs.push(errorMessage(e));
    }
  }
  if (errs.length) throw new Error(errs.join('; '));
}

/**
 * Removes the pod's masquerade rules by container ID (and ifname for nftables). `addresses` (the
 * prevResult's CIDRs) narrow the iptables sweep to the pod's families and let it try the write-only
 * removal first; without them both families are listed and swept.
 *
 * DEL calls it before deleting the pod's veth: the kernel frees deleted rules one RCU grace period
 * later, and whatever next waits for that (the release of an nfnetlink socket, the next rule commit
 * in the netns: nfnl.ts) then finds it passed during the veth deletion's own ~15-25 ms in
 * rcu_barrier() (the podman chain's DEL, measured alternately: 151 -> 137 ms, before sockets were
 * released in the background).
 */
export function teardownIPMasq(network: string, a: Attachment, addresses?: string[]): void {
  let families: Family[] = [4, 6];
  if (addresses?.length) families = [...new Set(addresses.map((x) => familyOf(x)).filter((f): f is Family => f !== null))];
  sweepAll([
    () => teardownIPMasqIPTables(network, a.containerID, families, addresses),
    () => teardownIPMasqNFTables(network, a.ifname, a.containerID),
  ]);
}

/** GC: remove rules of this network whose attachment is not in the valid list. */
export function gcIPMasq(network: string, valid: Attachment[]): void {
  sweepAll([() => gcIPMasqIPTables(network, new Set(valid.map((v) => v.containerID))), () => gcIPMasqNFTables(network, valid)]);
}
