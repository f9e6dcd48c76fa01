// The bandwidth plugin's pure parts: its tc and ifb requests equal what iproute2 sends for the same
// command (captured from a real run), its tbf parameters equal the reference's computation, and
// its config rules (which source wins, rate/burst pairs, limits) give code 7 naming the field.
import captures from './tc-captured.json';
import { buildAddIfb, buildSetLink } from '../../shared/linux/netlink/link';
import { buildAddIngress, buildAddRedirectFilter, buildAddTbf, buildListFilters, buildListQdiscs, decodeFilter, decodeQdisc, INGRESS_HANDLE, tickInUsec } from '../../shared/linux/netlink/tc';
import { parseMessages } from '../../shared/linux/netlink/message';
import { loadBandwidthConf, tbfFor } from '../../plugins/meta/bandwidth/config';
import { ifbName } from '../../plugins/meta/bandwidth/main';
import { CniError } from '../../shared/cni/errors';

const CAP = captures as Record<string, string>;

function captured(name: string): Buffer {
  const b = Buffer.from(CAP[name]!, 'hex');
  b.fill(0, 8, 12); // nlmsg_seq differs per run
  return b;
}

/**
 * tc's tbf request without its TCA_TBF_BURST attribute (8 bytes right after TCA_TBF_PARMS): the
 * one deliberate difference, so the kernel keeps the reference's buffer (see buildAddTbf).
 */
function withoutBurst(b: Buffer): Buffer {
  const optsAt = 16 + 20 + 8; // nlmsghdr, tcmsg, TCA_KIND "tbf\0"
  const burstAt = optsAt + 4 + 40; // TCA_OPTIONS header, TCA_TBF_PARMS (4 + 36)
  expect(b.readUInt16LE(burstAt + 2)).toBe(6); // TCA_TBF_BURST
  const out = Buffer.concat([b.subarray(0, burstAt), b.subarray(burstAt + 8)]);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt16LE(b.readUInt16LE(optsAt) - 8, optsAt);
  return out;
}

const hex = (b: Buffer): string => b.toString('hex');

describe('tc requests match iproute2', () => {
  test('the scheduler clock is the one tc read when the captures were taken (15.625 ticks/us)', () => {
    expect(tickInUsec()).toBe(15.625);
  });

  test('tc qdisc add dev hv0 root handle 1: tbf rate 8000000bit burst 16384b latency 25ms (minus TCA_TBF_BURST)', () => {
    const t = tbfFor({ rate: 8_000_000, burst: 16384 * 8 });
    expect(t).toEqual({ rate: 1_000_000, buffer: 256000, limit: 41384 });
    expect(hex(buildAddTbf({ ifindex: 3, ...t }))).toBe(hex(withoutBurst(captured('tbf'))));
  });

  test('an uneven rate: tbf rate 12345678bit burst 5000b latency 25ms (rate truncated to bytes, rate table as tc)', () => {
    const t = tbfFor({ rate: 12_345_678, burst: 5000 * 8 });
    expect(t).toEqual({ rate: 1_543_209, buffer: 50625, limit: 43580 });
    expect(hex(buildAddTbf({ ifindex: 4, ...t }))).toBe(hex(withoutBurst(captured('tbf2'))));
  });

  test('tc qdisc add dev hv0 handle ffff: ingress', () => {
    expect(hex(buildAddIngress(3))).toBe(hex(captured('ingress')));
  });

  test('tc filter add dev hv0 parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1 action mirred egress redirect dev <ifb>', () => {
    expect(hex(buildAddRedirectFilter(3, 4))).toBe(hex(captured('filter')));
  });

  test('tc qdisc show dev hv0 / tc filter show dev hv0 parent ffff: (dump requests)', () => {
    expect(hex(buildListQdiscs(3))).toBe(hex(captured('qlist')));
    expect(hex(buildListFilters(3, INGRESS_HANDLE))).toBe(hex(captured('flist')));
  });

  test('a filter decodes to the device its mirred action redirects to (tc\'s own request, same layout as the dump)', () => {
    const [m] = parseMessages(captured('filter'));
    expect(decodeFilter(m!)).toEqual({ kind: 'u32', redirectsTo: [4] });
  });

  test('ip link add bwp0123456789ab mtu 1500 up type ifb', () => {
    expect(hex(buildAddIfb({ name: 'bwp0123456789ab', mtu: 1500, up: true }))).toBe(hex(captured('ifb')));
  });

  test('ip link add bwp0123456789ab mtu 1500 txqueuelen 1000 up type ifb', () => {
    expect(hex(buildAddIfb({ name: 'bwp0123456789ab', mtu: 1500, txQLen: 1000, up: true }))).toBe(hex(captured('ifbqlen')));
  });

  test('ip link set <index 2> alias "abc d" (no NUL, as iproute2 sends it)', () => {
    expect(hex(buildSetLink(2, { alias: 'abc d' }))).toBe(hex(captured('alias')));
  });

  test('a tbf request decodes back to its rate, limit and buffer; rates of 4 GB/s and more travel in TCA_TBF_RATE64', () => {
    const [m] = parseMessages(buildAddTbf({ ifindex: 7, rate: 5_000_000_000, limit: 1000, buffer: 2000 }));
    expect(decodeQdisc(m!)).toEqual({ ifindex: 7, handle: 0x10000, parent: 0xffffffff, kind: 'tbf', tbf: { rate: 5_000_000_000, limit: 1000, buffer: 2000 } });
  });
});

