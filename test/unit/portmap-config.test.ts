// portmap: config parsing (the reference's parseConfig rules, our code-7 messages) and the scripts
// each backend generates for each key. The iptables lines are compared with what the reference
// (Debian 1.1.1) leaves in `iptables-save -t nat` for the same config (captured once, below).
import { loadPortMapConf, podAddresses, type PortMapConf } from '../../plugins/meta/portmap/config';
import * as ipt from '../../plugins/meta/portmap/iptables';
import { undoLines } from '../../shared/netfilter/iptables';
import { decodeRule } from '../../shared/linux/netlink/nftables';
import pmCaptured from './portmap-nft-captured.json';
import * as nft from '../../plugins/meta/portmap/nftables';
import { decodeRecord, encodeRecord } from '../../plugins/meta/portmap/records';
import { errorOf } from '../support/errors';
import type { Result } from '../../shared/cni/types';


const MAPS = [
  { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
  { hostPort: 8443, containerPort: 443, protocol: 'tcp', hostIP: '198.18.0.1' },
  { hostPort: 53, containerPort: 53, protocol: 'udp' },
];
const load = (extra: Record<string, unknown> = {}, maps: unknown = MAPS): PortMapConf =>
  loadPortMapConf({ conf: { cniVersion: '1.0.0', name: 'brnet', type: 'portmap', backend: 'iptables', runtimeConfig: { portMappings: maps }, ...extra }, cniVersion: '1.0.0' });
const prev: Result = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: '/x' }],
  ips: [
    { address: '198.18.0.2/24', interface: 0 },
    { address: 'fd00::2/64', interface: 0 },
  ],
};
const [v4, v6] = podAddresses(prev, 'eth0');
const CH = 'CNI-DN-2fbf118d4cafd020f0132'; // the reference's chain for brnet + ctr1
const EMPTY: ipt.NatTable = { chains: new Set(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']), rules: [] };

describe('portmap: loadPortMapConf', () => {
  test('defaults: snat true, markMasqBit 13, no external chain, masqAll false, no conditions', () => {
    const c = load();
    expect([c.snat, c.markMasqBit, c.externalSetMarkChain, c.masqAll, c.conditionsV4, c.conditionsV6]).toEqual([true, 13, undefined, false, [], []]);
    expect(c.portMappings.map((m) => [m.hostPort, m.containerPort, m.protocol, m.hostIP?.family])).toEqual([
      [8080, 80, 'tcp', undefined],
      [8443, 443, 'tcp', 4],
      [53, 53, 'udp', undefined],
    ]);
  });

  test('protocol is case-insensitive and sctp is accepted; an unknown one is code 7 naming the entry', () => {
    expect(load({}, [{ hostPort: 1, containerPort: 2, protocol: 'SCTP' }]).portMappings[0]!.protocol).toBe('sctp');
    const e = errorOf(() => load({}, [{ hostPort: 1, containerPort: 2, protocol: 'icmp' }]));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid config: field "runtimeConfig.portMappings[0].protocol" = "icmp": must be one of tcp, udp, sctp');
  });

  test.each([
    [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }, 'runtimeConfig.portMappings[1].hostPort', '0'],
    [{ hostPort: 80, containerPort: 70000, protocol: 'tcp' }, 'runtimeConfig.portMappings[1].containerPort', '70000'],
    [{ hostPort: '80', containerPort: 80, protocol: 'tcp' }, 'runtimeConfig.portMappings[1].hostPort', '"80"'],
    [{ containerPort: 80, protocol: 'tcp' }, 'runtimeConfig.portMappings[1].hostPort', 'missing'],
    [{ hostPort: 80, containerPort: 80, protocol: 'tcp', hostIP: '1.2.3' }, 'runtimeConfig.portMappings[1].hostIP', '"1.2.3"'],
  ])('bad mapping %j is code 7 naming %s = %s', (bad, field, value) => {
    const e = errorOf(() => load({}, [MAPS[0], bad]));
    expect(e.code).toBe(7);
    expect(e.message).toContain(`field "${field}" = ${value}`);
  });

  test('markMasqBit outside 0-31, or together with externalSetMarkChain, is code 7', () => {
    expect(errorOf(() => load({ markMasqBit: 32 })).message).toBe('invalid config: field "markMasqBit" = 32: must be between 0 and 31');
    const e = errorOf(() => load({ markMasqBit: 3, externalSetMarkChain: 'KUBE-MARK-MASQ' }));
    expect([e.code, e.message]).toEqual([7, expect.stringContaining('field "externalSetMarkChain" = "KUBE-MARK-MASQ": cannot be set together with markMasqBit')]);
  });

  test('a condition or chain name that would add its own line to the script is refused', () => {
    expect(errorOf(() => load({ conditionsV4: ['-s', '1.2.3.4\n-A INPUT -j DROP'] })).message).toContain('field "conditionsV4[1]"');
    expect(errorOf(() => load({ backend: 'nftables', conditionsV6: ['ip6 saddr ::1; flush ruleset'] })).message).toContain('field "conditionsV6[0]"');
    expect(errorOf(() => load({ externalSetMarkChain: 'A B' })).message).toContain('field "externalSetMarkChain" = "A B"');
  });

  test('backend must be iptables or nftables', () => {
    const e = errorOf(() => load({ backend: 'firewalld' }));
    expect([e.code, e.message]).toEqual([7, expect.stringContaining('field "backend" = "firewalld"')]);
  });

  test('pod addresses: the first of each family on the sandbox interface named CNI_IFNAME', () => {
    const r: Result = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'veth1' }, { name: 'eth0', sandbox: '/x' }, { name: 'eth1', sandbox: '/x' }],
      ips: [
        { address: '198.18.9.1/24', interface: 0 },
        { address: '198.18.9.2/24', interface: 2 },
        { address: '198.18.0.2/24', interface: 1 },
        { address: '198.18.0.3/24', interface: 1 },
        { address: 'fd00::2/64' },
      ],
    };
    expect(podAddresses(r, 'eth0').map((p) => `${p.family}:${p.net.prefix}`)).toEqual(['4:24', '6:64']);
    expect(podAddresses(r, 'eth0')[0]!.net.ip.value).toBe(0xc6120002n);
  });
});

