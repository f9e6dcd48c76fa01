// firewall: config parsing and validation (the reference's FirewallNetConf, with our code-7 errors),
// the iptables restore lines (the reference's rules, in iptables-save's form) and the nftables scripts.
import { bridgeName, loadFirewallConf, podAddresses } from '../../plugins/meta/firewall/config';
import { addLines, checkTable, delLines, podAddressesInTable, podRules } from '../../plugins/meta/firewall/iptables';
import { parseSave, undoLines } from '../../shared/netfilter/iptables';
import { decodeChain, decodeRule, decodeSetElements } from '../../shared/linux/netlink/nftables';
import fwCaptured from './firewall-nft-captured.json';

const parseFilterTable = (save: string) => parseSave(save, 'filter');
import { decodeRecord, encodeRecord, recordName } from '../../plugins/meta/firewall/records';
import * as nft from '../../plugins/meta/firewall/nftables';
import { CniError } from '../../shared/cni/errors';
import { errorOf } from '../support/errors';
import { formatIP, parseIP, type IP } from '../../shared/ip';

const load = (conf: Record<string, unknown>) => loadFirewallConf({ conf: { name: 'n', cniVersion: '1.0.0', ...conf } });
const ip = (s: string): IP => parseIP(s)!;


describe('firewall config', () => {
  test('defaults: admin chain CNI-ADMIN, ingressPolicy open, backend iptables (iptables is installed here)', () => {
    expect(load({})).toMatchObject({ name: 'n', backend: 'iptables', adminChain: 'CNI-ADMIN', ingressPolicy: 'open' });
    expect(load({ backend: 'nftables', iptablesAdminChainName: 'MY-ADMIN', ingressPolicy: 'same-bridge', firewalldZone: 'trusted' })).toMatchObject({
      backend: 'nftables',
      adminChain: 'MY-ADMIN',
      ingressPolicy: 'same-bridge',
    });
    expect(load({ backend: null, ingressPolicy: 'open' }).ingressPolicy).toBe('open');
  });

  test('backend "firewalld" is a code-7 error naming the field, the value and the alternatives', () => {
    const e = errorOf(() => load({ backend: 'firewalld' }));
    expect(e).toBeInstanceOf(CniError);
    expect(e.code).toBe(7);
    expect(e.message).toContain('"backend" = "firewalld"');
    expect(e.details).toContain('"iptables" or "nftables"');
  });

  test.each([
    [{ backend: 'ebtables' }, 'field "backend" = "ebtables"'],
    [{ backend: 3 }, 'field "backend" = 3'],
    [{ ingressPolicy: 'closed' }, 'field "ingressPolicy" = "closed"'],
    [{ iptablesAdminChainName: 'ADMIN -j ACCEPT' }, 'field "iptablesAdminChainName" = "ADMIN -j ACCEPT"'],
    [{ iptablesAdminChainName: 'A'.repeat(29) }, `field "iptablesAdminChainName" = "${'A'.repeat(29)}"`],
    [{ iptablesAdminChainName: '-ADMIN' }, 'field "iptablesAdminChainName" = "-ADMIN"'],
    [{ iptablesAdminChainName: 'FORWARD' }, 'field "iptablesAdminChainName" = "FORWARD"'],
    [{ iptablesAdminChainName: 'CNI-FORWARD' }, 'field "iptablesAdminChainName" = "CNI-FORWARD"'],
  ])('%j is code 7: %s', (conf, text) => {
    const e = errorOf(() => load(conf));
    expect(e.code).toBe(7);
    expect(e.message).toContain(text);
  });

  test('pod addresses from prevResult as hosts, deduplicated; a bad address names its index', () => {
    const r = { cniVersion: '1.0.0', ips: [{ address: '198.18.0.2/24' }, { address: 'fd00::2/64' }, { address: '198.18.0.2/16' }] };
    expect(podAddresses(r).map((a) => `${a.family}:${a.value}`)).toEqual([`4:${ip('198.18.0.2').value}`, `6:${ip('fd00::2').value}`]);
    const e = errorOf(() => podAddresses({ cniVersion: '1.0.0', ips: [{ address: '198.18.0.2' }] }));
    expect(e.message).toContain('field "prevResult.ips[0].address" = "198.18.0.2"');
  });

  test('the bridge is prevResult.interfaces[0]; absent or unfit for a rule is code 7 naming it', () => {
    expect(bridgeName({ cniVersion: '1.0.0', interfaces: [{ name: 'cni0' }, { name: 'veth1' }] }, 'same-bridge')).toBe('cni0');
    expect(errorOf(() => bridgeName({ cniVersion: '1.0.0' }, 'same-bridge')).message).toContain('field "prevResult.interfaces"');
    const e = errorOf(() => bridgeName({ cniVersion: '1.0.0', interfaces: [{ name: 'br"x' }] }, 'isolated'));
    expect(e.code).toBe(7);
    expect(e.message).toContain('field "prevResult.interfaces[0].name" = "br\\"x"');
  });
});

