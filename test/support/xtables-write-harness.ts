// Writes iptables rule lines in-process, as the plugins do with iptables-nft (restore()'s
// encodeAdditions, then one nfnetlink batch), for test/integration/xtables-nft-write.test.ts. Runs
// in the netns it is started in; the table and the chains must exist. stdin: {"family": 4|6,
// "table": "nat"|"filter", "lines": ["-A CHAIN ...", ...]}; stdout: {"encoded": [true|false per
// line], "error"?: "..."}. Nothing is written when a line is not encodable.
import { readFileSync } from 'node:fs';
import { nftAdd } from '../../shared/linux/netlink/nftables';
import { encodeAdditions, type IptTableName } from '../../shared/netfilter/iptables';
import { netfilterSocket } from '../../shared/netfilter/nfnl';

const input = JSON.parse(readFileSync(0, 'utf8')) as { family: 4 | 6; table: IptTableName; lines: string[] };
// restore()'s own encoding, line by line for the report, then of all the lines for the one batch.
const encoded = input.lines.map((line) => encodeAdditions(input.family, input.table, [line]) !== undefined);
const additions = encodeAdditions(input.family, input.table, input.lines);
let error: string | undefined;
try {
  if (additions) nftAdd(netfilterSocket(), additions);
} catch (e) {
  error = (e as Error).message;
}
process.stdout.write(JSON.stringify({ encoded, ...(error ? { error } : {}) }));
