// The in-process iptables-nft writer (shared/netfilter/xtables-nft.ts encodeRule + one nfnetlink
// batch) against iptables-restore (iptables-nft 1.8.9) on the real kernel: the same lines written
// by each into its own scratch netns give the same nf_tables expressions (`nft --debug=netlink`)
// and the same iptables-save listing, and iptables -D (what the reference plugins run) deletes every
// rule we wrote by its spec. The lines are the forms the plugins write, with the edge cases of
// each: odd prefixes, negations, port ranges, both families, DNAT with and without a port.
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, delNetns, nsName } from '../support/cni';
import { compileLikeTheProduct } from '../support/compile';

const root = join(__dirname, '..', '..');
const C = 'name: \\"net\\" id: \\"ctr1\\"';

interface Case {
  family: 4 | 6;
  table: 'nat' | 'filter';
  chains: string[];
  lines: string[];
}

const CASES: Record<string, Case> = {
  'IPv4 nat: masquerade, portmap and their edge cases': {
    family: 4,
    table: 'nat',
    chains: ['CNI-0123456789abcdef01234567', 'CNI-DN-0123456789abcdef01234', 'CNI-HOSTPORT-DNAT', 'CNI-HOSTPORT-SETMARK', 'CNI-HOSTPORT-MASQ'],
    lines: [
      `-A CNI-0123456789abcdef01234567 -d 198.18.0.0/24 -m comment --comment "${C}" -j ACCEPT`,
      `-A CNI-0123456789abcdef01234567 ! -d 224.0.0.0/4 -m comment --comment "${C}" -j MASQUERADE`,
      `-A POSTROUTING -s 198.18.0.5/32 -m comment --comment "${C}" -j CNI-0123456789abcdef01234567`,
      `-A CNI-0123456789abcdef01234567 -d 198.18.0.4/31 -j RETURN`,
      `-A CNI-0123456789abcdef01234567 ! -s 198.18.128.0/17 -d 10.1.2.0/23 -j RETURN`,
      `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat ${C}" -m multiport --dports 8080,8443,9000:9010 -j CNI-DN-0123456789abcdef01234`,
      `-A CNI-HOSTPORT-DNAT -d 203.0.113.7/32 -p udp -m comment --comment "dnat ${C}" -m multiport --dports 53 -j CNI-DN-0123456789abcdef01234`,
      `-A CNI-HOSTPORT-DNAT -p tcp -m multiport --sports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j RETURN`,
      '-A CNI-DN-0123456789abcdef01234 -s 198.18.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK',
      '-A CNI-DN-0123456789abcdef01234 -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK',
      '-A CNI-DN-0123456789abcdef01234 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.5:80',
      '-A CNI-DN-0123456789abcdef01234 -p udp -m udp --sport 1000:2000 ! --dport 9 -j DNAT --to-destination 198.18.0.5',
      '-A CNI-DN-0123456789abcdef01234 -p udp -m udp ! --dport 1:65534 -j RETURN',
      '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000',
      '-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
      '-A CNI-HOSTPORT-MASQ -m mark ! --mark 0x1 -j RETURN',
      '-A CNI-HOSTPORT-MASQ -m mark --mark 0x3/0x1 -j RETURN',
    ],
  },
  'IPv6 nat: masquerade, DNAT with and without a port, odd prefixes': {
    family: 6,
    table: 'nat',
    chains: ['CNI-0123456789abcdef01234567', 'CNI-DN-0123456789abcdef01234'],
    lines: [
      `-A CNI-0123456789abcdef01234567 -d fd00:18::/64 -m comment --comment "${C}" -j ACCEPT`,
      `-A CNI-0123456789abcdef01234567 ! -d ff00::/8 -m comment --comment "${C}" -j MASQUERADE`,
      `-A POSTROUTING -s fd00:18::5/128 -m comment --comment "${C}" -j CNI-0123456789abcdef01234567`,
      '-A CNI-0123456789abcdef01234567 -d fd00:18::4/127 -j RETURN',
      '-A CNI-0123456789abcdef01234567 -s fd00:18::/65 -j RETURN',
      '-A CNI-DN-0123456789abcdef01234 -p udp -m udp --dport 53 -j DNAT --to-destination [fd00:18::5]:53',
      '-A CNI-DN-0123456789abcdef01234 -p tcp -m tcp --dport 54 -j DNAT --to-destination fd00:18::5',
    ],
  },
  'IPv4 filter: the firewall\'s pod rules, and a DROP': {
    family: 4,
    table: 'filter',
    chains: ['CNI-FORWARD'],
    lines: [
      '-A CNI-FORWARD -d 198.18.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 198.18.0.5/32 -j ACCEPT',
      '-A CNI-FORWARD -d 198.18.0.6/32 -m conntrack --ctstate INVALID,NEW,UNTRACKED -j DROP',
    ],
  },
  'IPv6 filter: the firewall\'s pod rules': {
    family: 6,
    table: 'filter',
    chains: ['CNI-FORWARD'],
    lines: ['-A CNI-FORWARD -d fd00:18::5/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-A CNI-FORWARD -s fd00:18::5/128 -j ACCEPT'],
  },
};

