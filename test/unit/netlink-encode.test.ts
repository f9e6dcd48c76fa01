// Encoders produce exactly what iproute2 sends for the same operation (captured from a real run),
// so the kernel sees requests it is known to accept.
import { buildAddAddr, buildDeleteAddr } from '../../shared/linux/netlink/addr';
import { buildBridgeVlan, buildListBridgeVlans } from '../../shared/linux/netlink/bridge-vlan';
import { buildAddBridge, buildAddVeth, buildDeleteLink, buildGetLink, buildSetBridgePort, buildSetLink } from '../../shared/linux/netlink/link';
import { buildRoute } from '../../shared/linux/netlink/route';
import { attr, attrStr, attrU32, nlmsg, parseAttrs, parseMessages } from '../../shared/linux/netlink/message';
import { parseCIDR, parseIP, type IP, type IPNet } from '../../shared/ip';

// Callers parse text once at the edge; the encoders take shared/ip values.
const net = (s: string): IPNet => parseCIDR(s)!;
const ip = (s: string): IP => parseIP(s)!;

// Requests captured from iproute2 6.1 (`strace -e trace=sendmsg,sendto -e write=3`) inside scratch netns.
// Byte 8..11 (nlmsg_seq) differ per run and are zeroed before comparing.
const CAPTURED: Record<string, string> = {
  br:
    '3c00000010000506d095046b00000000000000000000000000000000000000000a0003006e6c62723000000010001200' +
    '0a0001006272696467650000',
  veth:
    '8c00000010000506d095046b000000000000000000000000000000000000000008000400780500000a00010002000000' +
    '00010000090003006e6c7630000000004c0012000800010076657468400002003c000100000000000000000000000000' +
    '0000000008000400780500000a000100020000000002000008001c0004000000090003006574683000000000',
  master:
    '2800000010000500d095046b000000000000000003000000010000000100000008000a0002000000',
  hairpin:
    '2c00000013000500d195046b00000000070000000300000000000000000000000c000c800500040001000000',
  iso:
    '2c00000013000500d195046b00000000070000000300000000000000000000000c000c800500210001000000',
  vlanadd:
    '3400000013000500d195046b000000000700000003000000000000000000000014001a00060000000100000008000200' +
    '06006400',
  vlanrange:
    '3c00000013000500d195046b00000000070000000300000000000000000000001c001a00060000000100000008000200' +
    '0800c800080002001000d200',
  vlandel:
    '3400000011000500d195046b000000000700000003000000000000000000000014001a00060000000100000008000200' +
    '00000100',
  addr4:
    '2800000014000506d095046b00000000021800000200000008000200c612000108000100c6120001',
  addr4brd:
    '3000000014000506ef95046b00000000021800000200000008000200c612000908000100c612000908000400c61200ff',
  addr6:
    '4000000014000506d095046b000000000a4002000200000014000200fd00000100000000000000000000000114000100' +
    'fd000001000000000000000000000001',
  route4:
    '5000000018000506d095046b0000000002100000fe0300010000000008000100c613000008000500c612000108000600' +
    '64000000080004000200000014000800080002001405000008000800b0040000',
  route4t:
    '3c00000018000506d095046b0000000002100000000300010000000008000100c613000008000500c612000108000f00' +
    'e80300000800040002000000',
  route6:
    '3800000018000506d095046b000000000a000000fe0300010000000014000500fd000001000000000000000000000002' +
    '0800040002000000',
  routedel:
    '2c00000019000500d095046b00000000021000000000ff000000000008000100c613000008000f00e8030000',
  route4link:
    '2c00000018000506ef95046b0000000002100000fe03fd010000000008000100c61400000800040002000000',
  routerepl:
    '3400000018000505ef95046b0000000002100000fe0400010000000008000100c613000008000500c612000108000400' +
    '02000000',
  nomaster:
    '2800000010000500ef95046b000000000000000004000000000000000000000008000a0000000000',
  del:
    '2000000011000500d095046b0000000000000000030000000000000000000000',
  setmac:
    '3400000010000500f095046b00000000000000000400000000000000000000000a000100020000000005000008000400' +
    'aa050000',
  allmultion: '2000000010000500bd490d6b00000000' + '00000000030000000002000000020000',
  allmultioff: '2000000010000500bd490d6b00000000' + '00000000030000000000000000020000',
  promiscon: '2000000010000500bd490d6b00000000' + '00000000030000000001000000010000',
  txqlen: '2800000010000500bd490d6b00000000' + '00000000030000000000000000000000' + '08000d00f4010000',
  mtu: '2800000010000500bd490d6b00000000' + '00000000030000000000000000000000' + '0800040078050000',
};

function captured(name: string): string {
  const b = Buffer.from(CAPTURED[name]!, 'hex');
  b.fill(0, 8, 12); // nlmsg_seq
  return b.toString('hex');
}
const hex = (b: Buffer): string => b.toString('hex');