describe('portmap: iptables script', () => {
  test('the chain name and comment are the reference\'s (CNI-DN- + sha512(name+id))', () => {
    expect(ipt.dnatChain('brnet', 'ctr1')).toBe(CH);
    expect(ipt.dnatComment('brnet', 'ctr1')).toBe('dnat name: "brnet" id: "ctr1"');
  });

  test('ADD on an empty table: the reference\'s IPv4 rules, shared chains created (-N, never flushed), the pod chain declared, masquerade jump prepended', () => {
    expect(ipt.addLines(load(), 'ctr1', v4!, EMPTY)).toEqual([
      '-N CNI-HOSTPORT-DNAT',
      '-N CNI-HOSTPORT-SETMARK',
      '-N CNI-HOSTPORT-MASQ',
      `:${CH} - [0:0]`,
      '-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
      '-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
      '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000',
      '-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
      '-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
      `-A ${CH} -s 198.18.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.2:80`,
      `-A ${CH} -s 198.18.0.0/24 -d 198.18.0.1/32 -p tcp -m tcp --dport 8443 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -s 127.0.0.1/32 -d 198.18.0.1/32 -p tcp -m tcp --dport 8443 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -d 198.18.0.1/32 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 198.18.0.2:443`,
      `-A ${CH} -s 198.18.0.0/24 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -s 127.0.0.1/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -p udp -m udp --dport 53 -j DNAT --to-destination 198.18.0.2:53`,
      `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"brnet\\" id: \\"ctr1\\"" -m multiport --dports 8080,8443 -j ${CH}`,
      `-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"brnet\\" id: \\"ctr1\\"" -m multiport --dports 53 -j ${CH}`,
    ]);
  });

  test('IPv6: no localhost rule, bracketed target, a hostIP of the other family skipped', () => {
    const l = ipt.addLines(load(), 'ctr1', v6!, EMPTY).filter((x) => x.startsWith(`-A ${CH}`));
    expect(l).toEqual([
      `-A ${CH} -s fd00::/64 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80`,
      `-A ${CH} -s fd00::/64 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK`,
      `-A ${CH} -p udp -m udp --dport 53 -j DNAT --to-destination [fd00::2]:53`,
    ]);
  });

  test('a repeated ADD writes no shared rule twice, removes its old entry jumps and redeclares (flushes) its chain', () => {
    const first = ipt.addLines(load(), 'ctr1', v4!, EMPTY);
    const now = ipt.parseSave(['*nat', ...first.map((l) => l.replace(/^-I (\S+) 1/, '-A $1').replace(/^-N (\S+)/, ':$1 - [0:0]')), 'COMMIT'].join('\n'));
    const again = ipt.addLines(load(), 'ctr1', v4!, now);
    expect(again.filter((l) => l.startsWith(':'))).toEqual([`:${CH} - [0:0]`]);
    expect(again.filter((l) => l.startsWith('-D'))).toHaveLength(2);
    expect(again.filter((l) => /PREROUTING|OUTPUT|POSTROUTING|SETMARK -m|MASQ -m/.test(l))).toEqual([]);
  });

  test('undoLines (shared rule) takes back an ADD without flushing: its rules deleted, the chains it created removed, a rewritten pod chain gets its old rules and jumps back', () => {
    const fresh = ipt.addLines(load(), 'ctr1', v4!, EMPTY);
    const after = (lines: string[], before: ipt.NatTable): ipt.NatTable => {
      const t = { chains: new Set(before.chains), rules: [...before.rules] };
      for (const l of lines) {
        const [op, c] = l.split(' ', 2) as [string, string];
        if (op === '-N') t.chains.add(c);
        else if (op.startsWith(':')) {
          t.chains.add(op.slice(1));
          t.rules = t.rules.filter((r) => !r.startsWith(`-A ${op.slice(1)} `));
        } else if (op === '-D') t.rules = t.rules.filter((r) => r !== `-A${l.slice(2)}`);
        else t.rules.push(l.replace(/^-I (\S+) 1 /, '-A $1 '));
      }
      return t;
    };
    const undo = undoLines(fresh, after(fresh, EMPTY), EMPTY);
    const rules = fresh.filter((l) => /^-[AI] /.test(l));
    expect(undo.filter((l) => l.startsWith('-D '))).toHaveLength(rules.length);
    expect(undo).toContain('-D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ');
    expect(undo.some((l) => l.startsWith('-F '))).toBe(false);
    // Created chains go last, newest first, once nothing is in them or jumps to them.
    expect(undo.slice(rules.length)).toEqual([`-X ${CH}`, '-X CNI-HOSTPORT-MASQ', '-X CNI-HOSTPORT-SETMARK', '-X CNI-HOSTPORT-DNAT']);
    const old = ipt.parseSave([':CNI-HOSTPORT-DNAT - [0:0]', `:${CH} - [0:0]`, `-A CNI-HOSTPORT-DNAT -p tcp -j ${CH}`, `-A ${CH} -p tcp -m tcp --dport 1 -j DNAT --to-destination 198.18.0.9:1`].join('\n'));
    const again = ipt.addLines(load({ snat: false }), 'ctr1', v4!, old);
    const undo2 = undoLines(again, after(again, old), old);
    expect(undo2.filter((l) => l.startsWith('-D CNI-HOSTPORT-DNAT'))).toHaveLength(2); // the new entry rules
    expect(undo2.some((l) => l.startsWith('-F ') || l.startsWith('-X '))).toBe(false); // the pod chain was there before
    expect(undo2.slice(-2)).toEqual([`-A ${CH} -p tcp -m tcp --dport 1 -j DNAT --to-destination 198.18.0.9:1`, `-A CNI-HOSTPORT-DNAT -p tcp -j ${CH}`]);
  });

  test('snat false: no mark rules and no shared mark chains', () => {
    const l = ipt.addLines(load({ snat: false }), 'ctr1', v4!, EMPTY);
    expect(l.some((x) => x.includes('SETMARK') || x.includes('MASQ'))).toBe(false);
    expect(l.filter((x) => x.startsWith(`-A ${CH}`))).toHaveLength(3);
  });

  test('markMasqBit sets the mark value; externalSetMarkChain replaces SETMARK and creates no shared mark chains', () => {
    expect(ipt.addLines(load({ markMasqBit: 0 }), 'ctr1', v4!, EMPTY)).toContain('-A CNI-HOSTPORT-MASQ -m mark --mark 0x1/0x1 -j MASQUERADE');
    expect(ipt.addLines(load({ markMasqBit: 31 }), 'ctr1', v4!, EMPTY)).toContain('-A CNI-HOSTPORT-MASQ -m mark --mark 0x80000000/0x80000000 -j MASQUERADE');
    const ext = ipt.addLines(load({ externalSetMarkChain: 'KUBE-MARK-MASQ' }), 'ctr1', v4!, EMPTY);
    expect(ext).toContain(`-A ${CH} -s 198.18.0.0/24 -p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ`);
    expect(ext.some((x) => x.includes('CNI-HOSTPORT-SETMARK') || x.includes('CNI-HOSTPORT-MASQ'))).toBe(false);
  });

  test('masqAll: one mark rule from any source (no -s, as iptables-save lists 0.0.0.0/0), no localhost rule', () => {
    const l = ipt.podChainRules(load({ masqAll: true }, [MAPS[0]]), 'ctr1', v4!);
    expect(l).toEqual([`-A ${CH} -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`, `-A ${CH} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.2:80`]);
  });

  test('conditionsV4/V6 are appended to the entry rules of their family, quoted when needed', () => {
    const c = load({ conditionsV4: ['!', '-s', '198.19.0.0/16'], conditionsV6: ['-m', 'comment', '--comment', 'a b'] }, [MAPS[0]]);
    expect(ipt.entryRules(c, 'ctr1', 4)[0]).toMatch(/--dports 8080 ! -s 198\.19\.0\.0\/16 -j CNI-DN-/);
    expect(ipt.entryRules(c, 'ctr1', 6)[0]).toMatch(/--dports 8080 -m comment --comment "a b" -j CNI-DN-/);
  });

  test('more than 15 ports of a protocol are split into multiport groups of 15', () => {
    const maps = Array.from({ length: 17 }, (_, i) => ({ hostPort: 1000 + i, containerPort: 80, protocol: 'tcp' }));
    expect(ipt.entryRules(load({}, maps), 'ctr1', 4).map((l) => /--dports (\S+)/.exec(l)![1]!.split(',').length)).toEqual([15, 2]);
  });

  test('another container\'s DNAT on the same port is a code-7 error naming both containers and the port; another hostIP is not', () => {
    const other = ipt.parseSave(
      [
        ':CNI-DN-aaaa - [0:0]',
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"net2\\" id: \\"ctrX\\"" -m multiport --dports 8080 -j CNI-DN-aaaa',
        '-A CNI-DN-aaaa -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.9:80',
        '-A CNI-DN-aaaa -d 198.18.0.77/32 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 198.18.0.9:443',
      ].join('\n'),
    );
    const e = errorOf(() => ipt.checkConflicts(load(), 'ctr1', 4, other));
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      'invalid config: field "runtimeConfig.portMappings[0].hostPort" = 8080: host port 8080/tcp is already mapped to container ctrX (network net2); container ctr1 cannot map it too',
    );
    expect(() => ipt.checkConflicts(load({}, [MAPS[1]]), 'ctr1', 4, other)).not.toThrow(); // 198.18.0.1 vs 198.18.0.77
    expect(() => ipt.checkConflicts(load({}, [{ hostPort: 8080, containerPort: 1, protocol: 'udp' }]), 'ctr1', 4, other)).not.toThrow();
  });

  test('DEL removes the jumps to the pod chain (whatever their comment or address), flushes and deletes it; nothing when absent', () => {
    const nat = ipt.parseSave(
      [`:${CH} - [0:0]`, `-A CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 1 -j ${CH}`, `-A ${CH} -p tcp -m tcp --dport 1 -j DNAT --to-destination 198.18.5.5:1`].join('\n'),
    );
    expect(ipt.delLines('brnet', 'ctr1', nat)).toEqual([`-D CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 1 -j ${CH}`, `-F ${CH}`, `-X ${CH}`]);
    expect(ipt.delLines('brnet', 'ctr1', EMPTY)).toEqual([]);
  });

  test('GC removes only this network\'s chains whose container is not valid', () => {
    const lines = [...ipt.addLines(load(), 'ctr1', v4!, EMPTY), ...ipt.addLines(load(), 'ctr2', v4!, EMPTY), ...ipt.addLines(load({ name: 'other' }), 'ctr3', v4!, EMPTY)];
    const nat = ipt.parseSave(lines.map((l) => l.replace(/^-I (\S+) 1/, '-A $1').replace(/^-N (\S+)/, ':$1 - [0:0]')).join('\n'));
    const gc = ipt.gcLines('brnet', new Set(['ctr2']), nat);
    expect(gc.filter((l) => l.startsWith('-X'))).toEqual([`-X ${CH}`]);
  });

  test('CHECK passes on what ADD wrote and names a missing rule', () => {
    const written = ipt.addLines(load(), 'ctr1', v4!, EMPTY).map((l) => l.replace(/^-I (\S+) 1/, '-A $1').replace(/^-N (\S+)/, ':$1 - [0:0]'));
    expect(() => ipt.checkFamily(load(), 'ctr1', v4!, ipt.parseSave(written.join('\n')))).not.toThrow();
    const tampered = written.filter((l) => !l.includes('--to-destination 198.18.0.2:53'));
    expect(() => ipt.checkFamily(load(), 'ctr1', v4!, ipt.parseSave(tampered.join('\n')))).toThrow(/--dport 53 -j DNAT --to-destination 198.18.0.2:53" not found in IPv4/);
    expect(() => ipt.checkFamily(load(), 'ctr1', v4!, EMPTY)).toThrow(`chain ${CH} not found in IPv4 iptables table nat`);
  });

  test('splitArgs undoes quoteArg', () => {
    const s = 'dnat name: "a\\b" id: "c"';
    expect(ipt.splitArgs(`-m comment --comment ${ipt.quoteArg(s)} -j X`)).toEqual(['-m', 'comment', '--comment', s, '-j', 'X']);
  });
});

