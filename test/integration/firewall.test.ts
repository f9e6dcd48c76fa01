// firewall chained after our bridge, through the built binary in a scratch host netns: the filter
// tables (iptables backend) and the nftables ruleset (nftables backend) after ADD for every key,
// CHECK pass / tamper / fail, DEL twice, without a netns and without prevResult (attachment
// records), GC, the records' modes and symlink safety, STATUS, a failed ADD leaving
// nothing, traffic through a FORWARD policy DROP, same-bridge isolation between two bridges, and
// the number of netfilter processes each verb execs.
import { execa } from 'execa';
import { chmodSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir } from '../support/cni';
import { iptablesIsNft } from '../support/exec-count';
import { ioUringUsable, netfilterSocketsAfterRelease } from '../support/netlink-sockets';
import { canReach, cniRules, countExecs, filterTable, FirewallLab, nftRuleset, OUR_FIREWALL, runIn, setElements, withoutHandles } from './firewall-harness';

jest.setTimeout(120000);

let f: FirewallLab | undefined;
afterEach(async () => {
  await f?.dispose();
  f = undefined;
});

const inHost = (cmd: string) => execa('ip', ['netns', 'exec', f!.host, 'sh', '-c', cmd]);
const podIP = (pod: string, family: 4 | 6): string =>
  f!.prev.get(pod).ips.map((i: { address: string }) => i.address.split('/')[0]).find((a: string) => a.includes(':') === (family === 6));

/** The attachment records of network `net` (sorted; the `.lock` file is not one). */
const records = (net: string): string[] => readdirSync(join(f!.dataDir, net)).filter((n) => !n.startsWith('.')).sort();

const CHAINS = [':CNI-ADMIN -', ':CNI-FORWARD -'];
const podLines = (ip: string, len: number) => [
  `-A CNI-FORWARD -d ${ip}/${len} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  `-A CNI-FORWARD -s ${ip}/${len} -j ACCEPT`,
];
const jumps = (admin = 'CNI-ADMIN') => [
  '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
  `-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j ${admin}`,
];

/** A directory to put first in the plugin's PATH with `tool` replaced by a script failing with `stderr`. */
function failingTool(tool: string, stderr: string): { path: string; dispose: () => void } {
  const d = mkdtempSync(join(tmpdir(), 'fw-tools-'));
  writeFileSync(join(d, tool), `#!/bin/sh\necho '${stderr}' >&2\nexit 1\n`);
  chmodSync(join(d, tool), 0o755);
  return { path: `${d}:${process.env.PATH}`, dispose: () => rmSync(d, { recursive: true, force: true }) };
}

/**
 * A PATH whose iptables-restore waits until release() before running the real one, so a verb can be
 * held between reading the records and its restore; waiting() resolves once it is held there.
 */
async function gatedRestore(): Promise<{ path: string; waiting: () => Promise<void>; release: () => void; dispose: () => void }> {
  const d = mkdtempSync(join(tmpdir(), 'fw-gate-'));
  const real = (await execa('sh', ['-c', 'command -v iptables-restore'])).stdout.trim();
  writeFileSync(join(d, 'iptables-restore'), `#!/bin/sh\ntouch ${d}/waiting\nwhile [ ! -e ${d}/go ]; do sleep 0.02; done\nexec ${real} "$@"\n`);
  chmodSync(join(d, 'iptables-restore'), 0o755);
  const release = () => writeFileSync(join(d, 'go'), '');
  return {
    path: `${d}:${process.env.PATH}`,
    waiting: async () => {
      while (!readdirSync(d).includes('waiting')) await new Promise((r) => setTimeout(r, 20));
    },
    release,
    dispose: () => {
      release();
      rmSync(d, { recursive: true, force: true });
    },
  };
}

/** Starts `call` and waits up to 1 s for it to finish; true when it did (it was not held by a lock). */
async function finishesWithin1s(call: Promise<unknown>): Promise<boolean> {
  let done = false;
  void call.finally(() => (done = true)).catch(() => {});
  for (let i = 0; i < 50 && !done; i++) await new Promise((r) => setTimeout(r, 20));
  return done;
}

