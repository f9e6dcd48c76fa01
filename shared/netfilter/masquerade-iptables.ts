// iptables masquerade, rule for rule what the reference's pkg/ip/ipmasq_iptables_linux.go installs
// (chain CNI-<sha512(net+id)>, comment `name: "<net>" id: "<id>"`). ADD, and DEL with the pod's
// addresses, are one write-only `iptables-restore -w --noflush` per family; when the kernel's state is
// not what that transaction assumes, it is rejected whole and one listing plus one restore does it.
// That path, teardown without addresses and GC work from the container ID and the rule comments
// alone, so they need neither the netns nor the pod's addresses (the reference leaks the rules when
// DEL has no netns: plugins#810).
import { attachmentHashName } from '../cni/hash-name';
import { bits, formatCIDR, formatIP, networkOf, parseCIDR, type Family } from '../ip';
import { readsInProcess, readTable, restore as restoreTable, transact, transactEach, type IptTable } from './iptables';
import { NetfilterError } from './tool';

const MAX_CHAIN = 28;

/**
 * `CNI-` + prefix + hex sha512(name+id), cut to 28 characters (the reference's
 * utils.FormatChainName / MustFormatChainNameWithPrefix; portmap uses prefix `DN-`).
 */
export function chainName(network: string, containerID: string, prefix = ''): string {
  return attachmentHashName('CNI-' + prefix, network, containerID, MAX_CHAIN);
}

/** Go's fmt.Sprintf("name: %q id: %q"); names and IDs are restricted to [A-Za-z0-9_.-], so %q is plain quoting. */
export function ruleComment(network: string, containerID: string): string {
  return `name: ${JSON.stringify(network)} id: ${JSON.stringify(containerID)}`;
}

const multicast = (f: Family): string => (f === 4 ? '224.0.0.0/4' : 'ff00::/8');

