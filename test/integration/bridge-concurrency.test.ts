// Regression: 64 pods ADDed at once on one bridge. Each ADD subscribes to link events while it waits
// for its veth; 64 of them flood every subscribed socket's receive buffer, and the kernel then
// silently drops request replies on a congested socket, so a plugin hung forever in a netlink recv
// (fixed in 3075d9c, "netlink: events on their own socket"). A hang shows up here as a call killed
// by runCni's 30 s timeout, well under this test's own timeout, so CI fails instead of stalling.
import { execa } from 'execa';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, binDir, delNetns, nsName, runCni, type RunResult } from '../support/cni';
import { ipj, ping } from './bridge-harness';

const PODS = 64;
const BRIDGE = 'bc0';
const NETWORK = 'bcnet';
const SUBNET = '198.18.64.0/24';
const GATEWAY = '198.18.64.1';

jest.setTimeout(300000);

interface Attachment {
  pod: string;
  id: string;
  r: RunResult;
}

/** What a failed call said, so a red test names the pod and the plugin's error (or its timeout). */
function failures(calls: Attachment[]): string[] {
  return calls
    .filter((c) => c.r.exitCode !== 0)
    // runCni reports no exit code (-1) for a process it killed: a hang that hit its 30 s timeout.
    .map((c) => `${c.id}: ${c.r.exitCode === -1 ? 'killed (hung?)' : `exit ${c.r.exitCode}`} stdout=${c.r.stdout.slice(0, 300)} stderr=${c.r.stderr.slice(0, 300)}`);
}

describe('bridge + host-local: 64 concurrent ADDs and DELs on one bridge', () => {
  const host = nsName('bc-h');
  const pods = Array.from({ length: PODS }, () => nsName('bc-p'));
  let dataDir = '';

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'bc-ipam-'));
    // allSettled: every name is deleted in afterAll whether or not its creation succeeded.
    const made = await Promise.allSettled([host, ...pods].map((n) => addNetns(n)));
    const bad = made.filter((m): m is PromiseRejectedResult => m.status === 'rejected');
    if (bad.length) throw new Error(`creating scratch netns: ${String(bad[0]!.reason)}`);
  });

  afterAll(async () => {
    await Promise.all([...pods, host].map((n) => delNetns(n)));
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const conf = () => ({
    cniVersion: '1.0.0',
    name: NETWORK,
    type: 'bridge',
    bridge: BRIDGE,
    isGateway: true,
    ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: SUBNET }]] },
  });

  const call = async (command: string, pod: string, i: number): Promise<Attachment> => {
    const id = `bc-ctr-${i}`;
    const r = await runCni('bridge', {
      command,
      config: conf(),
      hostNetns: host,
      env: {
        CNI_CONTAINERID: id,
        CNI_NETNS: `/var/run/netns/${pod}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: binDir(), // host-local is our own executable: delegated in-process
      },
    });
    return { pod, id, r };
  };

  test('all ADDs succeed with distinct addresses and 64 bridge ports; all DELs leave nothing behind', async () => {
    // --- 64 ADDs at once
    const adds = await Promise.all(pods.map((p, i) => call('ADD', p, i)));
    expect(failures(adds)).toEqual([]);

    const ips: string[] = [];
    const hostVeths: string[] = [];
    for (const { pod, r } of adds) {
      expect(r.json).toBeDefined();
      expect(r.json.interfaces).toHaveLength(3);
      expect(r.json.interfaces[0].name).toBe(BRIDGE);
      expect(r.json.interfaces[2]).toMatchObject({ name: 'eth0', sandbox: `/var/run/netns/${pod}` });
      expect(r.json.ips).toHaveLength(1);
      expect(r.json.ips[0]).toMatchObject({ interface: 2, gateway: GATEWAY, address: expect.stringMatching(/^198\.18\.64\.\d+\/24$/) });
      ips.push(r.json.ips[0].address);
      hostVeths.push(r.json.interfaces[1].name);
    }
    expect(new Set(ips).size).toBe(PODS);
    expect(ips).not.toContain(`${GATEWAY}/24`);
    expect(new Set(hostVeths).size).toBe(PODS);

    // Kernel state matches the results: each pod's eth0 carries the address it was given.
    const podAddrs = await Promise.all(
      adds.map(async ({ pod }) => {
        const l = await ipj<{ addr_info: { family: string; local: string; prefixlen: number }[] }[]>(pod, '-4', 'addr', 'show', 'dev', 'eth0');
        return (l[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
      }),
    );
    podAddrs.forEach((addrs, i) => expect(addrs).toEqual([ips[i]]));

    const ports = await ipj<{ ifname: string; operstate: string }[]>(host, 'link', 'show', 'master', BRIDGE);
    expect(ports.map((p) => p.ifname).sort()).toEqual([...hostVeths].sort());
    const br = await ipj<{ addr_info: { local: string; prefixlen: number }[] }[]>(host, '-4', 'addr', 'show', 'dev', BRIDGE);
    expect(br[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${GATEWAY}/24`]);

    // Traffic: the first, a middle and the last pod reach the gateway, and two pods reach each other.
    for (const i of [0, PODS / 2, PODS - 1]) expect(await ping(adds[i]!.pod, GATEWAY)).toBe(true);
    expect(await ping(adds[1]!.pod, ips[PODS - 2]!.split('/')[0]!)).toBe(true);

    // --- 64 DELs at once
    const dels = await Promise.all(pods.map((p, i) => call('DEL', p, i)));
    expect(failures(dels)).toEqual([]);
    for (const { r } of dels) expect(r.stdout).toBe('');

    expect(await ipj(host, 'link', 'show', 'master', BRIDGE)).toEqual([]);
    expect((await ipj(host, 'link', 'show', BRIDGE))[0].ifname).toBe(BRIDGE); // the bridge itself stays
    const gone = await Promise.all(pods.map((p) => execa('ip', ['-n', p, 'link', 'show', 'eth0'], { reject: false })));
    expect(gone.filter((g) => g.exitCode === 0).map((g) => g.stdout)).toEqual([]);

    // No lease survives: only the lock and the per-range last-reserved files (plus the hidden index).
    const left = readdirSync(join(dataDir, NETWORK)).filter((f) => !f.startsWith('.'));
    expect(left.filter((f) => !/^(lock|last_reserved_ip\.\d+)$/.test(f))).toEqual([]);
    expect(left).toContain('lock');
    // host-local's per-attachment index (.cnikit/by-key) is released with the leases.
    expect(readdirSync(join(dataDir, NETWORK, '.cnikit', 'by-key'))).toEqual([]);
  });
});