describe('firewall iptables backend (default)', () => {
  test('ADD writes the reference chains, jumps and per-pod rules in both families and returns prevResult unchanged', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    const r = await f.call('ADD', f.conf());
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual(f.prev.get(pod));
    const v4 = await filterTable(f.host, 4);
    expect(cniRules(v4)).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 4), 32)]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 6), 128)]);
    // ADD again changes nothing (AppendUnique)
    expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
    expect(await filterTable(f.host, 4)).toEqual(v4);
  });

  test('iptablesAdminChainName names the admin chain; ingressPolicy same-bridge adds the isolation chains before CNI-FORWARD', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    expect((await f.call('ADD', f.conf({ iptablesAdminChainName: 'MY-ADMIN', ingressPolicy: 'same-bridge' }))).exitCode).toBe(0);
    for (const [fam, len] of [[4, 32], [6, 128]] as const) {
      expect(cniRules(await filterTable(f.host, fam))).toEqual([
        ':CNI-FORWARD -',
        ':CNI-ISOLATION-STAGE-1 -',
        ':CNI-ISOLATION-STAGE-2 -',
        '-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j CNI-ISOLATION-STAGE-1',
        ...jumps('MY-ADMIN'),
        ...podLines(podIP(pod, fam), len),
        '-A CNI-ISOLATION-STAGE-1 -i cni0 ! -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2',
        '-A CNI-ISOLATION-STAGE-1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j RETURN',
        '-A CNI-ISOLATION-STAGE-2 -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j DROP',
        '-A CNI-ISOLATION-STAGE-2 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j RETURN',
      ]);
      expect(await filterTable(f.host, fam)).toContain(':MY-ADMIN -');
    }
  });

  test('CHECK passes after ADD, fails naming the missing rule after tampering, and without prevResult is code 7', async () => {
    f = await FirewallLab.create();
    const ip4 = podIP(f.pods[0]!, 4);
    expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
    const ok = await f.call('CHECK', f.conf());
    expect(ok.stderr).toBe('');
    expect(ok.exitCode).toBe(0);
    await inHost(`iptables -D CNI-FORWARD -s ${ip4}/32 -j ACCEPT`);
    const bad = await f.call('CHECK', f.conf());
    expect(bad.exitCode).not.toBe(0);
    expect(bad.json.msg).toBe(`expected rule [-s ${ip4}/32 -j ACCEPT] not found`);
    await inHost('iptables -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
    expect((await f.call('CHECK', f.conf())).json.msg).toBe('expected FORWARD rule [-m comment --comment CNI firewall plugin rules -j CNI-FORWARD] not found');
    const { prevResult: _, ...noPrev } = f.conf();
    const r = await f.call('CHECK', noPrev);
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('"prevResult"');
  });

  test('DEL removes exactly the pod rules (another pod keeps its rules), twice, and without a netns', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    expect((await f.call('ADD', f.conf({}, a), { forPod: a })).exitCode).toBe(0);
    expect((await f.call('ADD', f.conf({}, b), { forPod: b })).exitCode).toBe(0);
    const del = await f.call('DEL', f.conf({}, a), { forPod: a, pod: '' }); // no CNI_NETNS
    expect(del.stderr).toBe('');
    expect(del.exitCode).toBe(0);
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 4), 32)]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 6), 128)]);
    expect((await f.call('DEL', f.conf({}, a), { forPod: a })).exitCode).toBe(0);
    await execa('ip', ['netns', 'del', b]); // the pod's netns is gone: DEL still works from prevResult
    expect((await f.call('DEL', f.conf({}, b), { forPod: b })).exitCode).toBe(0);
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps()]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps()]);
  });

  test('DEL without prevResult (and without a netns) removes exactly that pod\'s rules, found by its attachment record, and the record; DEL twice succeeds', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    for (const p of [a, b]) expect((await f.call('ADD', f.conf({}, p), { forPod: p })).exitCode).toBe(0);
    expect(records('brnet')).toEqual([`${f.id(a)}:eth0`, `${f.id(b)}:eth0`].sort());
    const { prevResult: _, ...noPrev } = f.conf({}, a);
    const del = await f.call('DEL', noPrev, { forPod: a, pod: '' });
    expect(del.stderr).toBe('');
    expect(del.exitCode).toBe(0);
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 4), 32)]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 6), 128)]);
    expect(records('brnet')).toEqual([`${f.id(b)}:eth0`]);
    const again = await f.call('DEL', noPrev, { forPod: a, pod: '' });
    expect(`${again.exitCode} ${again.stderr}`).toBe('0 ');
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 4), 32)]);
  });

  test('DEL when the address changed since ADD: the recorded address and the prevResult one both lose their rules', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
    const prev = f.prev.get(pod);
    const moved = { ...prev, ips: prev.ips.map((i: { address: string }) => ({ ...i, address: i.address.includes(':') ? 'fd00:18::99/64' : '198.18.0.99/24' })) };
    // The new address has pod rules too (as a reference ADD with it would leave), so DEL must remove both.
    for (const l of podLines('198.18.0.99', 32)) await inHost(`iptables ${l}`);
    for (const l of podLines('fd00:18::99', 128)) await inHost(`ip6tables ${l}`);
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 4), 32), ...podLines('198.18.0.99', 32)]);
    const del = await f.call('DEL', { ...f.conf(), prevResult: moved });
    expect(`${del.exitCode} ${del.stderr}`).toBe('0 ');
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps()]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps()]);
  });

  test('GC removes the rules and records of attachments not in cni.dev/valid-attachments, keeps the valid ones, other networks\' and an address a valid record names, in one save and at most one restore per family (none with iptables-nft)', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    const c = await f.addPod('cni1', ['198.18.1.0/24'], 'other');
    for (const p of [a, b]) expect((await f.call('ADD', f.conf({}, p), { forPod: p })).exitCode).toBe(0);
    expect((await f.call('ADD', f.conf({}, c, 'other'), { forPod: c })).exitCode).toBe(0);
    // A stale record naming b's address (b got it after an old pod leaked it): b's rules must stay.
    writeFileSync(join(f.dataDir, 'brnet', 'ctr-old:eth0'), JSON.stringify({ containerID: 'ctr-old', ifName: 'eth0', ips: [podIP(b, 4)] }), { mode: 0o600 });
    const env = { CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: '', CNI_PATH: binDir(), PATH: process.env.PATH };
    const gc = await countExecs(f.host, OUR_FIREWALL(), 'GC', f.gcConf([b]), env);
    expect(gc.result.stderr).toBe('');
    expect(gc.result.exitCode).toBe(0);
    // iptables-nft: read and deleted in-process; iptables-legacy: one save and one restore per family.
    const n = iptablesIsNft() ? 0 : 1;
    expect({ v4: gc.v4, v6: gc.v6, restores: gc.restores }).toEqual({ v4: 2 * n, v6: 2 * n, restores: { v4: n, v6: n } });
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 4), 32), ...podLines(podIP(c, 4), 32)]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 6), 128)]);
    expect(records('brnet')).toEqual([`${f.id(b)}:eth0`]);
    expect(records('other')).toEqual([`${f.id(c)}:eth0`]);
    // Nothing stale left: GC reads and changes nothing.
    const idle = await countExecs(f.host, OUR_FIREWALL(), 'GC', f.gcConf([b]), env);
    expect({ exit: idle.result.exitCode, restores: idle.restores }).toEqual({ exit: 0, restores: { v4: 0, v6: 0 } });
  });

  test('attachment records are 0600 files in 0700 directories; a symlink planted for the network directory or a record is replaced, its target untouched', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    const decoy = mkdtempSync(join(tmpdir(), 'fw-decoy-'));
    try {
      writeFileSync(join(decoy, 'target'), 'keep');
      symlinkSync(decoy, join(f.dataDir, 'brnet'));
      expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
      const dir = lstatSync(join(f.dataDir, 'brnet'));
      expect(dir.isDirectory()).toBe(true);
      expect(dir.mode & 0o777).toBe(0o700);
      expect(readdirSync(decoy)).toEqual(['target']);
      const rec = join(f.dataDir, 'brnet', `${f.id(pod)}:eth0`);
      expect(lstatSync(rec).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(rec, 'utf8'))).toEqual({ containerID: f.id(pod), ifName: 'eth0', ips: [podIP(pod, 4), podIP(pod, 6)] });
      rmSync(rec);
      symlinkSync(join(decoy, 'target'), rec);
      expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
      expect(lstatSync(rec).isFile()).toBe(true);
      expect(readFileSync(join(decoy, 'target'), 'utf8')).toBe('keep');
    } finally {
      rmSync(decoy, { recursive: true, force: true });
    }
  });

  test('ADD waits while another process holds the network\'s .lock, GC and DEL while it holds the dataDir\'s .lock; each succeeds after', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    expect((await f.call('ADD', f.conf({}, a), { forPod: a })).exitCode).toBe(0);
    let lock = join(f.dataDir, 'brnet', '.lock');
    const holders: Array<ReturnType<typeof execa>> = [];
    /** Another process takes `lock` for 1.5 s; resolves once it holds it. */
    const hold = async () => {
      const h = execa('flock', ['-x', lock, 'sleep', '1.5']);
      h.catch(() => {}); // killed in finally when the test fails early
      holders.push(h);
      while ((await execa('flock', ['-n', lock, 'true'], { reject: false })).exitCode === 0) await new Promise((r) => setTimeout(r, 20));
    };
    try {
      await hold();
      let t0 = Date.now();
      const add = await f.call('ADD', f.conf({}, b), { forPod: b });
      expect(`${add.exitCode} ${add.stderr}`).toBe('0 ');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      await holders[0];
      lock = join(f.dataDir, '.lock');
      await hold();
      t0 = Date.now();
      expect((await f.call('GC', f.gcConf([a, b]))).exitCode).toBe(0);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      await holders[1];
      await hold();
      t0 = Date.now();
      expect((await f.call('DEL', f.conf({}, a), { forPod: a })).exitCode).toBe(0);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    } finally {
      for (const h of holders) h.kill();
    }
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(b, 4), 32)]);
  });

  test('a DEL of a stale attachment racing an ADD that reuses its address: the ADD waits for the DEL, and the new attachment keeps its rules', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
    // DEL without prevResult: the address is the record's alone, so DEL checks no other record names
    // it. Its iptables-restore is held until the test lets it go: the ADD runs in between.
    const gate = await gatedRestore();
    try {
      const { prevResult: _, ...noPrev } = f.conf();
      const del = f.call('DEL', noPrev, { pod: '', path: gate.path });
      await gate.waiting();
      // The same address for a new attachment: without a lock held by DEL, it finds the rules there,
      // adds nothing and finishes before DEL's restore removes them.
      const add = f.call('ADD', f.conf(), { env: { CNI_CONTAINERID: 'ctr-new' } });
      expect(await finishesWithin1s(add)).toBe(false); // it waits for DEL's lock
      gate.release();
      const [d, a] = await Promise.all([del, add]);
      expect(`${d.exitCode} ${d.stderr}`).toBe('0 ');
      expect(`${a.exitCode} ${a.stderr}`).toBe('0 ');
    } finally {
      gate.dispose();
    }
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 4), 32)]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 6), 128)]);
    expect(records('brnet')).toEqual(['ctr-new:eth0']);
  });

  test('a GC of one network racing an ADD in another network that reuses a stale address: the ADD waits for the GC, and the new attachment keeps its rules', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    // A stale attachment of network "other" with the pod's address; no record of brnet names it yet.
    expect((await f.call('ADD', f.conf({}, pod, 'other'))).exitCode).toBe(0);
    const gate = await gatedRestore();
    try {
      const gc = f.call('GC', f.gcConf([], {}, 'other'), { pod: '', path: gate.path });
      await gate.waiting();
      // brnet's ADD takes brnet's lock, not other's: only the dataDir's lock keeps it out.
      const add = f.call('ADD', f.conf(), { env: { CNI_CONTAINERID: 'ctr-new' } });
      expect(await finishesWithin1s(add)).toBe(false);
      gate.release();
      const [g, a] = await Promise.all([gc, add]);
      expect(`${g.exitCode} ${g.stderr}`).toBe('0 ');
      expect(`${a.exitCode} ${a.stderr}`).toBe('0 ');
    } finally {
      gate.dispose();
    }
    expect(cniRules(await filterTable(f.host, 4))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 4), 32)]);
    expect(cniRules(await filterTable(f.host, 6))).toEqual([...CHAINS, ...jumps(), ...podLines(podIP(pod, 6), 128)]);
    expect(records('other')).toEqual([]);
    expect(records('brnet')).toEqual(['ctr-new:eth0']);
  });

  test('dataDir that is not absolute is code 7 naming it, with no rule written', async () => {
    f = await FirewallLab.create();
    const r = await f.call('ADD', f.conf({ dataDir: 'var/lib/fw' }));
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('"dataDir" = "var/lib/fw"');
    expect(cniRules(await filterTable(f.host, 4))).toEqual([]);
  });

  test('a failed ADD leaves the tables as they were: IPv6 restore fails, what IPv4 added (rules, jumps, isolation, new chains) is taken back, chains that were there stay', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    const tool = failingTool('ip6tables-restore', 'ip6tables-restore: injected failure');
    const iso = { ingressPolicy: 'same-bridge' };
    try {
      // Fresh host: the IPv4 transaction created every chain, jump and isolation rule.
      let before = [await filterTable(f.host, 4), await filterTable(f.host, 6)];
      let r = await f.call('ADD', f.conf(iso, a), { forPod: a, path: tool.path });
      expect(r.exitCode).not.toBe(0);
      expect(r.json.msg).toContain('injected failure');
      expect([await filterTable(f.host, 4), await filterTable(f.host, 6)]).toEqual(before);
      expect(records('brnet')).toEqual([]);
      // Chains, jumps and isolation already there (a's ADD): only b's pod rules were added, only they go.
      expect((await f.call('ADD', f.conf(iso, a), { forPod: a })).exitCode).toBe(0);
      before = [await filterTable(f.host, 4), await filterTable(f.host, 6)];
      r = await f.call('ADD', f.conf(iso, b), { forPod: b, path: tool.path });
      expect(r.exitCode).not.toBe(0);
      expect([await filterTable(f.host, 4), await filterTable(f.host, 6)]).toEqual(before);
      expect(records('brnet')).toEqual([`${f.id(a)}:eth0`]);
    } finally {
      tool.dispose();
    }
  });

  test('STATUS succeeds when iptables-save works and is code 50 naming the backend when it fails', async () => {
    f = await FirewallLab.create();
    const conf = { cniVersion: '1.1.0', name: 'brnet', type: 'firewall' };
    expect((await f.call('STATUS', conf)).exitCode).toBe(0);
    const tool = failingTool('iptables-save', 'iptables-save: cannot open table');
    try {
      const r = await f.call('STATUS', conf, { path: tool.path });
      expect(r.json.code).toBe(50);
      expect(r.json.msg).toContain('firewall backend "iptables" is not usable');
    } finally {
      tool.dispose();
    }
  });

  test('bad config: backend firewalld and an unknown ingressPolicy are code 7 naming field and value, with nothing written', async () => {
    f = await FirewallLab.create();
    const r = await f.call('ADD', f.conf({ backend: 'firewalld' }));
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('"backend" = "firewalld"');
    const p = await f.call('ADD', f.conf({ ingressPolicy: 'closed' }));
    expect(p.json.code).toBe(7);
    expect(p.json.msg).toContain('"ingressPolicy" = "closed"');
    expect(cniRules(await filterTable(f.host, 4))).toEqual([]);
  });

  test('with FORWARD policy DROP a pod reaches the outside netns only while firewall is chained', async () => {
    f = await FirewallLab.create();
    const out = await f.outside();
    const pod = f.pods[0]!;
    await inHost('iptables -P FORWARD DROP && ip6tables -P FORWARD DROP');
    expect(await canReach(pod, out.v4)).toBe(false);
    expect(await canReach(pod, out.v6)).toBe(false);
    expect((await f.call('ADD', f.conf())).exitCode).toBe(0);
    expect(await canReach(pod, out.v4)).toBe(true);
    expect(await canReach(pod, out.v6)).toBe(true);
    expect((await f.call('DEL', f.conf())).exitCode).toBe(0);
    expect(await canReach(pod, out.v4)).toBe(false);
  });

  test('concurrent ADDs on a fresh host: every pod gets its rules, the chains and jumps exist once (a lost chain race is retried)', async () => {
    f = await FirewallLab.create(6);
    const pods = f.pods;
    const rs = await Promise.all(pods.map((p) => f!.call('ADD', f!.conf({ ingressPolicy: 'same-bridge' }, p), { forPod: p })));
    for (const r of rs) expect(`${r.exitCode} ${r.stderr}`).toBe('0 ');
    for (const [fam, len] of [[4, 32], [6, 128]] as const) {
      const t = await filterTable(f.host, fam);
      for (const p of pods) for (const l of podLines(podIP(p, fam), len)) expect(t.filter((x) => x === l)).toHaveLength(1);
      expect(t.filter((x) => x.startsWith('-A FORWARD '))).toHaveLength(2); // to stage 1 and to CNI-FORWARD
      expect(t.filter((x) => x.startsWith('-A CNI-FORWARD -m comment'))).toHaveLength(1);
      expect(t.filter((x) => x.startsWith('-A CNI-ISOLATION-STAGE-2 '))).toHaveLength(2);
    }
  });

  test('each verb execs at most one iptables-restore and one iptables-save per family; with iptables-nft only ADD execs, its one restore per family, and DEL deletes both families\' rules in one nfnetlink batch (the reference: one exec per rule)', async () => {
    const lab = (f = await FirewallLab.create());
    const env = { CNI_CONTAINERID: f.id(f.pods[0]!), CNI_NETNS: `/var/run/netns/${f.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir(), PATH: process.env.PATH };
    const conf = f.conf({ ingressPolicy: 'same-bridge' });
    const nft = iptablesIsNft();
    for (const verb of ['ADD', 'CHECK', 'DEL']) {
      const c = await countExecs(f.host, OUR_FIREWALL(), verb, conf, env);
      expect(c.result.exitCode).toBe(0);
      expect(c.restores.v4).toBeLessThanOrEqual(1);
      expect(c.restores.v6).toBeLessThanOrEqual(1);
      expect(c.v4).toBeLessThanOrEqual(nft ? c.restores.v4 : 2); // one iptables-save (none with iptables-nft), one iptables-restore
      expect(c.v6).toBeLessThanOrEqual(nft ? c.restores.v6 : 2);
      expect(c.nft).toBe(0);
      // The change is made, in one transaction each (DEL with iptables-nft: over netlink, no process).
      if (verb === 'ADD' || (verb === 'DEL' && !nft)) expect(c.restores).toEqual({ v4: 1, v6: 1 });
      if (verb === 'DEL' && nft) expect({ v4: c.v4, v6: c.v6, batches: c.batches }).toEqual({ v4: 0, v6: 0, batches: 1 }); // both families in one nf_tables commit
    }
    expect(cniRules(await filterTable(lab.host, 4)).filter((l) => l.includes(podIP(lab.pods[0]!, 4)))).toEqual([]);
  });
  test('DEL with iptables-nft hands its nfnetlink socket to the kernel through an io_uring instead of releasing it in its own exit, and no such socket is left in the host netns afterwards', async () => {
    if (!iptablesIsNft() || !ioUringUsable()) return; // iptables-legacy: DEL execs the tools; no usable io_uring: closed in place
    const lab = (f = await FirewallLab.create());
    const env = { CNI_CONTAINERID: f.id(f.pods[0]!), CNI_NETNS: `/var/run/netns/${f.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir(), PATH: process.env.PATH };
    const conf = f.conf();
    expect((await runIn(lab.host, OUR_FIREWALL(), 'ADD', conf, env)).exitCode).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'fw-release-'));
    try {
      const trace = join(dir, 'trace');
      const del = await runIn(lab.host, OUR_FIREWALL(), 'DEL', conf, env, ['strace', '-f', '-qq', '-e', 'trace=socket,io_uring_register', '-o', trace]);
      expect(del.exitCode).toBe(0);
      const lines = readFileSync(trace, 'utf8').split('\n');
      const sockets = lines.map((l) => /socket\(AF_NETLINK, [^)]*NETLINK_NETFILTER\) = (\d+)/.exec(l)?.[1]).filter((fd): fd is string => !!fd);
      const handedOff = lines.map((l) => /io_uring_register\(\d+, IORING_REGISTER_FILES, \[(\d+)\], 1\) = 0/.exec(l)?.[1]).filter((fd): fd is string => !!fd);
      expect(sockets.length).toBeGreaterThan(0);
      expect([...handedOff].sort()).toEqual([...sockets].sort()); // every nfnetlink socket it opened, and nothing else
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(cniRules(await filterTable(lab.host, 4)).filter((l) => l.includes(podIP(lab.pods[0]!, 4)))).toEqual([]);
    expect(await netfilterSocketsAfterRelease(lab.host)).toEqual([]);
  });
  test('foreign rules the in-process reader cannot print (-m statistic) in FORWARD and CNI-FORWARD: with iptables-nft ADD and DEL, which decode only the rules they look for there, read in-process, while CHECK, which reads the whole table, lists it with iptables-save; each does exactly its change, the foreign rules stay', async () => {
    const lab = (f = await FirewallLab.create());
    const foreign = '-A FORWARD -m statistic --mode random --probability 0.50000000000 -j ACCEPT';
    await inHost(`iptables ${foreign}`);
    // One in CNI-FORWARD too, which holds the pod rules: ADD and DEL decode only the rules matching the pod's address (and the admin jump).
    const inPriv = '-A CNI-FORWARD -m statistic --mode random --probability 0.50000000000 -j RETURN';
    await inHost(`iptables -N CNI-FORWARD`);
    await inHost(`iptables ${inPriv}`);
    const env = { CNI_CONTAINERID: f.id(f.pods[0]!), CNI_NETNS: `/var/run/netns/${f.pods[0]}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir(), PATH: process.env.PATH };
    const conf = f.conf();
    const nft = iptablesIsNft();
    const add = await countExecs(f.host, OUR_FIREWALL(), 'ADD', conf, env);
    expect(add.result.exitCode).toBe(0);
    // A listing per family with iptables-legacy only; the write (FORWARD's `-I 1`) is a restore per family either way.
    expect(add.tools.filter((t) => t.endsWith('-save'))).toEqual(nft ? [] : ['iptables-save', 'ip6tables-save']);
    expect(add.restores).toEqual({ v4: 1, v6: 1 });
    const check = await countExecs(f.host, OUR_FIREWALL(), 'CHECK', conf, env);
    expect(check.result.exitCode).toBe(0);
    expect(check.tools.filter((t) => t === 'iptables-save')).toHaveLength(1); // the rules are really undecodable
    expect(cniRules(await filterTable(lab.host, 4))).toEqual([...CHAINS, ...jumps(), inPriv, ...podLines(podIP(lab.pods[0]!, 4), 32)]);
    const del = await countExecs(f.host, OUR_FIREWALL(), 'DEL', conf, env);
    expect(del.result.exitCode).toBe(0);
    if (nft) expect(del.tools).toEqual([]); // CNI-FORWARD read and its rules deleted in-process
    else {
      expect(del.tools.filter((t) => t === 'iptables-save')).toHaveLength(1);
      expect(del.restores.v4).toBe(1);
      expect(del.v6).toBe(2);
    }
    expect(cniRules(await filterTable(lab.host, 4))).toEqual([...CHAINS, ...jumps(), inPriv]);
    expect(cniRules(await filterTable(lab.host, 6))).toEqual([...CHAINS, ...jumps()]);
    expect((await filterTable(lab.host, 4)).filter((l) => l.includes('statistic'))).toEqual([foreign, inPriv]);
  });
});

describe('firewall nftables backend', () => {
  const T = 'cni_plugins_firewall';

  test('ADD writes table inet cni_plugins_firewall with the pod addresses tagged by attachment, in one nft exec; CHECK passes, tamper fails', async () => {
    f = await FirewallLab.create();
    const pod = f.pods[0]!;
    const env = { CNI_CONTAINERID: f.id(pod), CNI_NETNS: `/var/run/netns/${pod}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir(), PATH: process.env.PATH };
    const conf = f.conf({ backend: 'nftables', ingressPolicy: 'isolated' });
    const c = await countExecs(f.host, OUR_FIREWALL(), 'ADD', conf, env);
    expect(c.result.exitCode).toBe(0);
    expect(c.result.json).toEqual(f.prev.get(pod));
    expect({ nft: c.nft, v4: c.v4, v6: c.v6 }).toEqual({ nft: 1, v4: 0, v6: 0 });
    const rs = await nftRuleset(f.host);
    const comment = `brnet/${f.id(pod)}/eth0`;
    expect(setElements(rs, 'pods4')).toEqual([{ val: podIP(pod, 4), comment }]);
    expect(setElements(rs, 'pods6')).toEqual([{ val: podIP(pod, 6), comment }]);
    expect(setElements(rs, 'bridges')).toEqual([{ val: 'cni0' }]);
    expect(setElements(rs, 'isolated_bridges')).toEqual([{ val: 'cni0' }]);
    const fwd = rs.find((i) => i.chain?.table === T && i.chain.name === 'forward').chain;
    expect(fwd).toMatchObject({ family: 'inet', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' });
    expect(rs.filter((i) => i.rule?.table === T && i.rule.chain === 'forward')).toHaveLength(7);
    expect(cniRules(await filterTable(f.host, 4))).toEqual([]); // nothing in iptables

    expect((await f.call('ADD', conf)).exitCode).toBe(0); // again: same state
    expect(withoutHandles(await nftRuleset(f.host))).toEqual(withoutHandles(rs));

    expect((await f.call('CHECK', conf)).exitCode).toBe(0);
    await inHost(`nft delete element inet ${T} pods6 { ${podIP(pod, 6)} }`);
    const bad = await f.call('CHECK', conf);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.json.msg).toContain(`expected element ${podIP(pod, 6)} in set pods6`);
  });

  test('DEL finds the pod by attachment comment: without prevResult and without netns, twice; another pod stays', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    expect((await f.call('ADD', f.conf({ backend: 'nftables' }, a), { forPod: a })).exitCode).toBe(0);
    expect((await f.call('ADD', f.conf({ backend: 'nftables' }, b), { forPod: b })).exitCode).toBe(0);
    const { prevResult: _, ...noPrev } = f.conf({ backend: 'nftables' }, a);
    const env = { CNI_CONTAINERID: f.id(a), CNI_NETNS: '', CNI_IFNAME: 'eth0', CNI_PATH: binDir(), PATH: process.env.PATH };
    const c = await countExecs(f.host, OUR_FIREWALL(), 'DEL', noPrev, env);
    expect(c.result.stderr).toBe('');
    expect(c.result.exitCode).toBe(0);
    expect(c.nft).toBe(0); // read and deleted over netlink in-process
    let rs = await nftRuleset(f.host);
    expect(setElements(rs, 'pods4')).toEqual([{ val: podIP(b, 4), comment: `brnet/${f.id(b)}/eth0` }]);
    expect(setElements(rs, 'pods6')).toEqual([{ val: podIP(b, 6), comment: `brnet/${f.id(b)}/eth0` }]);
    expect((await f.call('DEL', noPrev, { forPod: a, pod: '' })).exitCode).toBe(0);
    expect((await f.call('DEL', f.conf({ backend: 'nftables' }, b), { forPod: b })).exitCode).toBe(0);
    rs = await nftRuleset(f.host);
    expect(setElements(rs, 'pods4')).toEqual([]);
    expect(setElements(rs, 'pods6')).toEqual([]);
  });

  test('GC removes the elements of attachments not in cni.dev/valid-attachments, of this network only', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    const c = await f.addPod('cni1', ['198.18.1.0/24'], 'other');
    for (const p of [a, b]) expect((await f.call('ADD', f.conf({ backend: 'nftables' }, p), { forPod: p })).exitCode).toBe(0);
    expect((await f.call('ADD', f.conf({ backend: 'nftables' }, c, 'other'), { forPod: c })).exitCode).toBe(0);
    const gc = await f.call('GC', { cniVersion: '1.1.0', name: 'brnet', type: 'firewall', backend: 'nftables', 'cni.dev/valid-attachments': [{ containerID: f.id(b), ifname: 'eth0' }] });
    expect(gc.stderr).toBe('');
    expect(gc.exitCode).toBe(0);
    const rs = await nftRuleset(f.host);
    expect(setElements(rs, 'pods4').map((e) => e.comment).sort()).toEqual([`brnet/${f.id(b)}/eth0`, `other/${f.id(c)}/eth0`].sort());
    expect(setElements(rs, 'pods6').map((e) => e.comment)).toEqual([`brnet/${f.id(b)}/eth0`]);
  });

  test('DEL and GC succeed on a host where the table was never made, and create nothing', async () => {
    f = await FirewallLab.create();
    expect((await f.call('DEL', f.conf({ backend: 'nftables' }))).exitCode).toBe(0);
    const gc = await f.call('GC', { cniVersion: '1.1.0', name: 'brnet', type: 'firewall', backend: 'nftables', 'cni.dev/valid-attachments': [] });
    expect(gc.exitCode).toBe(0);
    expect((await nftRuleset(f.host)).filter((i) => i.table)).toEqual([]);
  });

  test('STATUS is code 50 when nft cannot list the ruleset', async () => {
    f = await FirewallLab.create();
    const conf = { cniVersion: '1.1.0', name: 'brnet', type: 'firewall', backend: 'nftables' };
    expect((await f.call('STATUS', conf)).exitCode).toBe(0);
    const tool = failingTool('nft', 'nft: netlink: Operation not permitted');
    try {
      const r = await f.call('STATUS', conf, { path: tool.path });
      expect(r.json.code).toBe(50);
      expect(r.json.msg).toContain('firewall backend "nftables" is not usable');
    } finally {
      tool.dispose();
    }
  });
});

describe.each(['iptables', 'nftables'])('ingressPolicy same-bridge with the %s backend', (backend) => {
  test('a pod on another bridge cannot reach the pods of cni0, pods on the same bridge still talk', async () => {
    f = await FirewallLab.create(2);
    const [a, b] = f.pods as [string, string];
    const c = await f.addPod('cni1', ['198.18.1.0/24'], 'other');
    expect(await canReach(c, podIP(a, 4))).toBe(true); // routed between the bridges before
    for (const p of [a, b]) expect((await f.call('ADD', f.conf({ backend, ingressPolicy: 'same-bridge' }, p), { forPod: p })).exitCode).toBe(0);
    expect((await f.call('ADD', f.conf({ backend, ingressPolicy: 'same-bridge' }, c, 'other'), { forPod: c })).exitCode).toBe(0);
    expect(await canReach(c, podIP(a, 4))).toBe(false);
    expect(await canReach(a, podIP(c, 4))).toBe(false);
    expect(await canReach(a, podIP(b, 4))).toBe(true);
    expect(await canReach(b, podIP(a, 6))).toBe(true);
  });
});
