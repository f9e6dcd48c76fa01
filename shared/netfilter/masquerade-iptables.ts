// iptables masquerade, rule for rule what the reference's pkg/ip/ipmasq_iptables_linux.go installs
// (chain CNI-<sha512(net+id)>, comment `name: "<net>" id: "<id>"`), applied with one
// `iptables-restore -w --noflush` per family after one listing. Teardown and GC work from the
// container ID and the rule comments alone, so they need neither the netns nor the pod's addresses
// (the reference leaks the rules when DEL has no netns: plugins#810).
import { attachmentHashName } from '../cni/hash-name';
import { formatCIDR, formatIP, networkOf, parseCIDR, type Family } from '../ip';
import { mustRunTool } from './tool';

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

const tool = (f: Family): string => (f === 4 ? 'iptables' : 'ip6tables');
const multicast = (f: Family): string => (f === 4 ? '224.0.0.0/4' : 'ff00::/8');
const hostLen = (f: Family): number => (f === 4 ? 32 : 128);

/** The comment as `iptables -S` prints it, so generated lines compare equal to listed ones. */
const quoted = (comment: string): string => `"${comment.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** The nat table as `iptables -S` lines. */
function listNat(f: Family): string[] {
  return mustRunTool(tool(f), ['-w', '-t', 'nat', '-S'], 'listing nat rules').split('\n').filter(Boolean);
}

function restore(f: Family, lines: string[], what: string): void {
  if (!lines.length) return;
  const input = ['*nat', ...lines, 'COMMIT', ''].join('\n');
  mustRunTool(`${tool(f)}-restore`, ['-w', '--noflush'], what, input);
}

/** Installs the masquerade rules for `addresses` (CIDRs of one pod), skipping rules already present. */
export function setupIPMasqIPTables(addresses: string[], network: string, containerID: string): void {
  const chain = chainName(network, containerID);
  const c = quoted(ruleComment(network, containerID));
  for (const f of [4, 6] as const) {
    const nets = addresses.map((a) => parseCIDR(a)!).filter((n) => n && n.ip.family === f);
    if (!nets.length) continue;
    const existing = new Set(listNat(f));
    const out: string[] = [];
    const add = (line: string): void => {
      if (!existing.has(line)) {
        existing.add(line);
        out.push(line);
      }
    };
    if (!existing.has(`-N ${chain}`)) out.push(`:${chain} - [0:0]`);
    const jumps: string[] = [];
    for (const n of nets) {
      // Same order as the reference's AppendUnique calls: ACCEPT own subnet, MASQUERADE non-multicast.
      add(`-A ${chain} -d ${formatCIDR(networkOf(n))} -m comment --comment ${c} -j ACCEPT`);
      add(`-A ${chain} ! -d ${multicast(f)} -m comment --comment ${c} -j MASQUERADE`);
      jumps.push(`-A POSTROUTING -s ${formatIP(n.ip)}/${hostLen(f)} -m comment --comment ${c} -j ${chain}`);
    }
    jumps.forEach(add); // the chain must exist before POSTROUTING jumps to it (restore applies in order)
    restore(f, out, `setting up ipMasq for ${network}/${containerID}`);
  }
}

/** Lines that remove `chains` and every POSTROUTING jump to them, given a nat listing. */
function removalLines(nat: string[], chains: Set<string>): string[] {
  const out: string[] = [];
  for (const l of nat) {
    const m = /^-A POSTROUTING .* -j (\S+)$/.exec(l);
    if (m && chains.has(m[1]!)) out.push(`-D${l.slice(2)}`);
  }
  for (const ch of chains) if (nat.includes(`-N ${ch}`)) out.push(`-F ${ch}`, `-X ${ch}`);
  return out;
}

/** Removes the pod's chain and the jumps to it in both families, whatever addresses they name. */
export function teardownIPMasqIPTables(network: string, containerID: string, families: Family[] = [4, 6]): void {
  const chain = chainName(network, containerID);
  for (const f of families) restore(f, removalLines(listNat(f), new Set([chain])), `tearing down ipMasq for ${network}/${containerID}`);
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
    for (const l of nat) {
      const m = /^-A (CNI-[0-9a-f]{24}) (.*)$/.exec(l);
      if (!m) continue;
      const at = m[2]!.indexOf(prefix);
      if (at < 0) continue;
      const rest = m[2]!.slice(at + prefix.length);
      const id = rest.slice(0, rest.indexOf('\\"'));
      if (!validIDs.has(id) && chainName(network, id) === m[1]) stale.add(m[1]!);
    }
    restore(f, removalLines(nat, stale), `garbage-collecting ipMasq rules of ${network}`);
  }
}