describe('portmap: nftables script', () => {
  const conf = (extra: Record<string, unknown> = {}) => load({ backend: 'nftables', ...extra });

  test('ADD: upstream\'s table and chains, the rules commented with the container ID', () => {
    const l = nft.addLines(conf({ conditionsV4: ['ip saddr != 198.19.0.0/16'] }), 'ctr1', v4!, []);
    expect(l).toEqual([
      'add table ip cni_hostport { comment "CNI portmap plugin" ; }',
      'add chain ip cni_hostport hostports',
      'add chain ip cni_hostport hostip_hostports',
      'add chain ip cni_hostport prerouting { type nat hook prerouting priority dstnat ; }',
      'flush chain ip cni_hostport prerouting',
      'add rule ip cni_hostport prerouting ip saddr != 198.19.0.0/16 jump hostip_hostports',
      'add rule ip cni_hostport prerouting ip saddr != 198.19.0.0/16 jump hostports',
      'add chain ip cni_hostport output { type nat hook output priority -100 ; }',
      'flush chain ip cni_hostport output',
      'add rule ip cni_hostport output ip saddr != 198.19.0.0/16 jump hostip_hostports',
      'add rule ip cni_hostport output ip saddr != 198.19.0.0/16 fib daddr type local jump hostports',
      'add chain ip cni_hostport masquerading { type nat hook postrouting priority srcnat ; }',
      'add rule ip cni_hostport hostports ip protocol tcp th dport 8080 dnat to 198.18.0.2:80 comment "ctr1"',
      'add rule ip cni_hostport hostip_hostports ip daddr 198.18.0.1 ip protocol tcp th dport 8443 dnat to 198.18.0.2:443 comment "ctr1"',
      'add rule ip cni_hostport hostports ip protocol udp th dport 53 dnat to 198.18.0.2:53 comment "ctr1"',
      'add rule ip cni_hostport masquerading ip saddr 198.18.0.0/24 ip daddr 198.18.0.2 ct status dnat masquerade comment "ctr1"',
      'add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 198.18.0.2 masquerade comment "ctr1"',
    ]);
  });

  test('IPv6 uses meta l4proto and a bracketed target; snat false has no masquerading chain; masqAll drops the source match', () => {
    const l6 = nft.addLines(conf(), 'ctr1', v6!, []);
    expect(l6).toContain('add rule ip6 cni_hostport hostports meta l4proto tcp th dport 8080 dnat to [fd00::2]:80 comment "ctr1"');
    expect(l6.some((x) => x.includes('198.18.0.1'))).toBe(false);
    expect(nft.addLines(conf({ snat: false }), 'ctr1', v4!, []).some((x) => x.includes('masquerad'))).toBe(false);
    expect(nft.podRules(conf({ masqAll: true }), v4!)).toContainEqual(['masquerading', 'ip daddr 198.18.0.2 ct status dnat masquerade']);
  });

  const listed: nft.NftRule[] = [
    { chain: 'hostports', handle: 9, comment: 'ctr1', protocol: 'tcp', port: 8080, dnat: '198.18.0.2' },
    { chain: 'hostports', handle: 10, comment: 'ctr1', protocol: 'tcp', port: 9090, dnat: '198.18.7.7' },
    { chain: 'masquerading', handle: 11, comment: 'ctr1' },
    { chain: 'prerouting', handle: 3 },
  ];

  test('rules read over netlink give what nft -j listed for the same rules (chain, handle, comment, protocol, port, daddr, DNAT target), IPv4 and IPv6', () => {
    for (const [fam, f] of [['ip', 4], ['ip6', 6]] as const) {
      const c = (pmCaptured as unknown as Record<string, { rules: string[]; expected: nft.NftRule[] }>)[fam]!;
      const byHandle = (x: nft.NftRule[]) => [...x].sort((p, q) => p.handle - q.handle);
      expect(byHandle(c.rules.map((h) => nft.ruleOf(f, decodeRule(Buffer.from(h, 'hex')))))).toEqual(byHandle(c.expected));
    }
  });

  test('a repeated ADD deletes its earlier rules to the same address; DEL deletes every rule with the container ID', () => {
    const rules = listed;
    expect(nft.addLines(conf(), 'ctr1', v4!, rules).filter((l) => l.startsWith('delete'))).toEqual([
      'delete rule ip cni_hostport hostports handle 9',
      'delete rule ip cni_hostport masquerading handle 11',
    ]);
    expect(nft.containerRules('ctr1', rules).map((r) => r.handle)).toEqual([9, 10, 11]);
    expect(nft.containerRules('ctr2', rules)).toEqual([]);
  });

  test('another container\'s rule on the port is a code-7 error naming both', () => {
    const e = errorOf(() => nft.checkConflicts(conf(), 'ctr2', 4, listed));
    expect([e.code, e.message]).toEqual([7, expect.stringContaining('host port 8080/tcp is already mapped to container ctr1 (nftables table ip cni_hostport); container ctr2 cannot map it too')]);
  });

  test('CHECK names a missing hostport rule', () => {
    expect(() => nft.checkFamily(conf(), 'ctr1', v4!, listed)).toThrow('missing hostport rule for tcp port 8443 to 198.18.0.2 in chain ip cni_hostport hostip_hostports');
  });

  test('DEL by record and GC delete the container\'s rules to its recorded address only (the same ID on another network points elsewhere)', () => {
    const rules: nft.NftRule[] = [
      ...listed.filter((r) => r.handle !== 11),
      { chain: 'masquerading', handle: 11, comment: 'ctr1', daddr: '198.18.0.2' },
      { chain: 'masquerading', handle: 12, comment: 'ctr1', daddr: '198.18.7.7' },
      { chain: 'hostports', handle: 13, comment: 'ctr2', dnat: '198.18.0.2' },
    ];
    expect(nft.attachmentRules('ctr1', [v4!, v6!], 4, rules).map((r) => [r.chain, r.handle])).toEqual([['hostports', 9], ['masquerading', 11]]);
    expect(nft.attachmentRules('ctr1', [v6!], 4, rules)).toEqual([]);
  });
});

