// Error mapping: kernel errno -> NetlinkError with the operation and object in the message,
// isNotFound/isExists as DEL and ensure-bridge paths use them. The socket runs against a fake libc
// (no bun:ffi under jest) that answers like the kernel.
import { NetlinkError, isExists, isNotFound } from '../../shared/linux/netlink/errors';
import { errnoMessage } from '../../shared/linux/netlink/errno';
import { addVeth, deleteLink, getLink, listLinks, setLinkUp } from '../../shared/linux/netlink/link';
import { addAddr, deleteAddr, listAddrs } from '../../shared/linux/netlink/addr';
import { listRoutes } from '../../shared/linux/netlink/route';
import { attr, attrStr, ifaddrmsg, ifinfomsg, nlmsg, parseMessages, rtmsg } from '../../shared/linux/netlink/message';
import { NetlinkSocket, decodeError } from '../../shared/linux/netlink/socket';
import { ipFromBytes, ipToBytes } from '../../shared/linux/netlink/ipaddr';
import { formatCIDR, formatIP, parseCIDR, parseIP } from '../../shared/ip';
import { formatMAC, normalizeMAC, parseMAC } from '../../shared/mac';
import { sysctlPath } from '../../shared/linux/sysctl';

interface Fake {
  sent: Buffer[];
  /** builds the datagrams answering a request */
  reply: (req: Buffer) => Array<Buffer | 'ENOBUFS'>;
  queue: Array<Buffer | 'ENOBUFS'>;
}
const mockKernel: Fake = { sent: [], reply: () => [], queue: [] };

jest.mock('../../shared/linux/libc', () => ({
  AF_NETLINK: 16,
  SOCK_RAW: 3,
  SOCK_CLOEXEC: 0o2000000,
  SOL_NETLINK: 270,
  MSG_TRUNC: 0x20,
  POLLIN: 1,
  CLONE_NEWNET: 0x40000000,
  SyscallError: class extends Error {},
  socket: () => 5,
  bind: () => 0,
  getsockname: (_fd: number, addr: Uint8Array) => {
    new DataView(addr.buffer).setUint32(4, 4242, true);
    return 0;
  },
  setsockoptInt: () => 0,
  close: () => 0,
  // Readable iff the fake kernel has something queued (0 = the real poll's timeout).
  pollOne: () => (mockKernel.queue.length ? 1 : 0),
  fstatfsType: () => 0x6e736673,
  setns: () => 0,
  sendto: (_fd: number, buf: Uint8Array) => {
    const req = Buffer.from(buf);
    mockKernel.sent.push(req);
    mockKernel.queue.push(...mockKernel.reply(req));
    return buf.length;
  },
  recvFrom: (_fd: number, buf: Uint8Array, _flags: number, addr: Uint8Array) => {
    const d = mockKernel.queue.shift();
    if (!d) throw new Error('fake kernel: recv with nothing queued (would block)');
    if (d === 'ENOBUFS') return -105;
    buf.set(d);
    new DataView(addr.buffer).setUint32(8, 0, true);
    return d.length;
  },
}));

/** A reply message with the request's seq and our port id. */
function answer(req: Buffer, type: number, flags: number, ...body: Buffer[]): Buffer {
  const m = nlmsg(type, flags, ...body);
  m.writeUInt32LE(req.readUInt32LE(8), 8);
  m.writeUInt32LE(4242, 12);
  return m;
}
/** NLMSG_ERROR with CAP_ACK (only the request header echoed) and an optional extack text. */
function errorReply(req: Buffer, errno: number, extack = ''): Buffer {
  const e = Buffer.alloc(4);
  e.writeInt32LE(-errno);
  const tlv = extack ? [attrStr(1, extack)] : [];
  return answer(req, 2, 0x100 | (extack ? 0x200 : 0), e, req.subarray(0, 16), ...tlv);
}
const ack = (req: Buffer) => errorReply(req, 0);

beforeEach(() => {
  mockKernel.sent = [];
  mockKernel.queue = [];
});

