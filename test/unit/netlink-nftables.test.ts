// nf_tables deletions (shared/linux/netlink/nftables.ts nftDelete): one nfnetlink batch, as the kernel
// takes it (nfnetlink_rcv_batch): BATCH_BEGIN for the nftables subsystem, the deletions each asking
// for an ack, BATCH_END. And the rule dump of one chain (nftListRules), on captured kernel messages.
import { nftDelete, nftListRules } from '../../shared/linux/netlink/nftables';
import { parseAttrs } from '../../shared/linux/netlink/message';
import type { NetlinkSocket } from '../../shared/linux/netlink/socket';
import { ruleLine } from '../../shared/netfilter/xtables-nft';
import captures from './xtables-nft-captured.json';

function capture(run: (nl: NetlinkSocket) => void): Buffer[] {
  let sent: Buffer[] = [];
  run({ batch: (msgs: Buffer[]) => void (sent = msgs) } as unknown as NetlinkSocket);
  return sent;
}
const str = (b: Buffer | undefined): string => (b ? b.toString('latin1').replace(/\0+$/, '') : '');

test('a rule by handle, a flush and chains of two families: BEGIN (res_id nftables), DELRULE with handle, DELRULE without, DELCHAIN ×2, END; each change asks for an ack', () => {
  const nat = { family: 2, table: 'nat' };
  const msgs = capture((nl) => nftDelete(nl, [{ ...nat, chain: 'POSTROUTING', rule: 87n }, { ...nat, flush: 'CNI-x' }, { ...nat, chain: 'CNI-x' }, { family: 10, table: 'nat', chain: 'CNI-y' }]));
  expect(msgs.map((m) => m.readUInt16LE(4))).toEqual([0x10, 0xa08, 0xa08, 0xa05, 0xa05, 0x11]);
  expect(msgs.map((m) => m.readUInt16LE(6))).toEqual([0x1, 0x5, 0x5, 0x5, 0x5, 0x1]);
  expect(msgs.slice(1, -1).map((m) => m[16])).toEqual([2, 2, 2, 10]); // each deletion its own family: one batch for IPv4 and IPv6 tables
  for (const m of msgs) expect(m.readUInt32LE(0)).toBe(m.length);
  expect([...msgs[0]!.subarray(16, 20)]).toEqual([0, 0, 0, 10]); // AF_UNSPEC, v0, res_id NFNL_SUBSYS_NFTABLES (be16)
  expect(msgs[0]!.length).toBe(20); // no generation: rules are named by handle
  const rule = parseAttrs(msgs[1]!, 20);
  expect([msgs[1]![16], str(rule.get(1)), str(rule.get(2)), rule.get(3)!.readBigUInt64BE(0)]).toEqual([2, 'nat', 'POSTROUTING', 87n]);
  const flush = parseAttrs(msgs[2]!, 20);
  expect([str(flush.get(1)), str(flush.get(2)), flush.has(3)]).toEqual(['nat', 'CNI-x', false]);
  const chain = parseAttrs(msgs[3]!, 20);
  expect([str(chain.get(1)), str(chain.get(3))]).toEqual(['nat', 'CNI-x']);
});

test('with a generation the batch carries NFNL_BATCH_GENID (be32), so the kernel refuses it if the ruleset changed', () => {
  const [begin] = capture((nl) => nftDelete(nl, [{ family: 10, table: 'filter', chain: 'CNI-FORWARD', rule: 5n }], 0x1234));
  const a = parseAttrs(begin!, 20).get(1)!;
  expect(a.readUInt32BE(0)).toBe(0x1234);
});

test('nothing to delete sends nothing', () => {
  expect(capture((nl) => nftDelete(nl, []))).toEqual([]);
});

test('a set element by key: DELSETELEM with the table, the set and the key nested as NFTA_SET_ELEM_LIST_ELEMENTS > LIST_ELEM > KEY > DATA_VALUE', () => {
  const [, m] = capture((nl) => nftDelete(nl, [{ family: 1, table: 'cni_plugins_firewall', set: 'pods4', key: Buffer.from([198, 18, 0, 2]) }]));
  expect([m!.readUInt16LE(4), m!.readUInt16LE(6), m![16]]).toEqual([0xa0e, 0x5, 1]);
  const a = parseAttrs(m!, 20);
  expect([str(a.get(1)), str(a.get(2))]).toEqual(['cni_plugins_firewall', 'pods4']);
  const elem = parseAttrs(parseAttrs(a.get(3)!).get(1)!);
  const key = parseAttrs(elem.get(1)!).get(1)!;
  expect([...key]).toEqual([198, 18, 0, 2]);
});

describe('nftListRules for one chain', () => {
  // The rule messages the kernel dumped for a nat table written by iptables-nft (xtables-nft-captured.json);
  // the fake socket answers every dump with all of them, so the chain filter below is ours, not the kernel's.
  const nat = (captures as unknown as Record<string, { rules: string[] }>)['ip nat']!.rules.map((h) => Buffer.from(h, 'hex'));
  function list(chain?: string, mentioning?: Uint8Array[]): { lines: string[]; request: Buffer } {
    let request: Buffer = Buffer.alloc(0);
    const nl = {
      request: (req: Buffer) => {
        request = req;
        return nat.map((payload) => ({ type: 0xa06, flags: 0, seq: 0, pid: 0, payload }));
      },
    } as unknown as NetlinkSocket;
    const rules = nftListRules(nl, 2, 'nat', chain, mentioning);
    return { lines: rules.map((r) => ruleLine(4, r)), request };
  }

  test('asks the kernel for that chain alone (NFTA_RULE_CHAIN in the dump request) and keeps only its rules', () => {
    const { lines, request } = list('POSTROUTING');
    const a = parseAttrs(request, 20);
    expect([str(a.get(1)), str(a.get(2))]).toEqual(['nat', 'POSTROUTING']);
    expect(lines).toEqual([
      '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
      '-A POSTROUTING -s 198.18.200.10/32 -m comment --comment "name: \\"podman\\" id: \\"ctr1\\"" -j CNI-9832a5ce2046f7d8ebefbad6',
      '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
    ]);
    expect(parseAttrs(list().request, 20).has(2)).toBe(false); // the whole table: no chain attribute
  });

  test('with `mentioning`, only the rules whose message holds one of the strings: a chain jumped to, an address matched', () => {
    expect(list('POSTROUTING', [Buffer.from('CNI-9832a5ce2046f7d8ebefbad6')]).lines).toEqual([
      '-A POSTROUTING -s 198.18.200.10/32 -m comment --comment "name: \\"podman\\" id: \\"ctr1\\"" -j CNI-9832a5ce2046f7d8ebefbad6',
    ]);
    expect(list('CNI-DN-2fbf118d4cafd020f0132', [Buffer.from([198, 18, 0, 7])]).lines).toEqual(['-A CNI-DN-2fbf118d4cafd020f0132 -s 127.0.0.1/32 -d 198.18.0.7/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK']);
    expect(list('POSTROUTING', [Buffer.from('CNI-HOSTPORT-MASQ'), Buffer.from([172, 17, 0, 0])]).lines).toHaveLength(2);
    expect(list('POSTROUTING', []).lines).toEqual([]);
  });
});
