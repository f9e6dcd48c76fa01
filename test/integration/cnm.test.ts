// The CNM library and the cnm CLI on real namespaces (see cnm-harness.ts): the lifecycle of
// seeds 000/002/004 (network → endpoint → join sandbox; teardown in reverse) with our plugins.
import { withCnmHost, type CnmHost } from './cnm-harness';

jest.setTimeout(120000);

const STATE = '/var/lib/cnikit/cnm';

/** After teardown: no link but lo in the host netns, no sandbox netns, no lease, no cached result, no record. */
async function expectNothingLeft(h: CnmHost, net: string): Promise<void> {
  expect((await h.sh('ip', '-o', 'link', 'show')).stdout.split('\n').map((l) => l.split(':')[1]!.trim())).toEqual(['lo']);
  expect((await h.sh('ip', 'netns', 'list')).stdout).toBe('');
  expect((await h.sh('ls', '-A', '/var/lib/cni/results')).stdout).toBe('');
  expect((await h.sh('ls', '-A', `${STATE}/endpoints`, `${STATE}/sandboxes`)).stdout.split('\n').filter((l) => l && !l.endsWith(':'))).toEqual([]);
  expect((await h.sh('ls', '-A', `${STATE}/ipam`)).stdout.split('\n')).not.toContain(net);
}

test('lifecycle: two sandboxes on one network ping each other and the gateway; --ip is honoured; rm with endpoints and overlapping subnets are refused; teardown leaves nothing', () =>
  withCnmHost(async (h) => {
    const id = await h.ok('network', 'create', '--subnet', '198.18.0.0/24', 'web');
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(await h.cnm('network', 'create', '--subnet', '198.18.0.128/25', 'db')).toEqual({ code: 1, stdout: '', stderr: 'cnm: subnet 198.18.0.128/25 overlaps network "web" (198.18.0.0/24)' });
    expect(await h.ok('sandbox', 'create', 'a')).toBe('/run/netns/a');
    expect(await h.ok('sandbox', 'create', 'b')).toBe('/run/netns/b');
    await h.ok('network', 'connect', 'web', 'a');
    await h.ok('network', 'connect', '--ip', '198.18.0.50', 'web', 'b');

    // ip netns sees the sandboxes (bind mounts under /run/netns); a has eth0 with the first address and the default route
    expect((await h.sh('ip', 'netns', 'list')).stdout.split('\n').map((l) => l.split(' ')[0]).sort()).toEqual(['a', 'b']);
    expect((await h.sh('ip', '-n', 'a', '-4', '-o', 'addr', 'show', 'eth0')).stdout).toContain('inet 198.18.0.2/24');
    expect((await h.sh('ip', '-n', 'b', '-4', '-o', 'addr', 'show', 'eth0')).stdout).toContain('inet 198.18.0.50/24');
    expect((await h.sh('ip', '-n', 'a', 'route', 'show', 'default')).stdout).toBe('default via 198.18.0.1 dev eth0');
    expect(await h.cnm('sandbox', 'exec', 'a', '--', 'ping', '-c1', '-W2', '198.18.0.50')).toMatchObject({ code: 0 });
    expect(await h.cnm('sandbox', 'exec', 'b', '--', 'ping', '-c1', '-W2', '198.18.0.2')).toMatchObject({ code: 0 });
    expect(await h.cnm('sandbox', 'exec', 'a', '--', 'ping', '-c1', '-W2', '198.18.0.1')).toMatchObject({ code: 0 });
    // the bridge is Docker's br-<id12> and holds the gateway
    expect((await h.sh('ip', '-4', '-o', 'addr', 'show', `br-${id.slice(0, 12)}`)).stdout).toContain('inet 198.18.0.1/24');

    const [inspect] = JSON.parse(await h.ok('network', 'inspect', 'web'));
    expect(inspect).toMatchObject({ Name: 'web', Id: id, Scope: 'local', Driver: 'bridge', EnableIPv6: false, Internal: false, IPAM: { Driver: 'default', Config: [{ Subnet: '198.18.0.0/24', Gateway: '198.18.0.1' }] } });
    const byName = Object.fromEntries(Object.values(inspect.Containers as Record<string, { Name: string; IPv4Address: string; MacAddress: string }>).map((c) => [c.Name, c]));
    expect(byName.a.IPv4Address).toBe('198.18.0.2/24');
    expect(byName.b.IPv4Address).toBe('198.18.0.50/24');
    // the MAC inspect shows is the sandbox link's
    expect((await h.cnm('sandbox', 'exec', 'b', '--', 'ip', '-o', 'link', 'show', 'eth0')).stdout).toContain(`link/ether ${byName.b.MacAddress} `);

    // the endpoint's lease is in the network's host-local store, owned by the endpoint
    const leases = (await h.sh('ls', `${STATE}/ipam/web`)).stdout.split('\n').filter((f) => /^198\./.test(f));
    expect(leases.sort()).toEqual(['198.18.0.2', '198.18.0.50']);

    expect(await h.cnm('network', 'rm', 'web')).toEqual({ code: 1, stdout: '', stderr: 'cnm: network "web" has active endpoints: 2' });
    expect(await h.cnm('network', 'connect', '--ip', '198.18.0.50', 'web', 'nope')).toEqual({ code: 1, stdout: '', stderr: 'cnm: no such sandbox "nope"' });

    await h.ok('network', 'disconnect', 'web', 'a');
    expect((await h.sh('ip', '-n', 'a', 'link', 'show', 'eth0')).code).not.toBe(0);
    expect(await h.ok('sandbox', 'rm', 'a', 'b')).toBe('a\nb');
    expect(await h.ok('network', 'rm', 'web')).toBe('web');
    const left = (await h.ok('network', 'ls', '--format', 'json')).split('\n').map((l) => JSON.parse(l) as { Name: string; Driver: string });
    expect(left.map((n) => [n.Name, n.Driver])).toEqual([['host', 'host'], ['none', 'null']]);
    await expectNothingLeft(h, 'web');
  }));