describe('NetlinkError messages read like the reference', () => {
  test('creating veth vethab12cd34: file exists', () => {
    mockKernel.reply = (req) => [errorReply(req, 17)];
    const nl = NetlinkSocket.open();
    let err: unknown;
    try {
      addVeth(nl, { name: 'vethab12cd34', peer: { name: 'eth0', netnsFd: 9 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as Error).message).toBe('creating veth vethab12cd34: file exists');
    expect(isExists(err)).toBe(true);
    expect(isNotFound(err)).toBe(false);
  });

  test('deleting link eth0: no such device', () => {
    mockKernel.reply = (req) => [errorReply(req, 19)];
    const nl = NetlinkSocket.open();
    expect(() => deleteLink(nl, 'eth0')).toThrow('deleting link eth0: no such device');
    try {
      deleteLink(nl, 'eth0');
    } catch (e) {
      expect(isNotFound(e)).toBe(true);
      expect((e as NetlinkError).errno).toBe(19);
    }
  });

  test('the kernel extended-ack text is kept and shown', () => {
    mockKernel.reply = (req) => [errorReply(req, 22, 'Invalid VLAN id')];
    const nl = NetlinkSocket.open();
    try {
      addAddr(nl, { index: 3, name: 'eth0' }, parseCIDR('198.18.0.2/24')!);
      throw new Error('no error');
    } catch (e) {
      expect((e as NetlinkError).extack).toBe('Invalid VLAN id');
      expect((e as Error).message).toBe('adding address 198.18.0.2/24 on eth0: invalid argument (Invalid VLAN id)');
    }
  });

  test('deleting a missing address (EADDRNOTAVAIL) counts as not found; adding one does not', () => {
    expect(isNotFound(new NetlinkError('deleting address', '198.18.0.2/24 on eth0', 99))).toBe(true);
    expect(isNotFound(new NetlinkError('adding address', '198.18.0.2/24 on eth0', 99))).toBe(false);
    expect(isNotFound(new NetlinkError('deleting route', 'default', 3))).toBe(true); // ESRCH
    expect(isNotFound(new Error('no such device'))).toBe(false);
    expect(isExists(new Error('file exists'))).toBe(false);
  });

  test('delete address sends the ACK flag and succeeds on ACK', () => {
    mockKernel.reply = (req) => [ack(req)];
    deleteAddr(NetlinkSocket.open(), 3, parseCIDR('198.18.0.2/24')!);
    expect(mockKernel.sent[0]!.readUInt16LE(6) & 0x4).toBe(0x4);
  });

  test('errno texts are Go/glibc strerror in lower case', () => {
    expect(errnoMessage(17)).toBe('file exists');
    expect(errnoMessage(-19)).toBe('no such device');
    expect(errnoMessage(2)).toBe('no such file or directory');
    expect(errnoMessage(95)).toBe('operation not supported');
    expect(errnoMessage(4000)).toBe('errno 4000');
  });
});

describe('socket request loop', () => {
  const link = (req: Buffer, index: number, name: string, flags = 0) =>
    answer(req, 16, flags, ifinfomsg({ index }), attrStr(3, name), attr(4, Buffer.from([0xdc, 0x05, 0, 0])));

  test('a dump collects multi-part messages until NLMSG_DONE, skipping stale replies', () => {
    mockKernel.reply = (req) => {
      const stale = Buffer.from(link(req, 9, 'old'));
      stale.writeUInt32LE(1, 8); // another seq
      const done = answer(req, 3, 2, Buffer.alloc(4));
      return [Buffer.concat([stale, link(req, 1, 'lo', 2), link(req, 2, 'eth0', 2)]), done];
    };
    const links = listLinks(NetlinkSocket.open());
    expect(links.map((l) => [l.index, l.name, l.mtu])).toEqual([
      [1, 'lo', 1500],
      [2, 'eth0', 1500],
    ]);
  });

  test('an interrupted dump (NLM_F_DUMP_INTR) is taken again', () => {
    let n = 0;
    mockKernel.reply = (req) => {
      n++;
      const flags = n === 1 ? 0x2 | 0x10 : 0x2;
      return [link(req, 1, n === 1 ? 'torn' : 'lo', flags), answer(req, 3, 2, Buffer.alloc(4))];
    };
    expect(listLinks(NetlinkSocket.open()).map((l) => l.name)).toEqual(['lo']);
    expect(n).toBe(2);
  });

  test('get by name returns the single reply without waiting for an ACK', () => {
    mockKernel.reply = (req) => [link(req, 7, 'cni0')];
    expect(getLink(NetlinkSocket.open(), 'cni0')).toMatchObject({ index: 7, name: 'cni0' });
    expect(mockKernel.queue).toHaveLength(0);
  });

  test('a GET whose reply was dropped in a receive-buffer overrun is sent again, not waited for forever', () => {
    let first = true;
    mockKernel.reply = (req) => {
      if (!first) return [link(req, 7, 'cni0')];
      first = false;
      return ['ENOBUFS']; // the kernel dropped our reply (acks and replies are sent MSG_DONTWAIT)
    };
    expect(getLink(NetlinkSocket.open(), 'cni0')).toMatchObject({ index: 7, name: 'cni0' });
    expect(mockKernel.sent).toHaveLength(2);
  });

  test('a change whose ack never comes fails with a timeout naming the operation', () => {
    mockKernel.reply = () => [];
    expect(() => setLinkUp(NetlinkSocket.open(), 7)).toThrow('setting link index 7 up: connection timed out (no reply from the kernel)');
  });

  test('decodeError finds extack after an uncapped echo of the request', () => {
    const req = nlmsg(16, 5, ifinfomsg(), attrStr(3, 'x'));
    const e = Buffer.alloc(4);
    e.writeInt32LE(-22);
    const m = parseMessages(nlmsg(2, 0x200, e, req, attrStr(1, 'bad thing')))[0]!;
    expect(decodeError(m)).toEqual({ errno: 22, extack: 'bad thing' });
  });
});

describe('dumps of other address families are skipped, not decoded as IPs', () => {
  const done = (req: Buffer) => answer(req, 3, 0x2, Buffer.alloc(4));
  test('listAddrs passes over an AF_MCTP address (1 byte) and returns the IPv4 one', () => {
    mockKernel.reply = (req) => [
      answer(req, 20, 0x2, ifaddrmsg({ family: 45, prefixLen: 0, index: 3 }), attr(2, Uint8Array.of(8))),
      answer(req, 20, 0x2, ifaddrmsg({ family: 2, prefixLen: 24, index: 3 }), attr(2, Uint8Array.of(198, 18, 0, 2))),
      done(req),
    ];
    const a = listAddrs(NetlinkSocket.open());
    expect(a.map((x) => formatCIDR(x.ipnet))).toEqual(['198.18.0.2/24']);
  });
  test('listRoutes passes over a multicast routing (RTNL_FAMILY_IPMR) entry', () => {
    mockKernel.reply = (req) => [
      answer(req, 24, 0x2, rtmsg({ family: 128, dstLen: 32, table: 254 }), attr(1, Uint8Array.of(239, 1, 1, 1))),
      answer(req, 24, 0x2, rtmsg({ family: 2, dstLen: 16, table: 254 }), attr(1, Uint8Array.of(198, 19, 0, 0))),
      done(req),
    ];
    expect(listRoutes(NetlinkSocket.open()).map((r) => formatCIDR(r.dst))).toEqual(['198.19.0.0/16']);
  });
});

describe('IP values <-> netlink address bytes', () => {
  test.each([
    ['198.18.0.1', 2, [198, 18, 0, 1]],
    ['fd00::1', 10, [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
    ['::', 10, new Array(16).fill(0)],
  ])('%s is family %d bytes %j and back', (text, af, bytes) => {
    const ip = parseIP(text)!;
    expect([...ipToBytes(ip)]).toEqual(bytes);
    expect(formatIP(ipFromBytes(af, Uint8Array.from(bytes)))).toBe(text);
  });
  test.each([
    ['fd00:0:0:1:0:0:0:1', 'fd00:0:0:1::1'],
    ['fd00:1:0:0:1:0:0:0', 'fd00:1:0:0:1::'],
    ['fe80::ff:fe00:5', 'fe80::ff:fe00:5'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
  ])('%s round-trips through bytes as %s (RFC 5952)', (input, out) => {
    expect(formatIP(ipFromBytes(10, ipToBytes(parseIP(input)!)))).toBe(out);
  });
  test('an IPv4-mapped address parses as IPv4 (Go To4(), as the reference netlink library picks the family)', () => {
    expect([...ipToBytes(parseIP('::ffff:198.18.0.1')!)]).toEqual([198, 18, 0, 1]);
  });
  test('16 mapped bytes from the kernel stay IPv6 and print as ::ffff:a.b.c.d, like iproute2', () => {
    const ip = ipFromBytes(10, Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]));
    expect(ip.family).toBe(6);
    expect(formatIP(ip)).toBe('::ffff:198.18.0.1');
  });
  test('bytes of the wrong length or family are refused', () => {
    expect(() => ipFromBytes(2, new Uint8Array(16))).toThrow('invalid IPv4 address length 16');
    expect(() => ipFromBytes(10, new Uint8Array(4))).toThrow('invalid IPv6 address length 4');
    expect(() => ipFromBytes(28, new Uint8Array(4))).toThrow('address family 28 is not IPv4 or IPv6');
  });
  test('CIDR keeps host bits', () => {
    expect(formatCIDR(parseCIDR('198.18.0.7/24')!)).toBe('198.18.0.7/24');
  });
});

describe('MAC text rule (shared/mac)', () => {
  test('round trip prints lower-case colon hex', () => {
    expect(formatMAC(parseMAC('02:AA:00:00:0b:01')!)).toBe('02:aa:00:00:0b:01');
    expect(normalizeMAC('0A-58-C6-12-00-02')).toBe('0a:58:c6:12:00:02');
  });
  test.each(['02:aa:00', '02:aa:00:00:0b:01:02', '02:aa:00:00:0b:1', 'zz:aa:00:00:0b:01', '02aa.0000.0b01', ''])('rejects %j', (bad) => {
    expect(parseMAC(bad)).toBeNull();
    expect(normalizeMAC(bad)).toBeNull();
  });
});

describe('sysctlPath', () => {
  test.each([
    ['net.ipv4.ip_forward', '/proc/sys/net/ipv4/ip_forward'],
    ['net/ipv6/conf/cni0.100/accept_dad', '/proc/sys/net/ipv6/conf/cni0.100/accept_dad'],
    // the interface name in a dotted key may contain dots (VLAN devices)
    ['net.ipv6.conf.cni0.100.accept_dad', '/proc/sys/net/ipv6/conf/cni0.100/accept_dad'],
    ['net.ipv4.conf.eth0.arp_notify', '/proc/sys/net/ipv4/conf/eth0/arp_notify'],
    ['net.ipv6.conf.all.forwarding', '/proc/sys/net/ipv6/conf/all/forwarding'],
    ['/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/ipv4/ip_forward'],
  ])('%s -> %s', (key, path) => {
    expect(sysctlPath(key)).toBe(path);
  });
  test('refuses path traversal', () => {
    expect(() => sysctlPath('net/../../etc/passwd')).toThrow();
  });
});