let dir: string;
let exe: string;
const theirs = nsName('xw-t');
const ours = nsName('xw-o');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'xtables-write-'));
  exe = await compileLikeTheProduct(join(root, 'test', 'support', 'xtables-write-harness.ts'), dir);
}, 60000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(async () => {
  await addNetns(theirs);
  await addNetns(ours);
});
afterEach(async () => {
  await delNetns(theirs);
  await delNetns(ours);
});

const tool = (f: 4 | 6, t: string): string => (f === 4 ? `iptables${t}` : `ip6tables${t}`);
// iptables-nft makes a built-in chain when a line first names it: both sides get the ones the lines use.
const BUILTINS = { nat: [':POSTROUTING ACCEPT [0:0]'], filter: [] };
const restore = (ns: string, c: Case, lines: string[]) =>
  execa('ip', ['netns', 'exec', ns, tool(c.family, '-restore'), '--noflush'], { input: [`*${c.table}`, ...BUILTINS[c.table], ...c.chains.map((ch) => `:${ch} - [0:0]`), ...lines, 'COMMIT', ''].join('\n') });
/** The table's rules as nft --debug=netlink prints their expressions, without handles and positions. */
async function expressions(ns: string, c: Case): Promise<string[]> {
  const r = await execa('ip', ['netns', 'exec', ns, 'nft', '--debug=netlink', 'list', 'table', c.family === 4 ? 'ip' : 'ip6', c.table]);
  return r.stdout
    .split('\n\ntable ')[0]!
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/^(ip6? \S+ \S+)( \d+)+$/, '$1'));
}
const saved = async (ns: string, c: Case): Promise<string[]> => (await execa('ip', ['netns', 'exec', ns, tool(c.family, '-save'), '-t', c.table])).stdout.split('\n').filter((l) => !l.startsWith('#'));

describe('rule lines written in-process are the rules iptables-restore writes', () => {
  test.each(Object.keys(CASES))('%s: the same expressions, the same iptables-save lines; iptables -D removes each by its spec', async (name) => {
    const c = CASES[name]!;
    await restore(theirs, c, c.lines);
    await restore(ours, c, []); // the table and chains, as a node's first pod makes them
    const r = await execa('ip', ['netns', 'exec', ours, exe], { input: JSON.stringify({ family: c.family, table: c.table, lines: c.lines }) });
    const out = JSON.parse(r.stdout) as { encoded: boolean[]; error?: string };
    expect({ encoded: out.encoded, error: out.error }).toEqual({ encoded: c.lines.map(() => true), error: undefined });
    expect(await expressions(ours, c)).toEqual(await expressions(theirs, c));
    expect(await saved(ours, c)).toEqual(await saved(theirs, c));
    for (const line of c.lines) {
      const del = await execa('ip', ['netns', 'exec', ours, 'sh', '-c', `${tool(c.family, '')} -t ${c.table} ${line.replace(/^-A /, '-D ')}`], { reject: false });
      expect({ line, exit: del.exitCode, stderr: del.stderr }).toEqual({ line, exit: 0, stderr: '' });
    }
    expect((await saved(ours, c)).filter((l) => l.startsWith('-A '))).toEqual([]);
  });
});