// In the capture netns: nlbr0 had ifindex 2 and nlv0 ifindex 3; `netns <path>` was fd 4 in ip.
const BR = 2;
const PORT = 3;
// nomaster / setmac were captured in a second run where nlv0 was ifindex 4.
const PORT2 = 4;

describe('link requests match iproute2', () => {
  test('ip link add nlbr0 type bridge', () => {
    expect(hex(buildAddBridge({ name: 'nlbr0' }))).toBe(captured('br'));
  });

  test('ip link add nlv0 mtu 1400 address .. type veth peer name eth0 mtu 1400 address .. netns <path>', () => {
    const msg = buildAddVeth({
      name: 'nlv0',
      mtu: 1400,
      mac: '02:00:00:00:00:01',
      peer: { name: 'eth0', mtu: 1400, mac: '02:00:00:00:00:02', netnsFd: 4 },
    });
    expect(hex(msg)).toBe(captured('veth'));
  });

  test('ip link set nlv0 master nlbr0 up (one message)', () => {
    expect(hex(buildSetLink(PORT, { master: BR, up: true }))).toBe(captured('master'));
  });

  test('ip link set dev nlv0 nomaster', () => {
    expect(hex(buildSetLink(PORT2, { master: null }))).toBe(captured('nomaster'));
  });

  test('ip link set dev nlv0 address .. mtu 1450 (same attributes; iproute2 keeps command-line order)', () => {
    const ours = parseMessages(buildSetLink(PORT2, { mac: '02:00:00:00:00:05', mtu: 1450 }))[0]!;
    const theirs = parseMessages(Buffer.from(captured('setmac'), 'hex'))[0]!;
    expect(ours.type).toBe(theirs.type);
    expect(ours.flags).toBe(theirs.flags);
    expect(ours.payload.subarray(0, 16)).toEqual(theirs.payload.subarray(0, 16));
    expect(parseAttrs(ours.payload, 16)).toEqual(parseAttrs(theirs.payload, 16));
  });

  // Captured from iproute2 6.1 with nlv0 at ifindex 3 (the tuning plugin's link changes).
  test('ip link set dev nlv0 allmulticast on / off (IFF_ALLMULTI in ifi_change)', () => {
    expect(hex(buildSetLink(PORT, { allmulti: true }))).toBe(captured('allmultion'));
    expect(hex(buildSetLink(PORT, { allmulti: false }))).toBe(captured('allmultioff'));
  });

  test('ip link set dev nlv0 promisc on', () => {
    expect(hex(buildSetLink(PORT, { promisc: true }))).toBe(captured('promiscon'));
  });

  test('ip link set dev nlv0 txqueuelen 500 (IFLA_TXQLEN)', () => {
    expect(hex(buildSetLink(PORT, { txQLen: 500 }))).toBe(captured('txqlen'));
  });

  test('ip link set dev nlv0 mtu 1400', () => {
    expect(hex(buildSetLink(PORT, { mtu: 1400 }))).toBe(captured('mtu'));
  });

  test('ip link del nlv0', () => {
    expect(hex(buildDeleteLink(PORT))).toBe(captured('del'));
  });

  test('bridge link set dev nlv0 hairpin on: IFLA_PROTINFO must carry NLA_F_NESTED', () => {
    expect(hex(buildSetBridgePort(PORT, { hairpin: true }))).toBe(captured('hairpin'));
  });

  test('bridge link set dev nlv0 isolated on', () => {
    expect(hex(buildSetBridgePort(PORT, { isolated: true }))).toBe(captured('iso'));
  });

  test('get by name asks for no stats and no ACK (a single reply)', () => {
    const want = nlmsg(18, 1, Buffer.alloc(16), attrU32(29, 8), attrStr(3, 'eth0'));
    expect(hex(buildGetLink('eth0'))).toBe(hex(want));
  });

  test('bridge with vlan_filtering, mtu, mac and created up', () => {
    const m = parseMessages(buildAddBridge({ name: 'cni0', mtu: 1400, mac: '02:00:00:00:00:0a', vlanFiltering: true, up: true }))[0]!;
    expect(m.payload.readUInt32LE(8)).toBe(1); // ifi_flags IFF_UP
    expect(m.payload.readUInt32LE(12)).toBe(1); // ifi_change
    const a = parseAttrs(m.payload, 16);
    expect(a.get(4)!.readUInt32LE(0)).toBe(1400);
    expect(hex(a.get(1)!)).toBe('02000000000a');
    const info = parseAttrs(a.get(18)!);
    expect(info.get(1)!.toString()).toBe('bridge');
    expect(hex(info.get(2)!)).toBe(hex(attr(7, Uint8Array.of(1)))); // IFLA_BR_VLAN_FILTERING=1
  });
});

