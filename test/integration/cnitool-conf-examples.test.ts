// Every file in conf-examples/ is loaded and run: ADD, CHECK, DEL (twice) in a scratch host netns,
// through our cnitool and — for lists the Debian libcni 1.1.2 can run (cniVersion ≤ 1.0.0) — the
// real libcni; on the reference plugins (≤ 1.0.0 lists) and on ours alone once built. IPAM state goes to a
// temp dataDir, never to /var/lib/cni.
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, linkedPlugins, missingPlugins, withNetns } from '../support/cni';
import { REFERENCE } from '../go/drivers';
import { type Json } from '../../runner/conf';
import { compareVersions } from '../../shared/cni/version';
import { kernelHasVlanFiltering } from './bridge-harness';
import { EXAMPLE_TEST, EXAMPLES, exampleCases, exampleDescribe, exampleFiles } from './conf-examples-cases';

const cases = exampleCases();
const files = exampleFiles();

// The VLAN examples need CONFIG_BRIDGE_VLAN_FILTERING. Without it they are skipped here (counted in
// the summary) and bridge-vlan-vm.test.ts runs them in a VM, where they must pass.
const vlanFiltering = kernelHasVlanFiltering('rn');

const familyOf = (cidr: string): 4 | 6 => (cidr.includes(':') ? 6 : 4);

/** The address families host-local will hand out: one per range set (or the legacy subnet). */
function expectedFamilies(ipam: Json | undefined): Array<4 | 6> {
  if (!ipam || !ipam.type) return [];
  if (Array.isArray(ipam.ranges)) return (ipam.ranges as Array<Array<{ subnet: string }>>).map((set) => familyOf(set[0]!.subnet));
  return typeof ipam.subnet === 'string' ? [familyOf(ipam.subnet)] : [];
}

/**
 * CHECK failures that are bugs of the reference plugins v1.1.1 in /usr/lib/cni, not of the runner:
 * - bridge L2-only: CHECK delegates to IPAM even without ipam.type → "no plugin name provided" (cni-anchors §2.4);
 * - portmap: CHECK looks for its IPv6 DNAT chain even when none was made → "could not check ipv6 dnat".
 */
function referenceCheckQuirk(plugins: Json[], cniPath: string): string | null {
  const ours = (t: string): boolean => cniPath !== REFERENCE && existsSync(join(cniPath.split(':')[0]!, t));
  if (plugins.some((p) => p.type === 'portmap') && !ours('portmap')) return 'could not check ipv6 dnat';
  const main = plugins[0]!;
  if (main.type === 'bridge' && !ours('bridge') && !(main.ipam as Json | undefined)?.type) return 'no plugin name provided';
  return null;
}

const sh = async (ns: string, ...cmd: string[]): Promise<string> => String((await execa('ip', ['netns', 'exec', ns, ...cmd], { reject: false })).stdout);

test('there are examples for every shape the issue asks for', () => {
  for (const f of ['bridge-ipv4', 'bridge-dual-stack', 'bridge-l2-only', 'bridge-vlan', 'bridge-ipmasq-nftables', 'podman', 'containerd'])
    expect(files).toContain(`${f}.conflist`);
});

// On our directory alone (CNI_PATH = it, nothing else), an example naming a plugin the executable does
// not link yet is skipped, the plugin named in the test's title; never run against a reference plugin.
const linked = linkedPlugins();
const missingOnOurs = (c: (typeof cases)[number]): string[] =>
  c.path.path === REFERENCE ? [] : missingPlugins(JSON.parse(readFileSync(join(EXAMPLES, c.file), 'utf8')) as Json, linked);

test('on our plugins, CNI_PATH is our directory alone', () => {
  for (const c of cases) if (c.path.path !== REFERENCE) expect(c.path.path).toBe(binDir());
});

