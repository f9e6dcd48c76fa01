// Writes iptables rule lines in-process, as the plugins do with iptables-nft (encodeRule, then one
// nfnetlink batch), for test/integration/xtables-nft-write.test.ts. Runs in the netns it is started
// in; the table and the chains must exist. stdin: {"family": 4|6, "table": "nat"|"filter", "lines":
// ["-A CHAIN ...", ...]}; stdout: {"encoded": [true|false per line], "error"?: "..."}. Nothing is
// written when a line is not encodable.
import { readFileSync } from 'node:fs';
import { NFPROTO_IPV4, NFPROTO_IPV6, nftAdd, type NftAddition } from '../../shared/linux/netlink/nftables';
import { splitArgs } from '../../shared/netfilter/iptables';
import { netfilterSocket } from '../../shared/netfilter/nfnl';
import { encodeRule } from '../../shared/netfilter/xtables-nft';

const input = JSON.parse(readFileSync(0, 'utf8')) as { family: 4 | 6; table: string; lines: string[] };
const family = input.family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
const additions: NftAddition[] = [];
const encoded = input.lines.map((line) => {
  const [, chain = '', ...rest] = splitArgs(line);
  const rule = encodeRule(input.family, input.table, rest);
  if (rule) additions.push({ family, table: input.table, chain, ...rule });
  return rule !== undefined;
});
let error: string | undefined;
try {
  if (encoded.every(Boolean)) nftAdd(netfilterSocket(), additions);
} catch (e) {
  error = (e as Error).message;
}
process.stdout.write(JSON.stringify({ encoded, ...(error ? { error } : {}) }));