const EMPTY = parseFilterTable('*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n');

describe('firewall iptables lines', () => {
  test('ADD on an empty filter table: the reference chains, jumps and pod rules in its order, as iptables-save prints them', () => {
    expect(addLines(EMPTY, { adminChain: 'CNI-ADMIN', ips: [ip('198.18.0.2')] })).toEqual([
      '-N CNI-FORWARD',
      '-N CNI-ADMIN',
      '-I FORWARD 1 -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
      '-I CNI-FORWARD 1 -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
      '-A CNI-FORWARD -d 198.18.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
    ]);
    expect(podRules(ip('fd00::2'))).toEqual(['-d fd00::2/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-s fd00::2/128 -j ACCEPT']);
  });

  test('same-bridge and isolated add the CNI-ISOLATION-STAGE-1/2 rules with the reference comments, stage 1 jumped to first', () => {
    const lines = addLines(EMPTY, { adminChain: 'CNI-ADMIN', ips: [ip('198.18.0.2')], isolation: { bridge: 'cni0', policy: 'isolated' } });
    expect(lines.slice(6)).toEqual([
      '-N CNI-ISOLATION-STAGE-1',
      '-N CNI-ISOLATION-STAGE-2',
      '-I FORWARD 1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j CNI-ISOLATION-STAGE-1',
      '-I CNI-ISOLATION-STAGE-1 1 -i cni0 ! -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: isolated)" -j CNI-ISOLATION-STAGE-2',
      '-I CNI-ISOLATION-STAGE-1 1 -i cni0 -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: isolated)" -j DROP',
      '-A CNI-ISOLATION-STAGE-1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j RETURN',
      '-I CNI-ISOLATION-STAGE-2 1 -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j DROP',
      '-A CNI-ISOLATION-STAGE-2 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j RETURN',
    ]);
  });

  test('nothing to add when the table holds it all; only the missing rule otherwise (never a chain declared twice)', () => {
    const plan = { adminChain: 'CNI-ADMIN', ips: [ip('198.18.0.2')], isolation: { bridge: 'cni0', policy: 'same-bridge' as const } };
    const done = (ls: string[]): string => ls.map((l) => (l.startsWith('-N ') ? `:${l.slice(3)} - [0:0]` : l.replace(/^-I (\S+) 1 /, '-A $1 '))).join('\n');
    const full = parseFilterTable(`*filter\n${done(addLines(EMPTY, plan))}\nCOMMIT\n`);
    expect(addLines(full, plan)).toEqual([]);
    const other = addLines(full, { ...plan, ips: [ip('198.18.0.3')], isolation: { bridge: 'cni1', policy: 'same-bridge' } });
    expect(other).toEqual([
      '-A CNI-FORWARD -d 198.18.0.3/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 198.18.0.3/32 -j ACCEPT',
      '-I CNI-ISOLATION-STAGE-1 1 -i cni1 ! -o cni1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2',
      '-I CNI-ISOLATION-STAGE-2 1 -o cni1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j DROP',
    ]);
  });

  test('DEL deletes exactly the pod rules of its addresses (every copy), nothing of another pod, no chain', () => {
    const t = parseFilterTable(
      [
        '*filter',
        ':CNI-FORWARD - [0:0]',
        '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
        '-A CNI-FORWARD -d 198.18.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        '-A CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
        '-A CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
        '-A CNI-FORWARD -s 198.18.0.20/32 -j ACCEPT',
        'COMMIT',
      ].join('\n'),
    );
    expect(delLines(t, [ip('198.18.0.2')])).toEqual([
      '-D CNI-FORWARD -d 198.18.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-D CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
      '-D CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
    ]);
    expect(delLines(t, [ip('198.18.0.9')])).toEqual([]);
  });

  test('the pod addresses a table holds rules for, whoever wrote them (GC logs those without a record)', () => {
    const t = parseFilterTable(
      [
        '*filter',
        '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
        '-A CNI-FORWARD -d 198.18.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        '-A CNI-FORWARD -s 198.18.0.2/32 -j ACCEPT',
        '-A CNI-FORWARD -s fd00:18::2/128 -j ACCEPT',
        '-A CNI-FORWARD -s 198.18.0.0/24 -j ACCEPT',
        '-A FORWARD -s 198.18.0.3/32 -j ACCEPT',
        'COMMIT',
      ].join('\n'),
    );
    expect(podAddressesInTable(t)).toEqual(['198.18.0.2', 'fd00:18::2']);
  });

  test('undoLines takes back exactly what addLines added: its rules deleted in reverse, then the chains it created, unless something else now uses them', () => {
    const plan = { adminChain: 'CNI-ADMIN', ips: [ip('198.18.0.2')], isolation: { bridge: 'cni0', policy: 'same-bridge' as const } };
    const added = addLines(EMPTY, plan);
    // The table after the transaction, as iptables-save lists it (-I 1 lines as -A; undoLines does not depend on the order).
    const after = (extra: string[] = []) => ({
      chains: new Set([...EMPTY.chains, ...added.filter((l) => l.startsWith('-N ')).map((l) => l.slice(3))]),
      rules: [...added.filter((l) => !l.startsWith('-N ')).map((l) => l.replace(/^-I (\S+) 1 /, '-A $1 ')), ...extra],
    });
    const undo = undoLines(added, after());
    const rules = added.filter((l) => !l.startsWith('-N ')).reverse();
    expect(undo.slice(0, rules.length)).toEqual(rules.map((l) => (l.startsWith('-I ') ? l.replace(/^-I (\S+) 1 /, '-D $1 ') : l.replace(/^-A /, '-D '))));
    expect(undo).toContain('-D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
    expect(undo.slice(rules.length)).toEqual(['-X CNI-ISOLATION-STAGE-2', '-X CNI-ISOLATION-STAGE-1', '-X CNI-ADMIN', '-X CNI-FORWARD']);
    // Another process put a pod rule into CNI-FORWARD meanwhile: it and its chain (and the chain's jump target) stay.
    const other = '-A CNI-FORWARD -s 198.18.0.9/32 -j ACCEPT';
    const u2 = undoLines(added, after([other]));
    expect(u2).not.toContain(`-D${other.slice(2)}`);
    expect(u2.filter((l) => l.startsWith('-X '))).toEqual(['-X CNI-ISOLATION-STAGE-2', '-X CNI-ISOLATION-STAGE-1', '-X CNI-ADMIN']);
    // Chains that were there before are not in the transaction, so they stay; a rule already gone is not deleted twice.
    const existing = parseFilterTable('*filter\n:CNI-FORWARD - [0:0]\n:CNI-ADMIN - [0:0]\nCOMMIT\n');
    const podOnly = addLines(existing, { adminChain: 'CNI-ADMIN', ips: [ip('198.18.0.2')] });
    expect(undoLines(podOnly, { chains: existing.chains, rules: [] })).toEqual([]);
  });

  test('CHECK fails with the reference message naming the missing rule', () => {
    const t = parseFilterTable(
      '*filter\n:CNI-FORWARD - [0:0]\n:CNI-ADMIN - [0:0]\n-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD\n-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN\n-A CNI-FORWARD -d 198.18.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n',
    );
    expect(() => checkTable(t, 'CNI-ADMIN', [ip('198.18.0.2')])).toThrow('expected rule [-s 198.18.0.2/32 -j ACCEPT] not found');
    expect(() => checkTable(t, 'OTHER', [ip('198.18.0.2')])).toThrow('chain OTHER not found');
    expect(() => checkTable(EMPTY, 'CNI-ADMIN', [])).not.toThrow();
  });
});

describe('firewall nftables script', () => {
  test('ADD is one idempotent script: forward chain rebuilt, admin kept, each address element rewritten with the attachment comment', () => {
    const s = nft.addScript([ip('198.18.0.2'), ip('fd00::2')], 'net/ctr/eth0', { bridge: 'cni0', policy: 'same-bridge' });
    const lines = s.trim().split('\n');
    expect(lines).toContain('flush chain inet cni_plugins_firewall forward');
    expect(lines).not.toContain('flush chain inet cni_plugins_firewall admin');
    expect(lines.filter((l) => l.startsWith('add rule'))).toHaveLength(nft.FORWARD_RULES.length);
    expect(lines.slice(-8)).toEqual([
      'add element inet cni_plugins_firewall pods4 { 198.18.0.2 }',
      'delete element inet cni_plugins_firewall pods4 { 198.18.0.2 }',
      'add element inet cni_plugins_firewall pods4 { 198.18.0.2 comment "net/ctr/eth0" }',
      'add element inet cni_plugins_firewall pods6 { fd00::2 }',
      'delete element inet cni_plugins_firewall pods6 { fd00::2 }',
      'add element inet cni_plugins_firewall pods6 { fd00::2 comment "net/ctr/eth0" }',
      'add element inet cni_plugins_firewall bridges { "cni0" }',
      'add element inet cni_plugins_firewall same_bridge { "cni0" . "cni0" }',
    ]);
    expect(nft.addScript([], 'c', { bridge: 'b', policy: 'isolated' })).toContain('add element inet cni_plugins_firewall isolated_bridges { "b" }');
  });

  test('attachment comments: readable within 127 bytes, else a hash that GC leaves alone', () => {
    expect(nft.attachmentComment('net', 'ctr', 'eth0')).toBe('net/ctr/eth0');
    expect(nft.parseComment('net/ctr/eth0')).toEqual({ network: 'net', containerID: 'ctr', ifname: 'eth0' });
    const long = nft.attachmentComment('n'.repeat(70), 'c'.repeat(64), 'eth0');
    expect(long).toMatch(/^#[0-9a-f]{64}$/);
    expect(nft.parseComment(long)).toBeUndefined();
    expect(nft.attachmentComment('net', 'ctr', 'e"}0')).toMatch(/^#[0-9a-f]{64}$/); // never closes the script's quotes
    expect(nft.attachmentComment('net', 'ctr', 'e\\0')).toMatch(/^#[0-9a-f]{64}$/);
  });

  test('the table read over netlink gives what nft -j listed for the same state; GC picks exactly this network\'s invalid attachments', () => {
    type Capture = { chains: string[]; rules: string[]; sets: Record<'pods4' | 'pods6' | 'bridges' | 'isolated_bridges', string[]>; expected: { pods: Array<{ ip: string; comment: string }>; chains: string[]; forwardRules: number; bridges: string[]; isolatedBridges: string[] } };
    const c = fwCaptured as unknown as Capture;
    const hex = (h: string) => Buffer.from(h, 'hex');
    const sets = Object.fromEntries(Object.entries(c.sets).map(([k, v]) => [k, v.flatMap((h) => decodeSetElements(hex(h)))])) as Record<keyof Capture['sets'], ReturnType<typeof decodeSetElements>>;
    // The chain dump has every inet table's chains: keep this table's, as nftListChains does.
    const chains = c.chains.map((h) => decodeChain(hex(h))).filter((ch) => ch.table === nft.TABLE).map((ch) => ch.name);
    const t = nft.tableOf(chains, c.rules.map((h) => decodeRule(hex(h))), sets);
    const pods = (x: Array<{ ip: string; comment: string }>) => [...x].sort((p, q) => (p.ip < q.ip ? -1 : 1));
    expect(pods(t.pods.map((p) => ({ ip: `${p.ip.family}:${p.ip.value}`, comment: p.comment })))).toEqual(pods(c.expected.pods));
    expect([[...t.chains].sort(), t.forwardRules, [...t.bridges].sort(), [...t.isolatedBridges]]).toEqual([[...c.expected.chains].sort(), c.expected.forwardRules, [...c.expected.bridges].sort(), c.expected.isolatedBridges]);
    const stale = nft.staleElements(t, 'net', [{ containerID: 'a', ifname: 'eth0' }]);
    expect(stale.map((p) => [formatIP(p.ip), p.comment])).toEqual([['198.18.0.3', 'net/b/eth0']]);
    expect(() => nft.checkTable(t, [ip('198.18.0.2')], 'net/a/eth0', { bridge: 'cni0', policy: 'same-bridge' })).not.toThrow();
    expect(() => nft.checkTable(t, [ip('198.18.0.2')], 'net/b/eth0')).toThrow('element 198.18.0.2 in set pods4 of table inet cni_plugins_firewall belongs to "net/a/eth0", not "net/b/eth0"');
  });
});

describe('firewall attachment records', () => {
  test('dataDir: /run/cni/firewall by default; a relative path or a ".." component is code 7 naming it', () => {
    expect(load({}).dataDir).toBe('/run/cni/firewall');
    expect(load({ dataDir: '/run/fw' }).dataDir).toBe('/run/fw');
    for (const bad of ['run/fw', '/run/../etc']) {
      const e = errorOf(() => load({ dataDir: bad }));
      expect(e.code).toBe(7);
      expect(e.message).toContain(`"dataDir" = ${JSON.stringify(bad)}`);
    }
  });

  test('a record round-trips its attachment and addresses; its file name is "<containerID>:<ifName>"', () => {
    const r = { containerID: 'c1', ifName: 'eth0', ips: [ip('198.18.0.2'), ip('fd00:18::2')] };
    const text = encodeRecord(r);
    expect(JSON.parse(text)).toEqual({ containerID: 'c1', ifName: 'eth0', ips: ['198.18.0.2', 'fd00:18::2'] });
    expect(decodeRecord(Buffer.from(text), 'f')).toEqual(r);
    expect(recordName('c1', 'eth0')).toBe('c1:eth0');
  });

  test.each([['not json', '{'], ['no ips', '{"containerID":"c","ifName":"eth0"}'], ['a bad address', '{"containerID":"c","ifName":"eth0","ips":["198.18.0.300"]}']])(
    'a file that is not a record (%s) is an error naming the file',
    (_, text) => {
      expect(() => decodeRecord(Buffer.from(text), '/x/brnet/c:eth0')).toThrow(/^\/x\/brnet\/c:eth0: not a firewall attachment record/);
    },
  );
});