describe('bridge vlan requests match iproute2', () => {
  test('bridge vlan add dev nlv0 vid 100 pvid untagged master', () => {
    expect(hex(buildBridgeVlan('add', PORT, { vid: 100, pvid: true, untagged: true }))).toBe(captured('vlanadd'));
  });
  test('bridge vlan add dev nlv0 vid 200-210 master', () => {
    expect(hex(buildBridgeVlan('add', PORT, { vid: 200, vidEnd: 210 }))).toBe(captured('vlanrange'));
  });
  test('bridge vlan del dev nlv0 vid 1 master', () => {
    expect(hex(buildBridgeVlan('delete', PORT, { vid: 1 }))).toBe(captured('vlandel'));
  });
  test('vlan dump asks for compressed ranges', () => {
    const m = parseMessages(buildListBridgeVlans())[0]!;
    expect(m.flags).toBe(0x301);
    expect(m.payload[0]).toBe(7); // AF_BRIDGE
    expect(parseAttrs(m.payload, 16).get(29)!.readUInt32LE(0)).toBe(4); // RTEXT_FILTER_BRVLAN_COMPRESSED
  });
});

describe('address requests match iproute2', () => {
  test('ip addr add 198.18.0.1/24 dev nlbr0 (no broadcast requested)', () => {
    expect(hex(buildAddAddr(BR, net('198.18.0.1/24'), { broadcast: false }))).toBe(captured('addr4'));
  });
  test('default IPv4 broadcast equals iproute2 `brd +` (vishvananda/netlink computes it too)', () => {
    expect(hex(buildAddAddr(BR, net('198.18.0.9/24')))).toBe(captured('addr4brd'));
  });
  test('an explicit broadcast IP encodes as iproute2 `brd 198.18.0.255`', () => {
    expect(hex(buildAddAddr(BR, net('198.18.0.9/24'), { broadcast: ip('198.18.0.255') }))).toBe(captured('addr4brd'));
  });
  test('no broadcast for /31 and /32', () => {
    const a = parseAttrs(parseMessages(buildAddAddr(BR, net('198.18.0.0/31')))[0]!.payload, 8);
    expect(a.has(4)).toBe(false);
  });
  test('ip addr add fd00:1::1/64 dev nlbr0 nodad', () => {
    expect(hex(buildAddAddr(BR, net('fd00:1::1/64'), { noDad: true }))).toBe(captured('addr6'));
  });
  test('replace uses NLM_F_REPLACE instead of NLM_F_EXCL', () => {
    expect(parseMessages(buildAddAddr(BR, net('198.18.0.1/24'), { replace: true }))[0]!.flags).toBe(0x1 | 0x4 | 0x400 | 0x100);
  });
  test('delete names the address and prefix', () => {
    const m = parseMessages(buildDeleteAddr(BR, net('198.18.0.1/24')))[0]!;
    expect(m.type).toBe(21);
    expect(hex(m.payload.subarray(0, 8))).toBe('0218000002000000');
  });
});

describe('route requests match iproute2', () => {
  test('ip route add 198.19.0.0/16 via 198.18.0.1 dev nlbr0 metric 100 mtu 1300 advmss 1200', () => {
    const r = { dst: net('198.19.0.0/16'), gw: ip('198.18.0.1'), oif: BR, priority: 100, mtu: 1300, advmss: 1200 };
    expect(hex(buildRoute('add', r))).toBe(captured('route4'));
  });
  test('table >= 256 goes in RTA_TABLE with rtm_table UNSPEC', () => {
    expect(hex(buildRoute('add', { dst: net('198.19.0.0/16'), gw: ip('198.18.0.1'), oif: BR, table: 1000 }))).toBe(captured('route4t'));
  });
  test('ip route add default via fd00:1::2 dev nlbr0', () => {
    expect(hex(buildRoute('add', { dst: net('::/0'), gw: ip('fd00:1::2'), oif: BR }))).toBe(captured('route6'));
    expect(hex(buildRoute('add', { gw: ip('fd00:1::2'), oif: BR }))).toBe(captured('route6'));
  });
  test('a route without gateway gets scope link', () => {
    expect(hex(buildRoute('add', { dst: net('198.20.0.0/16'), oif: BR }))).toBe(captured('route4link'));
  });
  test('ip route replace .. proto static scope global', () => {
    const r = { dst: net('198.19.0.0/16'), gw: ip('198.18.0.1'), oif: BR, protocol: 4, scope: 0 };
    expect(hex(buildRoute('replace', r))).toBe(captured('routerepl'));
  });
  test('ip route del 198.19.0.0/16 table 1000 (scope nowhere matches any)', () => {
    expect(hex(buildRoute('delete', { dst: net('198.19.0.0/16'), table: 1000 }))).toBe(captured('routedel'));
  });
  test('destination host bits are masked', () => {
    const a = parseAttrs(parseMessages(buildRoute('add', { dst: net('198.19.7.7/16'), oif: 1 }))[0]!.payload, 12);
    expect([...a.get(1)!]).toEqual([198, 19, 0, 0]);
  });
  test('a route needs a family', () => {
    expect(() => buildRoute('add', { oif: 1 })).toThrow('route needs a destination or a gateway');
  });
});
