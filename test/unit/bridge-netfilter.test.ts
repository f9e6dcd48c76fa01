// Masquerade and spoof-check naming: the same chain names, comments and rules as the reference, so
// rules written by either implementation are found and removed by the other.
import { buildGetTable, NFPROTO_INET } from '../../shared/linux/netlink/nftables';
import { chainName, fastSetupScript, fastTeardownScript, ruleComment } from '../../shared/netfilter/masquerade-iptables';
import { commentForInstance, hashForInstance, hashForNetwork } from '../../shared/netfilter/masquerade-nftables';
import { decodeRule } from '../../shared/linux/netlink/nftables';
import { ruleInfo } from '../../shared/netfilter/nft';
import captured from './nft-rules-captured.json';
import { ifaceChain, macChain, spoofCheckID, spoofCheckScript, spoofComment } from '../../shared/netfilter/spoofcheck';

describe('iptables ipMasq names (pkg/utils FormatChainName / FormatComment)', () => {
  test('chain is CNI- + sha512(network+containerID) hex, 28 characters', () => {
    // sha512("brnetc1") starts with a5d69ca9da3b353c3fbd73d8 (python hashlib)
    expect(chainName('brnet', 'c1')).toBe('CNI-a5d69ca9da3b353c3fbd73d8');
    expect(chainName('a-very-long-network-name', 'x'.repeat(64))).toHaveLength(28);
  });
  test('comment is Go %q of name and id', () => {
    expect(ruleComment('brnet', 'c1')).toBe('name: "brnet" id: "c1"');
  });
});

describe('iptables ipMasq write-only transactions (one iptables-restore per family and verb)', () => {
  const ch = 'CNI-a5d69ca9da3b353c3fbd73d8'; // chainName('brnet', 'c1')
  const c = '-m comment --comment "name: \\"brnet\\" id: \\"c1\\""';
  const dual = ['198.18.0.2/24', 'fd00:18::2/64'];

  test('ADD: -N the chain (so an existing chain rejects the whole transaction), ACCEPT own subnet, MASQUERADE non-multicast, then the jump', () => {
    expect(fastSetupScript(4, dual, 'brnet', 'c1')).toEqual([
      `-N ${ch}`,
      `-A ${ch} -d 198.18.0.0/24 ${c} -j ACCEPT`,
      `-A ${ch} ! -d 224.0.0.0/4 ${c} -j MASQUERADE`,
      `-A POSTROUTING -s 198.18.0.2/32 ${c} -j ${ch}`,
    ]);
    expect(fastSetupScript(6, dual, 'brnet', 'c1')).toEqual([
      `-N ${ch}`,
      `-A ${ch} -d fd00:18::/64 ${c} -j ACCEPT`,
      `-A ${ch} ! -d ff00::/8 ${c} -j MASQUERADE`,
      `-A POSTROUTING -s fd00:18::2/128 ${c} -j ${ch}`,
    ]);
  });

  test('ADD with two addresses of a family: both rule pairs before both jumps; nothing for a family without an address', () => {
    const s = fastSetupScript(4, ['198.18.0.2/24', '198.18.1.2/24'], 'brnet', 'c1');
    expect(s.map((l) => l.split(' -m comment')[0])).toEqual([
      `-N ${ch}`,
      `-A ${ch} -d 198.18.0.0/24`,
      `-A ${ch} ! -d 224.0.0.0/4`,
      `-A ${ch} -d 198.18.1.0/24`,
      `-A ${ch} ! -d 224.0.0.0/4`,
      '-A POSTROUTING -s 198.18.0.2/32',
      '-A POSTROUTING -s 198.18.1.2/32',
    ]);
    expect(fastSetupScript(6, ['198.18.0.2/24'], 'brnet', 'c1')).toEqual([]);
  });

  test('DEL: delete exactly the jumps ADD appended, then flush and delete the chain; nothing without an address of the family', () => {
    for (const f of [4, 6] as const) {
      const jumps = fastSetupScript(f, dual, 'brnet', 'c1').filter((l) => l.startsWith('-A POSTROUTING '));
      expect(fastTeardownScript(f, dual, 'brnet', 'c1')).toEqual([...jumps.map((j) => j.replace(/^-A /, '-D ')), `-F ${ch}`, `-X ${ch}`]);
    }
    expect(fastTeardownScript(6, ['198.18.0.2/24'], 'brnet', 'c1')).toEqual([]);
    expect(fastTeardownScript(4, [], 'brnet', 'c1')).toEqual([]);
  });
});

