// Masquerade and spoof-check naming: the same chain names, comments and rules as the reference, so
// rules written by either implementation are found and removed by the other.
import { chainName, ruleComment } from '../../shared/netfilter/masquerade-iptables';
import { commentForInstance, hashForInstance, hashForNetwork, parseNftRules } from '../../shared/netfilter/masquerade-nftables';
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
  test('parseNftRules picks rules with handle and comment out of nft -j output', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'inet', name: 'cni_plugins_masquerade', handle: 1 } },
        { chain: { family: 'inet', table: 'cni_plugins_masquerade', name: 'masq_checks', handle: 2 } },
        { rule: { family: 'inet', table: 'cni_plugins_masquerade', chain: 'masq_checks', handle: 7, comment: 'abc', expr: [] } },
      ],
    });
    expect(parseNftRules(json)).toEqual([expect.objectContaining({ chain: 'masq_checks', handle: 7, comment: 'abc' })]);
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
