// Differential: our bandwidth against the reference (/usr/lib/cni/bandwidth, Debian 1.1.1, tbf) on
// the same configs, each chained after our bridge in twin labs with the same network name and
// container IDs: results, `tc -j` qdisc and filter state, the ifb device, CHECK (each on the other's state too) and
// DEL agree; and a node switched between the two between ADD and DEL leaves no ifb behind.
import { existsSync } from 'node:fs';
import { BandwidthLab, ifbs, ingressFilters, OUR_BANDWIDTH, qdiscs, REFERENCE_BANDWIDTH } from './bandwidth-harness';
import { ifbName } from '../../plugins/meta/bandwidth/main';

jest.setTimeout(180000);

const maybe = existsSync(REFERENCE_BANDWIDTH) ? describe : describe.skip;

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Random names and MACs become placeholders; an empty dns goes (Go's 1.0.0 result prints "dns":{}). */
function normalise(v: Json): Json {
  if (v && typeof v === 'object' && v.dns && Object.keys(v.dns).length === 0) v = { ...v, dns: undefined };
  const s = JSON.stringify(v ?? null)
    .replace(/"([0-9a-f]{2}:){5}[0-9a-f]{2}"/g, '"<mac>"')
    .replace(/veth[0-9a-f]{8}/g, '<veth>')
    .replace(/br-p-[0-9a-f]{8}/g, '<pod>');
  return JSON.parse(s);
}

/** The host's tc state: qdiscs (refcnt is kernel bookkeeping) and the host veth's ingress filters. */
async function tcState(b: BandwidthLab): Promise<Json> {
  const q = (await qdiscs(b.host)).map(({ refcnt: _, ...rest }: Json) => rest);
  const f = (await ingressFilters(b.host, b.hostVeth())).map((x: Json) => {
    if (!x.options?.actions) return x;
    // The reference's vishvananda/netlink adds a second redirect (from U32.RedirIndex, besides its
    // Actions) with control "pass"; the first redirect steals every packet, so no action after it
    // ever runs: compared up to the first stolen one. index/ref/bind are per-netns counters.
    const acts: Json[] = x.options.actions.map(({ order: _o, index: _i, ref: _r, bind: _b, ...a }: Json) => a);
    const stop = acts.findIndex((a) => a.control_action?.type === 'stolen');
    return { ...x, options: { ...x.options, actions: stop < 0 ? acts : acts.slice(0, stop + 1) } };
  });
  return normalise({ q, f });
}

const CASES: Array<[string, Record<string, unknown>]> = [
  ['both directions', { ingressRate: 8_000_000, ingressBurst: 262_144, egressRate: 16_000_000, egressBurst: 131_072 }],
  ['uneven numbers', { ingressRate: 12_345_679, ingressBurst: 40_007, egressRate: 1_000_001, egressBurst: 9_999 }],
  ['egress only', { egressRate: 800_000, egressBurst: 80_000 }],
  ['runtimeConfig.bandwidth', { runtimeConfig: { bandwidth: { ingressRate: 1_600_000, ingressBurst: 160_000 } } }],
];

maybe('differential against the reference bandwidth', () => {
  let ours: BandwidthLab;
  let theirs: BandwidthLab;
  afterEach(async () => {
    await ours?.dispose();
    await theirs?.dispose();
  });

  test.each(CASES)('%s: result, tc state, CHECK both ways, DEL', async (_name, extra) => {
    ours = await BandwidthLab.create();
    theirs = await BandwidthLab.create();
    const a = await ours.call('ADD', ours.conf(extra));
    const b = await theirs.call('ADD', theirs.conf(extra), { binary: REFERENCE_BANDWIDTH });
    expect(a.exitCode).toBe(0);
    expect(b.exitCode).toBe(0);
    expect(normalise(a.json)).toEqual(normalise(b.json));
    expect(await tcState(ours)).toEqual(await tcState(theirs));
    // The ifb itself: name, MTU, flags. Its queue length is the host veth's, as upstream sets it;
    // Debian's 1.1.1 sets 0 (`ip` omits it then). Ours also carries an alias, for GC.
    const link = async (b: BandwidthLab): Promise<Json[]> =>
      (await ifbs(b.host)).map((l: Json) => ({ ifname: l.ifname, mtu: l.mtu, flags: l.flags, operstate: l.operstate, kind: l.linkinfo?.info_kind, txqlen: l.txqlen }));
    const [ourIfb, theirIfb] = [await link(ours), await link(theirs)];
    expect(ourIfb).toEqual(theirIfb.map((l) => ({ ...l, txqlen: 1000 })));
    expect(theirIfb.every((l) => l.txqlen === undefined)).toBe(true);
    for (const [lab, bin] of [[ours, OUR_BANDWIDTH()], [ours, REFERENCE_BANDWIDTH], [theirs, OUR_BANDWIDTH()], [theirs, REFERENCE_BANDWIDTH]] as const)
      expect((await lab.call('CHECK', lab.conf(extra), { binary: bin })).exitCode).toBe(0);
    expect((await ours.call('DEL', ours.conf(extra))).exitCode).toBe(0);
    expect((await theirs.call('DEL', theirs.conf(extra), { binary: REFERENCE_BANDWIDTH })).exitCode).toBe(0);
    expect(await ifbs(ours.host)).toEqual([]);
    expect(await ifbs(theirs.host)).toEqual([]);
  });

  test('the reference names its ifb as we do: "bwp" + sha512(network + container ID)', async () => {
    theirs = await BandwidthLab.create();
    expect((await theirs.call('ADD', theirs.conf(CASES[0]![1]), { binary: REFERENCE_BANDWIDTH })).exitCode).toBe(0);
    expect((await ifbs(theirs.host)).map((l: Json) => l.ifname)).toEqual([ifbName('bwnet', theirs.id(theirs.pod()))]);
  });

  test('switched in the middle of a pod\'s life: ADD with one, DEL with the other (also without a netns) leaves no ifb', async () => {
    ours = await BandwidthLab.create();
    const conf = ours.conf(CASES[0]![1]);
    expect((await ours.call('ADD', conf, { binary: REFERENCE_BANDWIDTH })).exitCode).toBe(0);
    expect((await ours.call('DEL', conf, { netns: '' })).exitCode).toBe(0);
    expect(await ifbs(ours.host)).toEqual([]);
    // the bridge's DEL takes the host veth and its qdiscs; then ours ADDs and the reference DELs
    const pod = ours.pod();
    expect((await ours.lab.call('DEL', ours.lab.conf({ name: 'bwnet' }), { pod, id: ours.id(pod) })).exitCode).toBe(0);
    expect(await qdiscs(ours.host)).toEqual([]);
    const again = await ours.lab.call('ADD', ours.lab.conf({ name: 'bwnet' }), { pod, id: ours.id(pod) });
    ours.prev.set(pod, again.json);
    expect((await ours.call('ADD', ours.conf(CASES[0]![1]))).exitCode).toBe(0);
    expect((await ours.call('DEL', ours.conf(CASES[0]![1]), { binary: REFERENCE_BANDWIDTH })).exitCode).toBe(0);
    expect(await ifbs(ours.host)).toEqual([]);
  });
});