describe('nftables table lookup over nfnetlink', () => {
  test('NFT_MSG_GETTABLE of subsystem nftables, REQUEST only (one reply: the table or ENOENT), nfgenmsg inet, NFTA_TABLE_NAME', () => {
    const m = buildGetTable(NFPROTO_INET, 'cni_plugins_masquerade');
    expect(m.readUInt32LE(0)).toBe(m.length);
    expect(m.readUInt16LE(4)).toBe((10 << 8) | 1);
    expect(m.readUInt16LE(6)).toBe(0x1);
    expect([...m.subarray(16, 20)]).toEqual([1, 0, 0, 0]);
    expect(m.readUInt16LE(20)).toBe(4 + 'cni_plugins_masquerade'.length + 1);
    expect(m.readUInt16LE(22)).toBe(1);
    expect(m.subarray(24, 24 + 23).toString('latin1')).toBe('cni_plugins_masquerade\0');
    expect(m.length).toBe(20 + 28);
  });
});

describe('nftables ipMasq comments (ipmasq_nftables_linux.go)', () => {
  test('hash16(network)-hash16(ifname:containerID), then the readable part', () => {
    expect(hashForNetwork('brnet')).toBe('bb82bb83e4c2720d');
    expect(hashForInstance('brnet', 'eth0', 'c1')).toBe('bb82bb83e4c2720d-f4d01f2ef4b92245');
    expect(commentForInstance('brnet', 'eth0', 'c1')).toBe('bb82bb83e4c2720d-f4d01f2ef4b92245, net: brnet, if: eth0, id: c1');
  });
  test('comments are cut at 128 characters (knftables.CommentLengthMax)', () => {
    const c = commentForInstance('n', 'eth0', 'x'.repeat(200));
    expect(c).toHaveLength(128);
    expect(c.startsWith(hashForInstance('n', 'eth0', 'x'.repeat(200)))).toBe(true);
  });
  test('rules read over netlink give the handle, comment and iifname match that nft -j shows for the same rules (masquerade, spoof check)', () => {
    for (const t of Object.values(captured as unknown as Record<string, { rules: string[]; nft: Array<{ chain: string; handle: number; comment?: string }> }>).filter((v) => typeof v === 'object')) {
      const mine = t.rules.map((h) => ruleInfo(decodeRule(Buffer.from(h, 'hex'))));
      expect(mine.map((r) => ({ chain: r.chain, handle: Number(r.handle), comment: r.comment }))).toEqual(t.nft.map((r) => ({ chain: r.chain, handle: r.handle, comment: r.comment })));
    }
    const spoof = (captured as unknown as Record<string, { rules: string[] }>)['bridge nat']!.rules.map((h) => ruleInfo(decodeRule(Buffer.from(h, 'hex'))));
    expect(spoof.map((r) => r.iifname)).toEqual(['veth1234abcd', undefined, undefined, undefined]);
  });
});

describe('spoof check (pkg/link/spoofcheck.go)', () => {
  test('chain names and comment from containerID-ifname', () => {
    const id = spoofCheckID('c1', 'eth0');
    expect(id).toBe('c1-eth0');
    expect(ifaceChain(id)).toBe('cni-br-iface-c1-eth0');
    expect(macChain(id)).toBe('cni-br-iface-c1-eth0-mac');
    expect(spoofComment(id)).toBe('macspoofchk-c1-eth0');
  });
  test('one transaction: table, base chain at -300, per-port chains flushed, 4 rules', () => {
    expect(spoofCheckScript('veth1234abcd', '0a:58:c6:12:00:02', 'c1-eth0').split('\n')).toEqual([
      'add table bridge nat',
      'add chain bridge nat PREROUTING { type filter hook prerouting priority -300 ; policy accept ; }',
      'add chain bridge nat cni-br-iface-c1-eth0',
      'add chain bridge nat cni-br-iface-c1-eth0-mac',
      'flush chain bridge nat cni-br-iface-c1-eth0',
      'flush chain bridge nat cni-br-iface-c1-eth0-mac',
      'add rule bridge nat PREROUTING iifname "veth1234abcd" jump cni-br-iface-c1-eth0 comment "macspoofchk-c1-eth0"',
      'add rule bridge nat cni-br-iface-c1-eth0 jump cni-br-iface-c1-eth0-mac comment "macspoofchk-c1-eth0"',
      'add rule bridge nat cni-br-iface-c1-eth0-mac ether saddr 0a:58:c6:12:00:02 return comment "macspoofchk-c1-eth0"',
      'add rule bridge nat cni-br-iface-c1-eth0-mac drop comment "macspoofchk-c1-eth0"',
      '',
    ]);
  });
});
