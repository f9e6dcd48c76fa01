// Differential: our tuning against the reference (/usr/lib/cni/tuning, Debian 1.1.1: CNI up to
// 1.0.0, no txQLen key) on the same configs, each chained after our bridge in twin labs. Results,
// the pod's link and sysctls, the saved file, CHECK and DEL must agree; and a node switched between
// the two between ADD and DEL (ADD with one, DEL with the other) restores the originals either way.
import { existsSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { linkState, procSys, REFERENCE_TUNING, TuningLab, type LinkState } from './tuning-harness';

jest.setTimeout(180000);

const maybe = existsSync(REFERENCE_TUNING) ? describe : describe.skip;
// txQLen, the allowlist and the duplicate-key check came in upstream 1.2-1.4, after Debian's 1.1.1:
// compared only against such a reference tuning executable (upstream >= 1.4.0), named by CNIKIT_REFERENCE_TUNING.
const maybeUpstream = process.env.CNIKIT_REFERENCE_TUNING && existsSync(REFERENCE_TUNING) ? describe : describe.skip;

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const MAC = 'c2:11:22:33:44:55';

/** Random names and MACs (all but the configured one) become placeholders; an empty dns goes (libcni 1.1 prints "dns":{}). */
function normalise(v: Json): Json {
  if (v && typeof v === 'object' && v.dns && Object.keys(v.dns).length === 0) v = { ...v, dns: undefined };
  const s = JSON.stringify(v)
    .replace(/"([0-9a-f]{2}:){5}[0-9a-f]{2}"/g, (m) => (m === `"${MAC}"` ? m : '"<mac>"'))
    .replace(/veth[0-9a-f]{8}/g, '<veth>')
    .replace(/br-p-[0-9a-f]{8}/g, '<pod>');
  return JSON.parse(s);
}

/** The link without its MAC when the MAC was not configured (the bridge's MACs are random). */
const comparable = (l: LinkState, macSet: boolean): Partial<LinkState> => (macSet ? l : { ...l, address: undefined });

const SYSCTL_PATHS = ['net/ipv4/conf/eth0/rp_filter', 'net/core/somaxconn', 'net/ipv4/conf/eth0/arp_ignore'];
const sysctls = async (pod: string): Promise<string[]> => Promise.all(SYSCTL_PATHS.map((p) => procSys(pod, p)));

const CASES: Array<[string, Record<string, unknown>, string?]> = [
  ['every key', { mac: MAC, mtu: 1400, promisc: true, allmulti: true, sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '2', 'net.core.somaxconn': '512' } }],
  ['allmulti off, sysctls only otherwise', { allmulti: false, sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' } }],
  // A config sysctl map is needed: the reference panics merging args.cni.sysctl into a missing one (test below).
  ['runtimeConfig.mac and args.cni keys', { mac: 'c2:00:00:00:00:01', runtimeConfig: { mac: MAC }, sysctl: {}, args: { cni: { mtu: 1300, promisc: true, sysctl: { 'net.core.somaxconn': '300' } } } }],
  ['CNI_ARGS MAC', { mtu: 9000 }, `IgnoreUnknown=1;K8S_POD_NAME=x;MAC=${MAC}`],
];
const VERSIONS = ['0.3.1', '0.4.0', '1.0.0'];

maybe('differential against the reference tuning', () => {
  let ours: TuningLab;
  let theirs: TuningLab;
  afterEach(async () => {
    await ours?.dispose();
    await theirs?.dispose();
  });

  for (const [name, extra, args] of CASES) {
    test.each(VERSIONS)(`${name} (%s): result, link, sysctls, saved file, CHECK, DEL`, async (v) => {
      ours = await TuningLab.create(v);
      theirs = await TuningLab.create(v);
      const macSet = JSON.stringify(extra).includes(MAC) || !!args;
      const before = await linkState(ours.pod);
      const a = await ours.call('ADD', ours.conf(extra), { args });
      const b = await theirs.call('ADD', theirs.conf(extra), { args, binary: REFERENCE_TUNING });
      expect(b.exitCode).toBe(0);
      expect(a.exitCode).toBe(0);
      expect(normalise(a.json)).toEqual(normalise(b.json));
      expect(comparable(await linkState(ours.pod), macSet)).toEqual(comparable(await linkState(theirs.pod), macSet));
      expect(await sysctls(ours.pod)).toEqual(await sysctls(theirs.pod));
      expect(ours.savedFiles()).toEqual(theirs.savedFiles().map((f) => f.replace(theirs.containerID, ours.containerID)));
      for (const f of ours.savedFiles()) {
        const mine = readFileSync(join(ours.stateDir, f), 'utf8');
        const ref = readFileSync(join(theirs.stateDir, f.replace(ours.containerID, theirs.containerID)), 'utf8');
        expect(mine.replace(/"mac": "[^"]*"/, '"mac": "<mac>"')).toBe(ref.replace(/"mac": "[^"]*"/, '"mac": "<mac>"'));
      }

      if (v !== '0.3.1') {
        const ca = await ours.call('CHECK', { ...ours.conf(extra), prevResult: a.json }, { args });
        const cb = await theirs.call('CHECK', { ...theirs.conf(extra), prevResult: b.json }, { args, binary: REFERENCE_TUNING });
        expect([ca.exitCode, ca.stdout]).toEqual([0, '']);
        // Reference quirk (Debian's 1.1.1, fixed in 1.3.0): its CHECK does not substitute IFNAME, so it fails its own ADD.
        if (JSON.stringify(extra).includes('IFNAME') && cb.exitCode !== 0) expect(cb.json.msg).toMatch(/^open \/proc\/sys\/net\/ipv4\/conf\/IFNAME\/rp_filter: no such file/);
        else expect([cb.exitCode, cb.stdout]).toEqual([0, '']);
        for (const lab of [ours, theirs]) await execa('ip', ['-n', lab.pod, 'link', 'set', 'eth0', 'mtu', '1280']);
        // Without IFNAME keys, so the reference gets as far as the link.
        const noIfname = (c: Record<string, unknown>) => ({ ...c, sysctl: undefined, args: undefined });
        const ta = await ours.call('CHECK', noIfname({ ...ours.conf(extra), prevResult: a.json }), { args });
        const tb = await theirs.call('CHECK', noIfname({ ...theirs.conf(extra), prevResult: b.json }), { args, binary: REFERENCE_TUNING });
        expect([ta.exitCode, ta.json?.msg]).toEqual([tb.exitCode, tb.json?.msg]);
        if ((extra as Json).mtu) expect(ta.json?.msg).toBe(`Error: Tuning configured MTU of eth0 is ${(extra as Json).mtu}, current value is 1280`);
      }

      const da = await ours.call('DEL', ours.conf(extra), { args });
      const db = await theirs.call('DEL', theirs.conf(extra), { args, binary: REFERENCE_TUNING });
      expect([da.exitCode, da.stdout]).toEqual([db.exitCode, db.stdout]);
      expect(comparable(await linkState(ours.pod), false)).toEqual(comparable(await linkState(theirs.pod), false));
      expect((await linkState(ours.pod)).address).toBe(before.address);
      expect(ours.savedFiles()).toEqual(theirs.savedFiles());
    });
  }

  test('same error for a missing prevResult and for a sysctl outside net', async () => {
    ours = await TuningLab.create();
    theirs = await TuningLab.create();
    const { prevResult: _a, ...noPrevA } = ours.conf({ mtu: 1400 });
    const { prevResult: _b, ...noPrevB } = theirs.conf({ mtu: 1400 });
    const a = await ours.call('ADD', noPrevA);
    const b = await theirs.call('ADD', noPrevB, { binary: REFERENCE_TUNING });
    expect([a.exitCode, a.json.msg]).toEqual([b.exitCode, b.json.msg]);
    const ka = await ours.call('ADD', ours.conf({ sysctl: { 'kernel.hostname': 'x' } }));
    const kb = await theirs.call('ADD', theirs.conf({ sysctl: { 'kernel.hostname': 'x' } }), { binary: REFERENCE_TUNING });
    expect([ka.exitCode, kb.exitCode]).toEqual([1, 1]);
    expect(kb.json.msg).toMatch(/^invalid net sysctl key: "kernel[./]hostname"$/); // 1.1.1 shows the key, 1.2+ the path
    expect(ka.json.msg).toContain('field "sysctl" = "kernel.hostname"'); // ours: code 7 naming the key as written
  });

  test('args.cni.sysctl without a config sysctl: the reference panics, ours applies it', async () => {
    ours = await TuningLab.create();
    theirs = await TuningLab.create();
    const extra = { args: { cni: { sysctl: { 'net.core.somaxconn': '301' } } } };
    const b = await theirs.call('ADD', theirs.conf(extra), { binary: REFERENCE_TUNING });
    expect(b.exitCode).toBe(2);
    expect(b.stderr).toContain('assignment to entry in nil map');
    const a = await ours.call('ADD', ours.conf(extra));
    expect(a.exitCode).toBe(0);
    expect(await procSys(ours.pod, 'net/core/somaxconn')).toBe('301');
  });

  test('CHECK after ADD: the reference fails on a tab-printed sysctl and on an upper-case MAC, ours passes', async () => {
    ours = await TuningLab.create();
    theirs = await TuningLab.create();
    const extra = { mac: 'C2:11:22:33:44:55', sysctl: { 'net.ipv4.tcp_rmem': '4096 87380 6291456' } };
    const a = await ours.call('ADD', ours.conf(extra));
    const b = await theirs.call('ADD', theirs.conf(extra), { binary: REFERENCE_TUNING });
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    expect(a.json.interfaces[2].mac).toBe(MAC);
    expect(b.json.interfaces[2].mac).toBe('C2:11:22:33:44:55');
    const cb = await theirs.call('CHECK', { ...theirs.conf(extra), prevResult: b.json }, { binary: REFERENCE_TUNING });
    expect(cb.json.msg).toBe('Error: Tuning configured value of /proc/sys/net/ipv4/tcp_rmem is 4096 87380 6291456, current value is 4096\t87380\t6291456');
    const cb2 = await theirs.call('CHECK', { ...theirs.conf({ mac: extra.mac }), prevResult: b.json }, { binary: REFERENCE_TUNING });
    expect(cb2.json.msg).toBe(`Error: Tuning configured Ethernet of eth0 is C2:11:22:33:44:55, current value is ${MAC}`);
    const ca = await ours.call('CHECK', { ...ours.conf(extra), prevResult: a.json });
    expect([ca.exitCode, ca.stdout]).toEqual([0, '']);
  });

  const SWITCH = { mac: MAC, mtu: 1400, promisc: true, allmulti: true };
  for (const [first, second] of [
    ['ours', 'reference'],
    ['reference', 'ours'],
  ] as const) {
    test(`ADD with ${first}, DEL with ${second}: the originals come back and the saved file goes`, async () => {
      ours = await TuningLab.create();
      const before = await linkState(ours.pod);
      const bin = (who: string) => (who === 'ours' ? undefined : REFERENCE_TUNING);
      expect((await ours.call('ADD', ours.conf(SWITCH), { binary: bin(first) })).exitCode).toBe(0);
      expect(await linkState(ours.pod)).toEqual({ ...before, address: MAC, mtu: 1400, promisc: true, allmulti: true });
      const d = await ours.call('DEL', ours.conf(SWITCH), { binary: bin(second) });
      expect([d.exitCode, d.stdout]).toEqual([0, '']);
      expect(await linkState(ours.pod)).toEqual(before);
      expect(ours.savedFiles()).toEqual([]);
    });
  }
});

maybeUpstream('differential against an upstream (>= 1.4.0) reference tuning', () => {
  let ours: TuningLab;
  let theirs: TuningLab;
  afterEach(async () => {
    await ours?.dispose();
    await theirs?.dispose();
  });

  test.each(['0.4.0', '1.0.0'])('txQLen (%s): result, link, saved file, CHECK, DEL', async (v) => {
    ours = await TuningLab.create(v);
    theirs = await TuningLab.create(v);
    const extra = { txQLen: 321, mtu: 1400, sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '2' } };
    const before = await linkState(ours.pod);
    const a = await ours.call('ADD', ours.conf(extra));
    const b = await theirs.call('ADD', theirs.conf(extra), { binary: REFERENCE_TUNING });
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    expect(normalise(a.json)).toEqual(normalise(b.json));
    expect(comparable(await linkState(ours.pod), false)).toEqual(comparable(await linkState(theirs.pod), false));
    expect((await linkState(ours.pod)).txqlen).toBe(321);
    const file = (t: TuningLab) => readFileSync(join(t.stateDir, `${t.containerID}_eth0.json`), 'utf8');
    expect(file(ours)).toBe(file(theirs));
    const ca = await ours.call('CHECK', { ...ours.conf(extra), prevResult: a.json });
    const cb = await theirs.call('CHECK', { ...theirs.conf(extra), prevResult: b.json }, { binary: REFERENCE_TUNING });
    expect([ca.exitCode, ca.stdout]).toEqual([cb.exitCode, cb.stdout]);
    for (const t of [ours, theirs]) await execa('ip', ['-n', t.pod, 'link', 'set', 'eth0', 'txqueuelen', '7']);
    const ta = await ours.call('CHECK', { ...ours.conf(extra), prevResult: a.json });
    const tb = await theirs.call('CHECK', { ...theirs.conf(extra), prevResult: b.json }, { binary: REFERENCE_TUNING });
    expect(ta.exitCode).toBe(1);
    expect(tb.exitCode).toBe(1);
    expect(ta.json.msg).toBe('Error: Tuning configured Transmit Queue Length of eth0 is 321, current value is 7'); // theirs prints a pointer
    expect((await ours.call('DEL', ours.conf(extra))).exitCode).toBe(0);
    expect((await theirs.call('DEL', theirs.conf(extra), { binary: REFERENCE_TUNING })).exitCode).toBe(0);
    expect(await linkState(ours.pod)).toEqual(before);
    expect(comparable(await linkState(theirs.pod), false)).toEqual(comparable(before, false));
  });

  for (const [first, second] of [
    ['ours', 'reference'],
    ['reference', 'ours'],
  ] as const) {
    test(`txQLen: ADD with ${first}, DEL with ${second} restores it`, async () => {
      ours = await TuningLab.create();
      const before = await linkState(ours.pod);
      const bin = (who: string) => (who === 'ours' ? undefined : REFERENCE_TUNING);
      const conf = ours.conf({ txQLen: 55, allmulti: true });
      expect((await ours.call('ADD', conf, { binary: bin(first) })).exitCode).toBe(0);
      expect(await linkState(ours.pod)).toEqual({ ...before, txqlen: 55, allmulti: true });
      expect((await ours.call('DEL', conf, { binary: bin(second) })).exitCode).toBe(0);
      expect(await linkState(ours.pod)).toEqual(before);
      expect(ours.savedFiles()).toEqual([]);
    });
  }

  test('allowlist and duplicated keys: the same configs pass and fail', async () => {
    ours = await TuningLab.create();
    theirs = await TuningLab.create();
    const allow = '^net\\.ipv4\\.conf\\.IFNAME\\.rp_filter$\n^net\\.core\\.\n';
    for (const [sysctl, ok] of [
      [{ 'net.ipv4.conf.IFNAME.rp_filter': '1', 'net.core.somaxconn': '600' }, true],
      [{ 'net.ipv4.conf.eth0.rp_filter': '1' }, false],
      [{ 'net.ipv4.ip_forward': '1' }, false],
    ] as const) {
      const a = await ours.addWithAllowlist(allow, ours.conf({ sysctl }));
      const b = await theirs.addWithAllowlist(allow, theirs.conf({ sysctl }), REFERENCE_TUNING);
      expect([a.exitCode, b.exitCode]).toEqual(ok ? [0, 0] : [1, 1]);
    }
    const dup = (t: TuningLab) => JSON.stringify(t.conf({ mtu: 1400 })).replace('"mtu":1400', '"sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}');
    const a = await ours.call('ADD', dup(ours));
    const b = await theirs.call('ADD', dup(theirs), { binary: REFERENCE_TUNING });
    expect([a.exitCode, b.exitCode]).toEqual([1, 1]);
    expect(b.json.msg).toContain('duplicated sysctl keys are not allowed');
    expect(a.json.msg).toContain('duplicated sysctl keys are not allowed');
  });
});