describe('tbf parameters are the reference\'s', () => {
  test('buffer = truncated burst time in us × 15.625, limit = rate × 25 ms + burst (bytes)', () => {
    // 1 Mbit/s with a 1 MiB burst: 1048576 B at 125000 B/s = 8388608 us → 131072000 ticks.
    expect(tbfFor({ rate: 1_000_000, burst: 8 * 1048576 })).toEqual({ rate: 125000, buffer: 131_072_000, limit: 3125 + 1048576 });
    // bits that are not whole bytes are dropped like the reference's integer division
    expect(tbfFor({ rate: 8_000_007, burst: 8 * 1000 + 7 })).toEqual({ rate: 1_000_000, buffer: 15625, limit: 26000 });
  });

  test('a buffer beyond a u32 saturates instead of wrapping (kubernetes\' MaxInt32-bit burst at 1 Mbit/s)', () => {
    expect(tbfFor({ rate: 1_000_000, burst: 2 ** 31 - 1 }).buffer).toBe(0xffffffff);
  });
});

describe('ifb name', () => {
  test('"bwp" + sha512(network + container ID), 15 characters, as the reference names it', () => {
    // `printf bwnetctr1 | sha512sum` starts ea62040b30ca (the integration differential checks the reference agrees)
    expect(ifbName('bwnet', 'ctr1')).toBe('bwpea62040b30ca');
  });
});

function configFault(conf: Record<string, unknown>): string {
  try {
    loadBandwidthConf({ conf: { name: 'n', ...conf } });
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    expect((e as CniError).code).toBe(7);
    return (e as CniError).message;
  }
  throw new Error('no error');
}

describe('config', () => {
  test('top-level limits win over runtimeConfig.bandwidth as a whole when any of their keys is present', () => {
    const rc = { bandwidth: { ingressRate: 800, ingressBurst: 800, egressRate: 1600, egressBurst: 1600 } };
    expect(loadBandwidthConf({ conf: { name: 'n', egressRate: 8000, egressBurst: 80, runtimeConfig: rc } })).toMatchObject({
      ingress: undefined,
      egress: { rate: 8000, burst: 80 },
    });
    expect(loadBandwidthConf({ conf: { name: 'n', runtimeConfig: rc } })).toMatchObject({ ingress: { rate: 800, burst: 800 }, egress: { rate: 1600, burst: 1600 } });
    expect(loadBandwidthConf({ conf: { name: 'n' } })).toMatchObject({ ingress: undefined, egress: undefined });
  });

  test('a rate needs its burst and a burst its rate; the fault names the field and the other value', () => {
    expect(configFault({ ingressRate: 1000 })).toBe('invalid config: field "ingressBurst" = missing: if rate is set, burst must also be set (ingressRate is 1000)');
    expect(configFault({ runtimeConfig: { bandwidth: { egressBurst: 64 } } })).toBe(
      'invalid config: field "runtimeConfig.bandwidth.egressRate" = missing: if burst is set, rate must also be set (egressBurst is 64)',
    );
  });

  test('limits: burst under 4 GB, rate and burst at least one byte, whole non-negative numbers, no subnet keys', () => {
    expect(configFault({ egressRate: 8000, egressBurst: 8 * 0xffffffff })).toBe(`invalid config: field "egressBurst" = ${8 * 0xffffffff}: burst cannot be more than 4GB`);
    expect(configFault({ ingressRate: 7, ingressBurst: 800 })).toBe('invalid config: field "ingressRate" = 7: must be at least 8 bits/s (one byte per second)');
    expect(configFault({ ingressRate: 800, ingressBurst: 4 })).toBe('invalid config: field "ingressBurst" = 4: must be at least 8 bits (one byte)');
    expect(configFault({ ingressRate: -1, ingressBurst: 4 })).toMatch(/^invalid config: field "ingressRate" = -1: must be a whole number of bits/);
    expect(configFault({ egressRate: 1.5, egressBurst: 4 })).toMatch(/^invalid config: field "egressRate" = 1.5: /);
    expect(configFault({ ingressRate: '1M', ingressBurst: 4 })).toMatch(/^invalid config: field "ingressRate" = "1M": /);
    expect(configFault({ ingressRate: 800, ingressBurst: 800, shapedSubnets: ['10.0.0.0/8'] })).toMatch(/^invalid config: field "shapedSubnets" = \["10.0.0.0\/8"\]: subnet-based shaping is not supported/);
  });

  test('a rate so high that 25 ms of it plus the burst overflows tbf\'s u32 queue limit is refused', () => {
    expect(configFault({ egressRate: 2 ** 50, egressBurst: 8 * 2 ** 31 })).toMatch(/^invalid config: field "egressRate" = \d+: with egressBurst \d+ the tbf queue/);
  });
});
