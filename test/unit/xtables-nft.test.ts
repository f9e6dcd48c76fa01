// The in-process reader of iptables-nft's tables (shared/netfilter/xtables-nft.ts) against what the
// kernel and iptables-save really gave for the same state (xtables-nft-captured.json): every line
// iptables-save printed, byte for byte, from the dumped chain and rule messages.
import { decodeChain, decodeRule } from '../../shared/linux/netlink/nftables';
import { attr } from '../../shared/linux/netlink/message';
import { splitArgs } from '../../shared/netfilter/iptables';
import { encodeRule, ruleLine, saveLines, saveString, Undecodable } from '../../shared/netfilter/xtables-nft';
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

describe('rule lines written in-process (encodeRule): the expressions iptables-restore wrote for the same lines', () => {
  const exprsOf = (b: Buffer) => decodeRule(Buffer.concat([Buffer.alloc(4), attr(4, b)])).exprs;
  /** Each captured rule of `key` whose line encodeRule takes, with its line and the kernel's expressions. */
  function encodable(key: string) {
    const { out } = decode(key);
    const f = key.includes('ip6 ') ? 6 : 4;
    const byHandle = new Map((captures as unknown as Record<string, Capture>)[key]!.rules.map((h) => decodeRule(Buffer.from(h, 'hex'))).map((r) => [r.handle, r]));
    return out.rules.flatMap((r) => {
      const [, , ...args] = splitArgs(r.line);
      const mine = encodeRule(f, key.split(' ')[1]!, args);
      return mine ? [{ line: r.line, f, mine: exprsOf(mine.exprs), proto: mine.proto, kernel: byHandle.get(r.handle)!.exprs }] : [];
    });
  }

  test('the masquerade rules of both families are taken: ACCEPT own subnet, MASQUERADE non-multicast, the POSTROUTING jumps', () => {
    const lines = [...encodable('ip nat'), ...encodable('ip6 nat')].map((r) => r.line);
    expect(lines).toEqual(expect.arrayContaining([
      expect.stringMatching(/^-A CNI-9832a5ce2046f7d8ebefbad6 -d 198\.18\.200\.0\/24 -m comment --comment .* -j ACCEPT$/),
      expect.stringMatching(/^-A CNI-9832a5ce2046f7d8ebefbad6 ! -d 224\.0\.0\.0\/4 -m comment --comment .* -j MASQUERADE$/),
      expect.stringMatching(/^-A POSTROUTING -s 198\.18\.200\.10\/32 -m comment --comment .* -j CNI-9832a5ce2046f7d8ebefbad6$/),
      expect.stringMatching(/^-A CNI-abc ! -d ff00::\/8 -j MASQUERADE$/),
      expect.stringMatching(/^-A POSTROUTING -s fd00::2\/128 -m comment --comment .* -j CNI-abc$/),
    ]));
  });

  test('the firewall\'s per-pod rules of both families are taken: replies in (conntrack --ctstate), everything out', () => {
    const lines = [...encodable('ip filter'), ...encodable('ip6 filter')].map((r) => r.line);
    expect(lines).toEqual(expect.arrayContaining([
      '-A CNI-FORWARD -d 198.18.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
      '-A CNI-FORWARD -d fd00::2/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s fd00::2/128 -j ACCEPT',
    ]));
  });

  test('portmap\'s per-pod and shared rules are taken (multiport, tcp/udp ports and ranges, DNAT of both families, MARK, mark), with the protocol for NFTA_RULE_COMPAT; addrtype is not', () => {
    const all = [...encodable('ip nat'), ...encodable('ip6 nat')];
    const lines = all.map((r) => r.line);
    expect(lines).toEqual(expect.arrayContaining([
      '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"brnet\\" id: \\"ctr1\\"" -m multiport --dports 8080,8443,9000:9010 -j CNI-DN-2fbf118d4cafd020f0132',
      '-A CNI-DN-2fbf118d4cafd020f0132 -s 127.0.0.1/32 -d 198.18.0.7/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK',
      '-A CNI-DN-2fbf118d4cafd020f0132 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.2:80',
      '-A CNI-DN-2fbf118d4cafd020f0132 -p tcp -m tcp --sport 1000:2000 --dport 9 -j DNAT --to-destination 198.18.0.2',
      '-A CNI-DN-2fbf118d4cafd020f0132 -p udp -m udp --dport 53 -j DNAT --to-destination [fd00::2]:53',
      '-A CNI-DN-2fbf118d4cafd020f0132 -p tcp -m tcp --dport 54 -j DNAT --to-destination fd00::2',
      '-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
      '-A CNI-HOSTPORT-MASQ -m mark ! --mark 0x1 -j RETURN',
      '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000',
    ]));
    expect(lines.filter((l) => l.includes('addrtype'))).toEqual([]);
    for (const r of all) expect({ line: r.line, proto: r.proto }).toEqual({ line: r.line, proto: / -p tcp /.test(r.line) ? 6 : / -p udp /.test(r.line) ? 17 : undefined });
  });

  test.each(['ip nat', 'ip6 nat', 'ip filter', 'ip6 filter'])('%s: the same expressions in the same order, every attribute written equal to the kernel\'s', (key) => {
    for (const r of encodable(key)) {
      expect({ line: r.line, names: r.mine.map((e) => e.name) }).toEqual({ line: r.line, names: r.kernel.map((e) => e.name) });
      r.mine.forEach((e, i) => {
        for (const [type, value] of e.attrs) expect({ line: r.line, expr: e.name, type, value: value.toString('hex') }).toEqual({ line: r.line, expr: e.name, type, value: r.kernel[i]!.attrs.get(type)?.toString('hex') });
      });
    }
  });

  test('-m mark compares the value unmasked, as add_nft_mark does (--mark 0x3/0x1 never matches, in either writer)', () => {
    const e = exprsOf(encodeRule(4, 'filter', ['-m', 'mark', '--mark', '0x3/0x1', '-j', 'RETURN'])!.exprs);
    expect(e.map((x) => x.name)).toEqual(['meta', 'bitwise', 'cmp', 'counter', 'immediate']);
    expect(e[2]!.attrs.get(3)!.toString('hex')).toBe('0800010003000000');
  });

  test('a port range from 1 to 65534 and ports of opposite senses are still encoded as 1.8.9 does: a range, two compares', () => {
    const range = exprsOf(encodeRule(4, 'filter', ['-p', 'udp', '-m', 'udp', '--dport', '1:65534', '-j', 'ACCEPT'])!.exprs);
    expect(range.map((x) => x.name)).toEqual(['meta', 'cmp', 'payload', 'range', 'counter', 'immediate']);
    const mixed = exprsOf(encodeRule(4, 'filter', ['-p', 'tcp', '-m', 'tcp', '--sport', '1', '!', '--dport', '2', '-j', 'ACCEPT'])!.exprs);
    expect(mixed.map((x) => x.name)).toEqual(['meta', 'cmp', 'payload', 'cmp', 'payload', 'cmp', 'counter', 'immediate']);
  });

  test('each encoded rule reads back as its own line', () => {
    for (const key of ['ip nat', 'ip6 nat', 'ip filter', 'ip6 filter']) for (const r of encodable(key)) expect(ruleLine(r.f as 4 | 6, { chain: r.line.split(' ')[1]!, handle: 1n, exprs: r.mine })).toBe(r.line);
  });

  test('lines outside the subset are not encodable: other matches and targets, a jump to a chain that is not a CNI one, /0, a bad address, an option out of order', () => {
    for (const args of [
      ['-p', 'icmp', '-j', 'ACCEPT'],
      ['!', '-p', 'tcp', '-j', 'ACCEPT'],
      ['-p', 'tcp', '-m', 'udp', '--dport', '53', '-j', 'ACCEPT'],
      ['-p', 'tcp', '-m', 'tcp', '--dport', '70000', '-j', 'ACCEPT'],
      ['-m', 'multiport', '--dports', '80', '-j', 'ACCEPT'], // multiport needs -p
      ['-p', 'tcp', '-m', 'multiport', '--dports', Array.from({ length: 16 }, (_, i) => 1000 + i).join(','), '-j', 'ACCEPT'],
      ['-p', 'tcp', '-j', 'DNAT', '--to-destination', '198.18.0.2:80-90'],
      ['-p', 'tcp', '-j', 'DNAT', '--to-destination', '[fd00::2]:80'], // IPv6 in an IPv4 table
      ['-j', 'MARK', '--set-mark', '0x1'],
      ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT'],
      ['-j', 'SNAT', '--to-source', '1.2.3.4'],
      ['-j', 'DOCKER'],
      ['-d', '0.0.0.0/0', '-j', 'ACCEPT'],
      ['-d', '198.18.0.1', '-j', 'ACCEPT'],
      ['-d', '198.18.0.300/32', '-j', 'ACCEPT'],
      ['-d', '198.18.0.0/24', '-s', '198.18.0.1/32', '-j', 'ACCEPT'],
      ['-m', 'comment', '--comment', 'x'.repeat(256), '-j', 'ACCEPT'],
      ['-m', 'comment', '--comment', 'caf\u00e9', '-j', 'ACCEPT'],
      ['-d', 'fd00::/64', '-j', 'ACCEPT'], // an IPv6 address in an IPv4 rule
      ['-s', '198.18.0.1/32'],
      ['-m', 'conntrack', '!', '--ctstate', 'NEW', '-j', 'DROP'],
      ['-m', 'conntrack', '--ctstate', 'NEW,BOGUS', '-j', 'DROP'],
      ['-m', 'conntrack', '--ctstatus', 'ASSURED', '-j', 'DROP'],
      // what 1.8.9 writes otherwise, or what iptables reads otherwise or refuses:
      ['-p', 'tcp', '-m', 'tcp', '--sport', '1', '--dport', '2', '-j', 'ACCEPT'], // one 4-byte compare in 1.8.9
      ['-p', 'tcp', '-m', 'tcp', '--dport', '0:1023', '-j', 'ACCEPT'], // a one-sided compare in 1.8.9
      ['-p', 'tcp', '-m', 'tcp', '--dport', '1024:65535', '-j', 'ACCEPT'],
      ['-p', 'tcp', '-m', 'tcp', '--dport', '010', '-j', 'ACCEPT'], // octal to iptables
      ['-p', 'tcp', '-m', 'multiport', '--dports', '80:80', '-j', 'ACCEPT'], // refused by iptables
      ['-m', 'mark', '--mark', '4294967297', '-j', 'RETURN'],
      ['-m', 'mark', '--mark', '010', '-j', 'RETURN'],
      ['-d', '198.18.0.0/024', '-j', 'ACCEPT'],
      ['-j', 'DNAT', '--to-destination', '198.18.0.2:80'], // a port needs -p tcp|udp
    ])
      expect({ args, encoded: encodeRule(4, 'filter', args) }).toEqual({ args, encoded: undefined });
    expect(encodeRule(4, 'nat', ['-j', 'DROP'])).toBeUndefined(); // iptables inhibits DROP in nat
    expect(encodeRule(4, 'filter', ['-j', 'DROP'])).toBeDefined();
  });
});