describe('portmap: dataDir and attachment records', () => {
  test('dataDir: /run/cni/portmap by default; a relative path or a ".." component is code 7 naming it', () => {
    expect(load().dataDir).toBe('/run/cni/portmap');
    expect(load({ dataDir: '/run/pm' }).dataDir).toBe('/run/pm');
    for (const bad of ['var/lib/pm', '/var/../etc']) {
      const e = errorOf(() => load({ dataDir: bad }));
      expect([e.code, e.message]).toEqual([7, expect.stringContaining(`field "dataDir" = ${JSON.stringify(bad)}`)]);
    }
  });

  test('a record holds the backend, the pod addresses with their prefix and the mappings, and reads back the same', () => {
    const c = load();
    const r = { containerID: 'ctr1', ifName: 'eth0', backend: 'nftables' as const, pods: [v4!, v6!], portMappings: c.portMappings };
    const text = encodeRecord(r);
    expect(JSON.parse(text)).toEqual({
      containerID: 'ctr1',
      ifName: 'eth0',
      backend: 'nftables',
      pods: ['198.18.0.2/24', 'fd00::2/64'],
      portMappings: [
        { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
        { hostPort: 8443, containerPort: 443, protocol: 'tcp', hostIP: '198.18.0.1' },
        { hostPort: 53, containerPort: 53, protocol: 'udp' },
      ],
    });
    expect(decodeRecord(Buffer.from(text), 'f')).toEqual(r);
  });

  test.each([
    ['{', 'not JSON'],
    ['{"containerID":"c","ifName":"eth0","backend":"ipvs","pods":[],"portMappings":[]}', 'expected {'],
    ['{"containerID":"c","ifName":"eth0","backend":"iptables","pods":["198.18.0.2"],"portMappings":[]}', 'expected {'],
    ['{"containerID":"c","ifName":"eth0","backend":"iptables","pods":[],"portMappings":[{"hostPort":0,"containerPort":1,"protocol":"tcp"}]}', 'expected {'],
  ])('a file that is not a record (%s) is an error naming it', (text, why) => {
    expect(() => decodeRecord(Buffer.from(text), '/d/brnet/c:eth0')).toThrow(`/d/brnet/c:eth0: not a portmap attachment record (${why}`);
  });
});
