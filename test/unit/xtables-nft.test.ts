// The in-process reader of iptables-nft's tables (shared/netfilter/xtables-nft.ts) against what the
// kernel and iptables-save really gave for the same state (xtables-nft-captured.json): every line
// iptables-save printed, byte for byte, from the dumped chain and rule messages.
import { decodeChain, decodeRule } from '../../shared/linux/netlink/nftables';
import { saveLines, saveString, Undecodable } from '../../shared/netfilter/xtables-nft';
import captures from './xtables-nft-captured.json';

type Capture = { chains: string[]; rules: string[]; save: string[] };
const BUILTINS: Record<string, string[]> = { nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], filter: ['INPUT', 'FORWARD', 'OUTPUT'] };

function decode(key: string) {
  const c = (captures as unknown as Record<string, Capture>)[key]!;
  const table = key.split(' ').pop()!;
  const f = key.includes('ip6 ') ? 6 : 4;
  // The chain dump has every table of the family (the kernel ignores the table filter there): keep the table's, as nftListChains does.
  const chains = c.chains.map((h) => decodeChain(Buffer.from(h, 'hex'))).filter((ch) => ch.table === table);
  const rules = c.rules.map((h) => decodeRule(Buffer.from(h, 'hex'))).filter((r) => r.table === table);
  return { c, out: saveLines(f, BUILTINS[table]!, chains, rules) };
}

describe('iptables-nft tables read over netlink print as iptables-save prints them', () => {
  test.each(['ip nat', 'ip filter', 'ip6 nat', 'ip6 filter'])('%s: the same rule lines in the same order, the same chains', (key) => {
    const { c, out } = decode(key);
    expect(out.rules.map((r) => r.line)).toEqual(c.save.filter((l) => l.startsWith('-A ')));
    expect(out.chains).toEqual(c.save.filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]));
    expect(out.rules.every((r) => r.handle > 0n)).toBe(true); // each line keeps its handle, for deleting it
  });

  test('the captures cover every form the plugins write and the usual foreign ones (negations, wildcards, ranges, goto, marks, v6 DNAT)', () => {
    const all = ['ip nat', 'ip filter', 'ip6 nat', 'ip6 filter'].flatMap((k) => decode(k).out.rules.map((r) => r.line)).join('\n');
    for (const form of [' ! -d 224.0.0.0/4 ', ' ! -o docker0 ', ' ! -i docker+ ', ' ! --dport 8000 ', ' --sport 1000:2000 --dport 9 ', ' --dports 8080,8443,9000:9010 ', ' -g CNI-ADMIN', '/255.0.255.0 ', ' ! --ctstate INVALID,NEW ', ' --mark 0x2000/0x2000 ', ' ! --mark 0x1 ', ' --src-type LOCAL,BROADCAST ', ' --comment plain_comment-1 ', ' --to-destination [fd00::2]:53', ' --to-destination fd00::2\n', ' --set-xmark 0x2000/0x2000'])
      expect(all).toContain(form);
  });

  test('a rule outside the subset (-m statistic) makes the whole listing Undecodable, so the caller execs iptables-save', () => {
    expect(() => decode('undecodable ip filter')).toThrow(Undecodable);
    expect(() => decode('undecodable ip filter')).toThrow(/match statistic/);
  });

  test('strings are saved as xtables_save_string does: bare only for [-_0-9A-Za-z], else quoted with " \\ \' escaped', () => {
    expect(saveString('plain_comment-1')).toBe('plain_comment-1');
    expect(saveString('a.b')).toBe('"a.b"');
    expect(saveString('name: "x" id: \'y\'')).toBe('"name: \\"x\\" id: \\\'y\\\'"');
    expect(saveString('')).toBe('""');
  });
});
