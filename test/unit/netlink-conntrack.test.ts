// ctnetlink messages (shared/linux/netlink/conntrack.ts): the dump and delete requests byte for
// byte as libnetfilter_conntrack / vishvananda/netlink build them, and the original tuple read back.
import { buildDeleteConntrack, buildListConntrack, decodeOrigTuple, IPPROTO_UDP } from '../../shared/linux/netlink/conntrack';
import { attr, nested, parseMessages } from '../../shared/linux/netlink/message';

const u16be = (v: number) => Buffer.from([v >> 8, v & 0xff]);
// CTA_TUPLE_IP { CTA_IP_V4_SRC, CTA_IP_V4_DST }, CTA_TUPLE_PROTO { CTA_PROTO_NUM, SRC_PORT, DST_PORT }
const tuple = Buffer.concat([
  nested(1 | 0x8000, attr(1, Buffer.from([198, 18, 0, 1])), attr(2, Buffer.from([198, 18, 0, 1]))),
  nested(2 | 0x8000, attr(1, Buffer.from([IPPROTO_UDP])), attr(2, u16be(40123)), attr(3, u16be(5353))),
]);

test('the dump request: type IPCTNL_MSG_CT_GET of subsystem ctnetlink, REQUEST|DUMP, nfgenmsg of the family', () => {
  const m = buildListConntrack(4);
  expect(m.readUInt16LE(4)).toBe(0x101);
  expect(m.readUInt16LE(6)).toBe(0x301);
  expect([...m.subarray(16)]).toEqual([2, 0, 0, 0]);
  expect([...buildListConntrack(6).subarray(16)]).toEqual([10, 0, 0, 0]);
});

test('an entry\'s original tuple is read (protocol, destination port) and a delete request carries it unchanged', () => {
  const reply = Buffer.concat([Buffer.alloc(16), Buffer.from([2, 0, 0, 0]), nested(1 | 0x8000, tuple), nested(2 | 0x8000, tuple)]);
  reply.writeUInt32LE(reply.length, 0);
  reply.writeUInt16LE(0x100, 4);
  const t = decodeOrigTuple(parseMessages(reply)[0]!)!;
  expect([t.proto, t.dstPort]).toEqual([IPPROTO_UDP, 5353]);
  const del = buildDeleteConntrack(4, t.raw);
  expect(del.readUInt16LE(4)).toBe(0x102);
  expect(del.readUInt16LE(6)).toBe(0x5); // REQUEST|ACK
  expect(del.subarray(20)).toEqual(nested(1 | 0x8000, tuple));
});