for (const c of cases) describe(exampleDescribe(c), () => {
  const { file, driver, path } = c;
  const missing = missingOnOurs(c);
  if (missing.length) {
    test.skip(`${EXAMPLE_TEST} (skipped: no ${missing.join(', ')} in cnikit --list)`, () => undefined);
    return;
  }
  (c.vlan && !vlanFiltering ? test.skip : test)(EXAMPLE_TEST, async () => {
    const base = mkdtempSync(join(tmpdir(), 'rn-ex-'));
    try {
      await withNetns(['rn-h', 'rn-c'], async ([host, ctr]) => {
        const dir = join(base, 'net.d');
        const ipamDir = join(base, 'ipam');
        mkdirSync(dir);
        // the example as shipped, with its IPAM store (and record stores) moved to the temp dir
        const raw = JSON.parse(readFileSync(join(EXAMPLES, file), 'utf8')) as Json;
        const plugins = (Array.isArray(raw.plugins) ? raw.plugins : [raw]) as Json[];
        for (const p of plugins) if (p.ipam && (p.ipam as Json).type) (p.ipam as Json).dataDir = ipamDir;
        // and the attachment records of the rule-writing plugins
        for (const p of plugins) if (p.type === 'portmap' || p.type === 'firewall') p.dataDir = join(base, p.type as string);
        writeFileSync(join(dir, file), JSON.stringify(raw, null, 2));
        const main = plugins[0]!;
        const version = (raw.cniVersion as string) || '0.1.0';
        const name = raw.name as string;
        const wantsPorts = plugins.some((p) => (p.capabilities as Json | undefined)?.portMappings);
        const env = {
          PATH: process.env.PATH,
          NETCONFPATH: dir,
          CNI_PATH: path.path,
          CNI_CACHEDIR: join(base, 'cache'),
          ...(wantsPorts ? { CAP_ARGS: JSON.stringify({ portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] }) } : {}),
        };
        const run = (cmd: string) => execa('ip', ['netns', 'exec', host!, driver.file, cmd, name, `/var/run/netns/${ctr}`], { env, extendEnv: false, reject: false });
        const leases = (): string[] => (existsSync(join(ipamDir, name)) ? readdirSync(join(ipamDir, name)).filter((f) => /^[\d:a-f.]+$/.test(f) && /[.:]/.test(f)) : []);

        const add = await run('add');
        expect({ code: add.exitCode, stderr: String(add.stderr) }).toEqual({ code: 0, stderr: '' });
        const result = JSON.parse(String(add.stdout));
        expect(result.cniVersion).toBe(version);
        const fams = expectedFamilies(main.ipam as Json | undefined);
        const addrs: string[] = compareVersions(version, '0.3.0') < 0 ? [result.ip4?.ip, result.ip6?.ip].filter(Boolean) : (result.ips ?? []).map((i: { address: string }) => i.address);
        expect(addrs.map(familyOf).sort()).toEqual([...fams].sort());
        const shown = await sh(ctr!, 'ip', '-o', 'addr', 'show', 'dev', 'eth0');
        for (const a of addrs) expect(shown).toContain(a);
        expect(leases()).toHaveLength(fams.length);

        if (main.isGateway && fams.includes(4)) {
          const gw = (result.ips ?? [{ gateway: result.ip4?.gateway }]).find((i: { gateway?: string }) => i.gateway && !i.gateway.includes(':'))?.gateway;
          expect((await execa('ip', ['netns', 'exec', ctr!, 'ping', '-c1', '-W2', gw], { reject: false })).exitCode).toBe(0);
        }
        if (typeof main.vlan === 'number' && main.vlan > 0) expect(await sh(host!, 'bridge', 'vlan', 'show')).toMatch(new RegExp(`\\b${main.vlan}\\b`));
        const v4 = addrs.filter((a) => familyOf(a) === 4).map((a) => a.split('/')[0]!);
        const rules = async (): Promise<string> => (await sh(host!, 'nft', 'list', 'ruleset')) + (await sh(host!, 'iptables-save'));
        if (main.ipMasq) {
          const r = await rules();
          expect(r.toLowerCase()).toContain('masquerade');
          for (const a of v4) expect(r).toContain(a);
        }
        if (wantsPorts) expect(await sh(host!, 'iptables-save')).toContain('18080');

        if (compareVersions(version, '0.4.0') >= 0) {
          const check = await run('check');
          const quirk = referenceCheckQuirk(plugins, path.path);
          if (quirk) expect({ code: check.exitCode, stderr: String(check.stderr) }).toEqual({ code: 1, stderr: expect.stringContaining(quirk) });
          else expect({ code: check.exitCode, stderr: String(check.stderr) }).toEqual({ code: 0, stderr: '' });
        }
        const del = await run('del');
        expect({ code: del.exitCode, stderr: String(del.stderr) }).toEqual({ code: 0, stderr: '' });
        expect(await sh(ctr!, 'ip', '-o', 'link')).not.toContain('eth0');
        expect(leases()).toEqual([]);
        expect(existsSync(join(base, 'cache', 'results')) ? readdirSync(join(base, 'cache', 'results')) : []).toEqual([]);
        // no per-container NAT/port rule left behind
        const after = await rules();
        for (const a of v4) expect(after).not.toContain(`${a} `);
        expect(after).not.toContain('18080');
        expect((await run('del')).exitCode).toBe(0);
      });
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
