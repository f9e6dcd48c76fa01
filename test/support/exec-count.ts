// Counting the netfilter processes one plugin call execs, and the nfnetlink batches (nf_tables
// transactions) it sends itself: the call runs under `strace -f -e trace=execve,sendto,sendmsg`; the
// successful execs of iptables*, ip6tables* and nft are counted, and the datagrams that open a batch.
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from './cni';

export interface ExecCount {
  v4: number; // iptables*, excluding ip6tables*
  v6: number; // ip6tables*
  nft: number;
  restores: { v4: number; v6: number };
  tools: string[]; // every netfilter program exec'd, in order (for failure messages)
  batches: number; // nfnetlink batches sent by the call's own processes (not by the tools it exec'd)
  result: RunResult;
}

/**
 * Runs `run(prefix)`, where `prefix` is the strace command line to put before the plugin binary (inside
 * `ip netns exec`), and counts the netfilter tools the call exec'd successfully and the nfnetlink
 * batches its own processes sent.
 */
export async function countNetfilterExecs(run: (prefix: string[]) => Promise<RunResult>): Promise<ExecCount> {
  const dir = mkdtempSync(join(tmpdir(), 'nf-strace-'));
  try {
    const out = join(dir, 'trace');
    const result = await run(['strace', '-f', '-qq', '-e', 'trace=execve,sendto,sendmsg', '-o', out]);
    const lines = readFileSync(out, 'utf8').split('\n');
    const tools = lines
      .filter((l) => / = 0$/.test(l))
      .map((l) => /execve\("[^"]*\/([^"/]+)"/.exec(l)?.[1])
      .filter((t): t is string => !!t && /^(ip6?tables|nft$)/.test(t));
    // The pids that exec'd a netfilter tool: their batches are the tool's, not the plugin's.
    const toolPids = new Set(lines.filter((l) => / = 0$/.test(l) && /execve\("[^"]*\/(?:ip6?tables[^"/]*|nft)"/.test(l)).map((l) => l.split(' ', 1)[0]));
    // A batch is one datagram opening with NFNL_MSG_BATCH_BEGIN: type 0x10 (strace names it when it
    // knows the socket's protocol), 20 bytes long, where an RTM_NEWLINK (also 0x10) has 32 at least.
    const batches = lines.filter((l) => !toolPids.has(l.split(' ', 1)[0]) && /send(?:to|msg)\(\d+, .*?\{nlmsg_len=20, nlmsg_type=(?:0x10|NFNL_MSG_BATCH_BEGIN)[ ,]/.test(l)).length;
    const v6 = tools.filter((t) => t.startsWith('ip6tables'));
    const v4 = tools.filter((t) => t.startsWith('iptables'));
    return {
      v4: v4.length,
      v6: v6.length,
      nft: tools.filter((t) => t === 'nft').length,
      restores: { v4: v4.filter((t) => t.includes('restore')).length, v6: v6.filter((t) => t.includes('restore')).length },
      tools,
      batches,
      result,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whether this host's iptables is iptables-nft (/usr/sbin/iptables-restore is xtables-nft-multi):
 * then the plugins read its tables and delete from them in-process, and exec only to add rules.
 */
export function iptablesIsNft(): boolean {
  try {
    return realpathSync('/usr/sbin/iptables-restore').endsWith('/xtables-nft-multi');
  } catch {
    return false;
  }
}