/** The comment as iptables-save prints it, so generated lines compare equal to listed ones. */
const quoted = (comment: string): string => `"${comment.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** The nat table (in-process with iptables-nft, else one iptables-save). */
const listNat = (f: Family): IptTable => readTable(f, 'nat');

const restore = (f: Family, lines: string[], what: string): void => restoreTable(f, 'nat', lines, what);

/** The pod's lines for one family: its chain's rules and the POSTROUTING jumps to it, as iptables-save prints them. */
function podLines(f: Family, addresses: string[], network: string, containerID: string): { chain: string; rules: string[]; jumps: string[] } {
  const chain = chainName(network, containerID);
  const c = quoted(ruleComment(network, containerID));
  const rules: string[] = [];
  const jumps: string[] = [];
  for (const a of addresses) {
    const n = parseCIDR(a);
    if (!n || n.ip.family !== f) continue;
    // Same order as the reference's AppendUnique calls: ACCEPT own subnet, MASQUERADE non-multicast.
    rules.push(`-A ${chain} -d ${formatCIDR(networkOf(n))} -m comment --comment ${c} -j ACCEPT`);
    rules.push(`-A ${chain} ! -d ${multicast(f)} -m comment --comment ${c} -j MASQUERADE`);
    jumps.push(`-A POSTROUTING -s ${formatIP(n.ip)}/${bits(f)} -m comment --comment ${c} -j ${chain}`);
  }
  return { chain, rules, jumps };
}

/**
 * The write-only ADD transaction of one family: `-N` the pod's chain, its rules, then the jumps (the
 * chain must exist before POSTROUTING jumps to it; restore applies in order). `-N` rather than
 * `:CHAIN - [0:0]`: the transaction fails as a whole when the chain already exists (a repeated ADD,
 * a leftover), and the read-then-write path then adds only what is missing, so no second jump is
 * appended. Empty when the pod has no address of the family.
 */
export function fastSetupScript(f: Family, addresses: string[], network: string, containerID: string): string[] {
  const { chain, rules, jumps } = podLines(f, addresses, network, containerID);
  return jumps.length ? [`-N ${chain}`, ...rules, ...jumps] : [];
}

/**
 * The write-only DEL transaction of one family: delete the jumps of the pod's addresses, flush and
 * delete its chain. It fails as a whole when a jump or the chain is absent, when another jump still
 * references the chain (a duplicate, an older address), or when the addresses changed. Empty when
 * the pod has no address of the family.
 */
export function fastTeardownScript(f: Family, addresses: string[], network: string, containerID: string): string[] {
  const { chain, jumps } = podLines(f, addresses, network, containerID);
  return jumps.length ? [...jumps.map((j) => `-D${j.slice(2)}`), `-F ${chain}`, `-X ${chain}`] : [];
}

/**
 * Applies a write-only transaction; false when the tool rejected it (nothing was changed: a restore
 * commits all or nothing), so the caller takes the read-then-write path. A missing tool is thrown.
 */
function tryRestore(f: Family, lines: string[], what: string): boolean {
  try {
    restore(f, lines, what);
    return true;
  } catch (e) {
    // Any exit status, 4 included: iptables-nft reports a busy chain (-X of a referenced chain) as 4.
    if (e instanceof NetfilterError && !e.notFound) return false;
    throw e;
  }
}

/**
 * Installs the masquerade rules for `addresses` (CIDRs of one pod): one write-only `iptables-restore`
 * per family; when that is rejected, one listing and a restore of the lines not already present.
 */
export function setupIPMasqIPTables(addresses: string[], network: string, containerID: string): void {
  const what = `setting up ipMasq for ${network}/${containerID}`;
  for (const f of [4, 6] as const) {
    const fast = fastSetupScript(f, addresses, network, containerID);
    if (!fast.length || tryRestore(f, fast, what)) continue;
    const { chain, rules, jumps } = podLines(f, addresses, network, containerID);
    const nat = listNat(f);
    const existing = new Set(nat.rules);
    const out: string[] = [];
    if (!nat.chains.has(chain)) out.push(`:${chain} - [0:0]`);
    for (const line of [...rules, ...jumps]) {
      if (!existing.has(line)) {
        existing.add(line);
        out.push(line);
      }
    }
    restore(f, out, what);
  }
}

/** Lines that remove `chains` and every POSTROUTING jump to them, given the nat table (POSTROUTING's rules, whether `chains` exist). */
function removalLines(nat: IptTable, chains: Set<string>): string[] {
  const out: string[] = [];
  for (const l of nat.rules) {
    const m = /^-A POSTROUTING .* -j (\S+)$/.exec(l);
    if (m && chains.has(m[1]!)) out.push(`-D${l.slice(2)}`);
  }
  for (const ch of chains) if (nat.chains.has(ch)) out.push(`-F ${ch}`, `-X ${ch}`);
  return out;
}

/**
 * Removes the pod's chain and every POSTROUTING jump to it in `families`, whatever addresses they
 * name. With iptables-nft: the table read in-process and the removals found deleted over netlink
 * (no process). Else, with `addresses` (the prevResult's CIDRs) each family first tries the
 * write-only transaction of fastTeardownScript; without them, or when it is rejected, one listing
 * and a restore of the removals found (nothing is written when nothing is there).
 */
export function teardownIPMasqIPTables(network: string, containerID: string, families: Family[] = [4, 6], addresses: string[] = []): void {
  const chain = chainName(network, containerID);
  const what = `tearing down ipMasq for ${network}/${containerID}`;
  const read: Family[] = [];
  for (const f of families) {
    // With iptables-nft the table is read in-process and the removals go over netlink: no process.
    const fast = readsInProcess(f) ? [] : fastTeardownScript(f, addresses, network, containerID);
    if (!fast.length || !tryRestore(f, fast, what)) read.push(f);
  }
  // Both families' removals in one batch when they go over netlink (one commit: transactEach). Read:
  // POSTROUTING's jumps to the pod's chain and whether the chain exists (it goes by name: -F, -X);
  // decoding every other pod's rules would make a DEL on a busy node slower than the reference's.
  transactEach(read, 'nat', what, (nat) => removalLines(nat, new Set([chain])), undefined, [{ chain: 'POSTROUTING', mentioning: [chain] }, { chain, mentioning: [] }]);
}

/**
 * GC: removes the chains of this network whose container ID is not in `validIDs`. The chain name is
 * a hash, so the network and ID come from the comment on its rules (the reference has no iptables GC).
 */
export function gcIPMasqIPTables(network: string, validIDs: Set<string>): void {
  const prefix = `-m comment --comment "name: \\"${network}\\" id: \\"`;
  for (const f of [4, 6] as const) {
    const nat = listNat(f);
    const stale = new Set<string>();
    for (const l of nat.rules) {
      const m = /^-A (CNI-[0-9a-f]{24}) (.*)$/.exec(l);
      if (!m) continue;
      const at = m[2]!.indexOf(prefix);
      if (at < 0) continue;
      const rest = m[2]!.slice(at + prefix.length);
      const id = rest.slice(0, rest.indexOf('\\"'));
      if (!validIDs.has(id) && chainName(network, id) === m[1]) stale.add(m[1]!);
    }
    transact(f, 'nat', `garbage-collecting ipMasq rules of ${network}`, (t) => removalLines(t, stale), nat);
  }
}
