// MAC spoof check on a host veth (the reference's pkg/link/spoofcheck.go): in `table bridge nat`,
// base chain PREROUTING jumps frames from the port to cni-br-iface-<id>, which jumps to
// cni-br-iface-<id>-mac: the pod's MAC returns, anything else is dropped. Every rule carries the
// comment macspoofchk-<id> (id = containerID-ifname), which is how teardown finds them without
// knowing the port name or MAC. Setup is one `nft -f -`; teardown and GC read the table and delete
// over nfnetlink in-process (shared/netfilter/nft.ts).
import { deleteNftRules, readNftRules, type NftRuleInfo, type NftTableDeletion } from './nft';
import { mustRunTool } from './tool';

const FAMILY = 'bridge' as const;
const NAME = 'nat';
const TABLE = `${FAMILY} ${NAME}`;
const BASE = 'PREROUTING';

export const spoofCheckID = (containerID: string, ifname: string): string => `${containerID}-${ifname}`;
export const ifaceChain = (id: string): string => `cni-br-iface-${id}`;
export const macChain = (id: string): string => `${ifaceChain(id)}-mac`;
export const spoofComment = (id: string): string => `macspoofchk-${id}`;

/** The nft script that installs the check (exported for unit tests). */
export function spoofCheckScript(iface: string, mac: string, id: string): string {
  const ic = ifaceChain(id);
  const mc = macChain(id);
  const c = `comment "${spoofComment(id)}"`;
  return [
    `add table ${TABLE}`,
    `add chain ${TABLE} ${BASE} { type filter hook prerouting priority -300 ; policy accept ; }`,
    `add chain ${TABLE} ${ic}`,
    `add chain ${TABLE} ${mc}`,
    `flush chain ${TABLE} ${ic}`,
    `flush chain ${TABLE} ${mc}`,
    `add rule ${TABLE} ${BASE} iifname "${iface}" jump ${ic} ${c}`,
    `add rule ${TABLE} ${ic} jump ${mc} ${c}`,
    `add rule ${TABLE} ${mc} ether saddr ${mac} return ${c}`,
    `add rule ${TABLE} ${mc} drop ${c}`,
    '',
  ].join('\n');
}

/** One atomic nft transaction (the reference needs two and an echo). */
export function setupSpoofCheck(iface: string, mac: string, id: string): void {
  mustRunTool('nft', ['-f', '-'], `failed to setup spoof-check for ${iface}`, spoofCheckScript(iface, mac, id));
}

interface TableState {
  chains: Set<string>;
  rules: NftRuleInfo[];
}

/** The table's chains and rules, read in-process; empty when the table does not exist. */
function listTable(): TableState {
  return readNftRules(FAMILY, NAME) ?? { chains: new Set(), rules: [] };
}

/** Deletes the check's jumps from PREROUTING (by handle) and its two chains (with their rules), in one nfnetlink batch. */
function removeIDs(state: TableState, ids: Set<string>, what: string): void {
  const comments = new Set([...ids].map(spoofComment));
  const t = { family: FAMILY, table: NAME } as const;
  const deletions: NftTableDeletion[] = state.rules.filter((r) => r.chain === BASE && r.comment && comments.has(r.comment)).map((r) => ({ ...t, chain: BASE, rule: r.handle }));
  for (const id of ids) for (const ch of [ifaceChain(id), macChain(id)]) if (state.chains.has(ch)) deletions.push({ ...t, chain: ch });
  deleteNftRules(deletions, what);
}

/** Removes the check of one attachment; succeeds when it is already gone. */
export function teardownSpoofCheck(id: string): void {
  removeIDs(listTable(), new Set([id]), `failed to teardown spoof-check ${id}`);
}

/**
 * GC: the table is shared by every network, so a check is removed only when its attachment is not
 * valid AND `isOurs(port)` says its port belongs to this network (or no longer exists).
 */
export function gcSpoofChecks(validIDs: Set<string>, isOurs: (iface: string | undefined) => boolean): void {
  const state = listTable();
  const stale = new Set<string>();
  for (const r of state.rules) {
    if (r.chain !== BASE || !r.comment?.startsWith('macspoofchk-')) continue;
    const id = r.comment.slice('macspoofchk-'.length);
    if (!validIDs.has(id) && isOurs(r.iifname)) stale.add(id);
  }
  removeIDs(state, stale, 'garbage-collecting spoof-check rules');
}
