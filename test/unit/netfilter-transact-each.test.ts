// transactEach (shared/netfilter/iptables.ts) on the tool path (iptables-legacy, or a table the
// in-process reader cannot print): one transact per family, in order; a family whose table cannot be
// read fails only after the families before it were done, as one transact each would.
const mockTools = { calls: [] as string[], missing: new Set<string>(), tables: new Map<string, string>() };

jest.mock('../../shared/netfilter/tool', () => {
  const actual = jest.requireActual('../../shared/netfilter/tool');
  return {
    ...actual,
    // No iptables-restore found: not iptables-nft, so every read is the tool's.
    findTool: () => null,
    mustRunTool: (tool: string, args: string[], what: string, input?: string) => {
      mockTools.calls.push(input === undefined ? `${tool} ${args.join(' ')}` : `${tool} ${args.join(' ')} <<${input.trim().split('\n').join(' | ')}`);
      if (mockTools.missing.has(tool)) throw new actual.NetfilterError(tool, `${what}: ${tool} not found`, 'not-found');
      return mockTools.tables.get(tool) ?? '';
    },
  };
});

import { transactEach } from '../../shared/netfilter/iptables';
import { NetfilterError } from '../../shared/netfilter/tool';

const NAT = (chain: string) => ['*nat', `:POSTROUTING ACCEPT [0:0]`, `:${chain} - [0:0]`, `-A POSTROUTING -s 198.18.0.2/32 -j ${chain}`, `-A ${chain} -j MASQUERADE`, 'COMMIT', ''].join('\n');
const removal = (chain: string) => (t: { rules: string[]; chains: Set<string> }) => [
  ...t.rules.filter((l) => l.endsWith(`-j ${chain}`)).map((l) => `-D${l.slice(2)}`),
  ...(t.chains.has(chain) ? [`-F ${chain}`, `-X ${chain}`] : []),
];

beforeEach(() => {
  mockTools.calls = [];
  mockTools.missing = new Set();
  mockTools.tables = new Map([
    ['iptables-save', NAT('CNI-aaa')],
    ['ip6tables-save', NAT('CNI-aaa')],
  ]);
});

describe('transactEach on the tool path', () => {
  test('both families: each read, then each family its own iptables-restore, in order', () => {
    transactEach([4, 6], 'nat', 'tearing down', removal('CNI-aaa'));
    expect(mockTools.calls).toEqual([
      'iptables-save -t nat',
      'ip6tables-save -t nat',
      'iptables-restore -w --noflush <<*nat | -D POSTROUTING -s 198.18.0.2/32 -j CNI-aaa | -F CNI-aaa | -X CNI-aaa | COMMIT',
      'ip6tables-restore -w --noflush <<*nat | -D POSTROUTING -s 198.18.0.2/32 -j CNI-aaa | -F CNI-aaa | -X CNI-aaa | COMMIT',
    ]);
  });

  test('an IPv6 table that cannot be read (no ip6tables-save) fails the call only after the IPv4 rules were removed', () => {
    mockTools.missing.add('ip6tables-save');
    let err: unknown;
    try {
      transactEach([4, 6], 'nat', 'tearing down', removal('CNI-aaa'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetfilterError);
    expect((err as NetfilterError).notFound).toBe(true);
    expect(mockTools.calls).toEqual([
      'iptables-save -t nat',
      'ip6tables-save -t nat',
      'iptables-restore -w --noflush <<*nat | -D POSTROUTING -s 198.18.0.2/32 -j CNI-aaa | -F CNI-aaa | -X CNI-aaa | COMMIT',
    ]);
  });

  test('a family with nothing to remove writes nothing', () => {
    mockTools.tables.set('ip6tables-save', ['*nat', ':POSTROUTING ACCEPT [0:0]', 'COMMIT', ''].join('\n'));
    transactEach([4, 6], 'nat', 'tearing down', removal('CNI-aaa'));
    expect(mockTools.calls.filter((c) => c.includes('restore'))).toEqual(['iptables-restore -w --noflush <<*nat | -D POSTROUTING -s 198.18.0.2/32 -j CNI-aaa | -F CNI-aaa | -X CNI-aaa | COMMIT']);
  });
});
