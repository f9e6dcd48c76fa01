// Differential: our firewall against the Go reference (/usr/lib/cni/firewall, 1.1.1) on the same
// configs, each chained after our bridge in its own scratch host netns with the same addresses. The
// filter tables (both families) must be the same after ADD; each one's CHECK passes on the other's
// rules; a pod set up by one and torn down by the other leaves no pod rule behind; a pod the
// reference set up (no attachment record) survives our GC. Also prints how
// many netfilter processes each side execs per ADD and DEL.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { binDir } from '../support/cni';
import { cniRules, countExecs, filterTable, FirewallLab, OUR_FIREWALL, REFERENCE_FIREWALL } from './firewall-harness';

jest.setTimeout(120000);

const maybe = existsSync(REFERENCE_FIREWALL) ? describe : describe.skip;

const labs: FirewallLab[] = [];
afterEach(async () => {
  for (const l of labs.splice(0)) await l.dispose();
});

async function lab(): Promise<FirewallLab> {
  const l = await FirewallLab.create();
  labs.push(l);
  return l;
}

const tables = async (l: FirewallLab) => ({ v4: await filterTable(l.host, 4), v6: await filterTable(l.host, 6) });

maybe('firewall against the reference', () => {
  test.each([
    ['defaults', {}],
    ['iptablesAdminChainName', { iptablesAdminChainName: 'MY-ADMIN' }],
    ['ingressPolicy same-bridge', { ingressPolicy: 'same-bridge' }],
  ])('%s: the same filter tables after ADD, each prints its prevResult; each CHECK passes on the other\'s rules', async (_, keys) => {
    const ours = await lab();
    const ref = await lab();
    expect(ref.prev.get(ref.pods[0]!).ips).toEqual(ours.prev.get(ours.pods[0]!).ips); // same addresses, so the rules can match
    const conf = (l: FirewallLab) => l.conf({ backend: 'iptables', ...keys });
    const a = await ours.call('ADD', conf(ours));
    const b = await ref.call('ADD', conf(ref), { binary: REFERENCE_FIREWALL });
    expect(b.exitCode).toBe(0);
    expect(a.exitCode).toBe(0);
    // Both print prevResult back (the reference adds an empty "dns": {}, libcni 1.1 style).
    expect(a.json).toEqual(ours.prev.get(ours.pods[0]!));
    const { dns, ...refOut } = b.json;
    expect(dns ?? {}).toEqual({});
    expect(refOut).toEqual(ref.prev.get(ref.pods[0]!));
    // Upstream since 1.2 comments the rules both policies share "(ingressPolicy: same-bridge|isolated)";
    // Debian's 1.1.1 (no "isolated" yet) "(ingressPolicy: same-bridge)". We write upstream's.
    const old = (t: string[]) => t.map((l) => l.replace('(ingressPolicy: same-bridge|isolated)', '(ingressPolicy: same-bridge)'));
    const o = await tables(ours);
    expect({ v4: old(o.v4), v6: old(o.v6) }).toEqual(await tables(ref));
    expect((await ours.call('CHECK', conf(ours), { binary: REFERENCE_FIREWALL })).exitCode).toBe(0);
    expect((await ref.call('CHECK', conf(ref))).exitCode).toBe(0);
  });

  test.each([
    ['ours', 'the reference'],
    ['the reference', 'ours'],
  ])('ADD by %s, DEL by %s: no pod rule is left (chains and jumps stay, as with either alone)', async (adder, deleter) => {
    const l = await lab();
    const bin = (who: string) => (who === 'ours' ? OUR_FIREWALL() : REFERENCE_FIREWALL);
    const conf = l.conf({ backend: 'iptables', ingressPolicy: 'same-bridge' });
    expect((await l.call('ADD', conf, { binary: bin(adder) })).exitCode).toBe(0);
    const podRules = (t: string[]) => t.filter((l) => /^-A CNI-FORWARD -[ds] /.test(l));
    expect(podRules(await filterTable(l.host, 4))).toHaveLength(2);
    const del = await l.call('DEL', conf, { binary: bin(deleter) });
    expect(del.exitCode).toBe(0);
    for (const fam of [4, 6] as const) {
      const t = await filterTable(l.host, fam);
      expect(podRules(t)).toEqual([]);
      expect(cniRules(t)).toContain('-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
    }
  });

  test('a pod the reference ADDed has no attachment record: our GC leaves its rules and logs them, our DEL removes them from prevResult', async () => {
    const l = await lab();
    const conf = l.conf({ backend: 'iptables' });
    expect((await l.call('ADD', conf, { binary: REFERENCE_FIREWALL })).exitCode).toBe(0);
    const podRules = (t: string[]) => t.filter((x) => /^-A CNI-FORWARD -[ds] /.test(x));
    const before = { v4: podRules(await filterTable(l.host, 4)), v6: podRules(await filterTable(l.host, 6)) };
    expect(before.v4).toHaveLength(2);
    expect(existsSync(join(l.dataDir, 'brnet'))).toBe(false);
    const gc = await l.call('GC', l.gcConf([]), { env: { CNIKIT_LOG: 'info' } });
    expect(gc.exitCode).toBe(0);
    const ip4 = l.prev.get(l.pods[0]!).ips[0].address.split('/')[0];
    expect(gc.stderr).toMatch(new RegExp(`CNI-FORWARD rules for [^\\n]*${ip4.replace(/\./g, '\\.')}[^\\n]* have no attachment record`));
    expect({ v4: podRules(await filterTable(l.host, 4)), v6: podRules(await filterTable(l.host, 6)) }).toEqual(before);
    expect((await l.call('DEL', conf)).exitCode).toBe(0);
    for (const fam of [4, 6] as const) expect(podRules(await filterTable(l.host, fam))).toEqual([]);
  });

  test('same-bridge after the reference set up another bridge: its shared isolation rules are reused, not duplicated', async () => {
    const l = await lab();
    const other = await l.addPod('cni1', ['198.18.1.0/24', 'fd00:19::/64'], 'other');
    expect((await l.call('ADD', l.conf({ backend: 'iptables', ingressPolicy: 'same-bridge' }, other, 'other'), { forPod: other, binary: REFERENCE_FIREWALL })).exitCode).toBe(0);
    expect((await l.call('ADD', l.conf({ backend: 'iptables', ingressPolicy: 'same-bridge' }))).exitCode).toBe(0);
    const t = await filterTable(l.host, 4);
    expect(t.filter((x) => x.startsWith('-A FORWARD ') && x.endsWith('-j CNI-ISOLATION-STAGE-1'))).toHaveLength(1);
    expect(t.filter((x) => x.endsWith('-j RETURN'))).toHaveLength(2); // one per stage chain
    expect(t.filter((x) => x.startsWith('-A CNI-ISOLATION-STAGE-2 -o '))).toEqual([
      '-A CNI-ISOLATION-STAGE-2 -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j DROP',
      '-A CNI-ISOLATION-STAGE-2 -o cni1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j DROP',
    ]);
  });

  test('netfilter processes per ADD and DEL: ours at most one save and one restore per family, fewer than the reference', async () => {
    const counts: Record<string, Record<string, number>> = {};
    for (const [who, binary] of [['ours', OUR_FIREWALL()], ['reference', REFERENCE_FIREWALL]] as const) {
      const l = await lab();
      const pod = l.pods[0]!;
      const env = { CNI_CONTAINERID: l.id(pod), CNI_NETNS: `/var/run/netns/${pod}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir(), PATH: process.env.PATH };
      const conf = l.conf({ backend: 'iptables', ingressPolicy: 'same-bridge' });
      for (const verb of ['ADD', 'DEL']) {
        const c = await countExecs(l.host, binary, verb, conf, env);
        expect(c.result.exitCode).toBe(0);
        counts[`${who} ${verb}`] = { v4: c.v4, v6: c.v6 };
      }
    }
    console.log(`netfilter execs per verb: ${JSON.stringify(counts)}`);
    for (const verb of ['ADD', 'DEL']) {
      const o = counts[`ours ${verb}`]!;
      const r = counts[`reference ${verb}`]!;
      expect(o.v4).toBeLessThanOrEqual(2);
      expect(o.v6).toBeLessThanOrEqual(2);
      expect(o.v4 + o.v6).toBeLessThan(r.v4 + r.v6);
    }
  });
});
