// portmap through the built binary, chained after our bridge in a scratch host netns: kernel state
// (iptables-save / nft -j) per key, CHECK pass/tamper/fail, DEL twice, DEL without netns and after
// the address changed, GC, conflicts; traffic to a published port from the host netns (its bridge
// address and 127.0.0.1) and from another pod (hairpin) over IPv4 and IPv6, for both backends; the
// differential against the reference (/usr/lib/cni/portmap, iptables); netfilter processes per verb;
// the attachment records (DEL without portMappings, nftables GC, modes, symlinks), in a temp dataDir;
// DEL and GC with the record of the other backend, an unreadable IPv6 table, one container on two
// networks; concurrent ADDs of one port serialised by the network lock.
import { countNetfilterExecs, iptablesIsNft } from '../support/exec-count';
import { execa, type ResultPromise } from 'execa';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, REFERENCE_DIR, runCni, type RunResult } from '../support/cni';
import { Lab } from './bridge-harness';

jest.setTimeout(120000);

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const OURS = (): string => join(binDir(), 'portmap');
const REFERENCE = join(REFERENCE_DIR, 'portmap');
const dual = ['198.18.0.0/24', 'fd00:18::/64'];
const MAPS = [
  { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
  { hostPort: 8443, containerPort: 443, protocol: 'tcp', hostIP: '198.18.0.1' },
  { hostPort: 5353, containerPort: 53, protocol: 'udp' },
];

let lab: Lab;
let servers: ResultPromise[] = [];
let DATA: string; // the attachment records' dataDir, never /var/lib/cni
beforeEach(() => {
  DATA = mkdtempSync(join(tmpdir(), 'pm-data-'));
});
afterEach(async () => {
  for (const s of servers) s.kill('SIGKILL');
  await Promise.allSettled(servers);
  servers = [];
  await lab?.dispose();
  rmSync(DATA, { recursive: true, force: true });
});

/** The attachment records of network `net` (the `.lock` file is not one); [] when there is no directory. */
const records = (net: string): string[] => {
  try {
    return readdirSync(join(DATA, net)).filter((n) => !n.startsWith('.')).sort();
  } catch {
    return [];
  }
};

/** A lab with `pods` pods on our bridge (gateway, dual stack); returns each pod's bridge result. */
async function setup(pods: number): Promise<Json[]> {
  lab = await Lab.create(pods);
  const out: Json[] = [];
  for (const p of lab.pods) {
    const r = await lab.call('ADD', lab.conf({ isGateway: true }, dual), { pod: p });
    if (r.exitCode !== 0) throw new Error(`bridge ADD: ${r.stdout}${r.stderr}`);
    out.push(r.json);
  }
  return out;
}

const pmConf = (prev: Json, extra: Record<string, unknown> = {}, maps: unknown = MAPS) => ({
  cniVersion: '1.0.0',
  name: 'brnet',
  type: 'portmap',
  backend: 'iptables',
  dataDir: DATA,
  ...extra,
  runtimeConfig: { portMappings: maps },
  prevResult: prev,
});

const pm = (cmd: string, conf: unknown, o: { pod?: string; id?: string; binary?: string } = {}) =>
  lab.call(cmd, conf, { plugin: 'portmap', binary: o.binary ?? OURS(), pod: o.pod ?? lab.pods[0]!, id: o.id ?? 'ctr-pm1' });

/** `iptables-save -t nat` (or ip6tables) in the host netns, without the comment and counter noise. */
async function natRules(f: 4 | 6 = 4): Promise<string[]> {
  const r = await execa('ip', ['netns', 'exec', lab.host, f === 4 ? 'iptables-save' : 'ip6tables-save', '-t', 'nat']);
  return r.stdout.split('\n').filter((l) => l.startsWith('-A ') || (l.startsWith(':') && !/^:(PREROUTING|INPUT|OUTPUT|POSTROUTING) /.test(l))).map((l) => l.replace(/ \[\d+:\d+\]$/, ''));
}

async function nftRules(): Promise<Json[]> {
  const r = await execa('ip', ['netns', 'exec', lab.host, 'nft', '-j', 'list', 'ruleset']);
  return (JSON.parse(r.stdout).nftables as Json[]).filter((o) => o.rule?.table === 'cni_hostport').map((o) => o.rule);
}

const CH = 'CNI-DN-'; // every per-pod chain

/** A TCP server in `pod` on port `port` (IPv4 and IPv6) answering "pong <its port>". */
async function serve(pod: string, port: number): Promise<void> {
  const js = `require('net').createServer(s=>s.end('pong ${port}\\n')).listen(${port},'::',()=>console.log('up'))`;
  const s = execa('nsenter', [`--net=/var/run/netns/${pod}`, process.execPath, '-e', js], { reject: false });
  servers.push(s);
  await new Promise<void>((resolve, reject) => {
    s.stdout!.on('data', () => resolve());
    setTimeout(() => reject(new Error('server did not start')), 5000);
  });
}

/** Connects from netns `ns` to host:port and returns what it read, or the error. */
async function fetchFrom(ns: string, host: string, port: number): Promise<string> {
  const js = `const s=require('net').connect({host:'${host}',port:${port}});let b='';s.on('data',d=>b+=d);s.on('end',()=>{console.log(b.trim());process.exit(0)});s.on('error',e=>{console.log('error '+e.code);process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(0)},3000)`;
  const r = await execa('nsenter', [`--net=/var/run/netns/${ns}`, process.execPath, '-e', js], { reject: false });
  return r.stdout.trim();
}

/** Runs a portmap verb in the host netns with `prefix` (an strace command line) before it. */
async function runPrefixed(prefix: string[], binary: string, cmd: string, conf: unknown, pod: string): Promise<RunResult> {
  const r = await execa(prefix[0]!, [...prefix.slice(1), 'ip', 'netns', 'exec', lab.host, binary], {
    input: JSON.stringify(conf),
    env: { PATH: process.env.PATH, CNI_COMMAND: cmd, CNI_CONTAINERID: 'ctr-pm1', CNI_NETNS: `/var/run/netns/${pod}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir() },
    extendEnv: false,
    reject: false,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json: undefined };
}

/** Runs a portmap verb under strace and returns the netfilter programs it exec'd. */
async function netfilterExecs(binary: string, cmd: string, conf: unknown, pod: string): Promise<string[]> {
  const { tools, result } = await countNetfilterExecs((prefix) => runPrefixed(prefix, binary, cmd, conf, pod));
  if (result.exitCode !== 0) throw new Error(`${cmd}: ${result.stdout}${result.stderr}`);
  return tools;
}

describe.each(['iptables', 'nftables'] as const)('portmap %s backend', (backend) => {
  test('a published port answers over IPv4 and IPv6 from the host netns and from another pod (hairpin); 127.0.0.1 via route_localnet', async () => {
    const [prev1] = await setup(2);
    const [p1, p2] = lab.pods as [string, string];
    const r = await pm('ADD', pmConf(prev1, { backend }), { pod: p1 });
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual(prev1); // passed through
    await serve(p1, 80);
    await serve(p1, 443);
    for (const [from, host, port] of [
      [lab.host, '198.18.0.1', 8080],
      [lab.host, 'fd00:18::1', 8080],
      [lab.host, '127.0.0.1', 8080],
      [lab.host, '198.18.0.1', 8443],
      [p2, '198.18.0.1', 8080],
      [p2, 'fd00:18::1', 8080],
      [p2, '198.18.0.1', 8443],
    ] as const) {
      expect([from === p2 ? 'pod' : 'host', host, port, await fetchFrom(from, host, port)]).toEqual([from === p2 ? 'pod' : 'host', host, port, `pong ${port === 8443 ? 443 : 80}`]);
    }
    // hostIP 198.18.0.1 only: the same port on the IPv6 gateway is not forwarded.
    expect(await fetchFrom(lab.host, 'fd00:18::1', 8443)).not.toBe('pong 443');
    const rl = await execa('ip', ['netns', 'exec', lab.host, 'cat', '/proc/sys/net/ipv4/conf/cni0/route_localnet']);
    expect(rl.stdout.trim()).toBe('1');

    // After DEL nothing answers on the host port.
    expect((await pm('DEL', pmConf(prev1, { backend }), { pod: p1 })).exitCode).toBe(0);
    expect(await fetchFrom(lab.host, '198.18.0.1', 8080)).not.toBe('pong 80');
  });

  test('CHECK passes after ADD, fails naming the rule after tampering, passes after a repeated ADD; DEL twice and without netns leave nothing', async () => {
    const [prev] = await setup(1);
    const conf = pmConf(prev, { backend });
    expect((await pm('ADD', conf)).exitCode).toBe(0);
    expect((await pm('CHECK', conf)).exitCode).toBe(0);
    if (backend === 'iptables') {
      const dnat = (await natRules()).find((l) => l.startsWith(`-A ${CH}`) && l.includes('--dport 5353 -j DNAT'))!;
      await execa('ip', ['netns', 'exec', lab.host, 'iptables', '-t', 'nat', '-D', ...dnat.slice(3).split(' ')]);
    } else {
      const rule = (await nftRules()).find((x) => x.family === 'ip' && x.chain === 'hostports' && JSON.stringify(x.expr).includes('5353'));
      await execa('ip', ['netns', 'exec', lab.host, 'nft', 'delete', 'rule', 'ip', 'cni_hostport', 'hostports', 'handle', String(rule.handle)]);
    }
    const bad = await pm('CHECK', conf);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.json.msg).toMatch(backend === 'iptables' ? /--dport 5353 -j DNAT --to-destination 198\.18\.0\.2:53" not found in IPv4/ : /missing hostport rule for udp port 5353/);
    expect((await pm('ADD', conf)).exitCode).toBe(0);
    expect((await pm('CHECK', conf)).exitCode).toBe(0);
    // A repeated ADD left one set of rules.
    if (backend === 'iptables') expect((await natRules()).filter((l) => l.includes('-j DNAT'))).toHaveLength(3);
    else expect((await nftRules()).filter((x) => x.expr.some((e: Json) => e.dnat))).toHaveLength(5);

    expect((await pm('DEL', conf, { pod: '' })).exitCode).toBe(0); // no netns
    expect((await pm('DEL', conf)).exitCode).toBe(0);
    if (backend === 'iptables') {
      expect((await natRules(4)).filter((l) => l.includes(CH))).toEqual([]);
      expect((await natRules(6)).filter((l) => l.includes(CH))).toEqual([]);
    } else expect((await nftRules()).filter((x) => x.comment)).toEqual([]);
    const chk = await pm('CHECK', conf);
    expect(chk.exitCode).not.toBe(0);
  });

  test('DEL finds the rules after the address changed (prevResult with another IP); a conflicting ADD fails naming both containers and changes nothing', async () => {
    const [prev] = await setup(1);
    const conf = pmConf(prev, { backend });
    expect((await pm('ADD', conf)).exitCode).toBe(0);
    const before = backend === 'iptables' ? await natRules() : await nftRules();

    const clash = await pm('ADD', pmConf(prev, { backend }, [{ hostPort: 5353, containerPort: 9, protocol: 'udp' }]), { id: 'ctr-other' });
    expect(clash.exitCode).toBe(1);
    expect(clash.json.code).toBe(7);
    expect(clash.json.msg).toContain('"runtimeConfig.portMappings[0].hostPort" = 5353: host port 5353/udp is already mapped to container ctr-pm1');
    expect(clash.json.msg).toContain('container ctr-other cannot map it too');
    expect(backend === 'iptables' ? await natRules() : await nftRules()).toEqual(before);

    const moved = JSON.parse(JSON.stringify(prev));
    moved.ips = moved.ips.map((ip: Json) => ({ ...ip, address: ip.address.replace(/\.2\/24$/, '.77/24').replace(/::2\/64$/, '::77/64') }));
    expect((await pm('DEL', pmConf(moved, { backend }), { pod: '' })).exitCode).toBe(0);
    if (backend === 'iptables') expect([...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH))).toEqual([]);
    else expect((await nftRules()).filter((x) => x.comment)).toEqual([]);
  });

  test('a UDP flow seen before ADD is forwarded from its next packet on (stale conntrack entries of the mapped UDP ports are deleted)', async () => {
    const [prev1] = await setup(1);
    const p1 = lab.pods[0]!;
    // NAT in this netns first (another pod's mapping), so conntrack tracks the flow before our ADD.
    expect((await pm('ADD', pmConf(prev1, { backend }, [{ hostPort: 7000, containerPort: 7000, protocol: 'tcp' }]), { id: 'ctr-warm' })).exitCode).toBe(0);
    const echo = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send('echo '+m,r.port,r.address));s.bind(53,()=>console.log('up'))`;
    const srv = execa('nsenter', [`--net=/var/run/netns/${p1}`, process.execPath, '-e', echo], { reject: false });
    servers.push(srv);
    await new Promise<void>((res) => srv.stdout!.once('data', () => res()));
    // Always from source port 40123, so both sends are one conntrack flow.
    const send = async (): Promise<string> => {
      const js = `const s=require('dgram').createSocket('udp4');s.bind(40123,()=>{s.send('x',5353,'198.18.0.1')});s.on('message',m=>{console.log(String(m));process.exit(0)});setTimeout(()=>{console.log('none');process.exit(0)},1000)`;
      return (await execa('nsenter', [`--net=/var/run/netns/${lab.host}`, process.execPath, '-e', js], { reject: false })).stdout.trim();
    };
    expect(await send()).toBe('none'); // nothing mapped yet: the flow's entry points at the host
    expect((await pm('ADD', pmConf(prev1, { backend }))).exitCode).toBe(0);
    expect(await send()).toBe('echo x');
  });

  test('16 ADDs at once on a fresh host: every pod keeps its rules, shared rules exist once; 16 DELs at once leave no pod rule', async () => {
    const [prev] = await setup(1);
    const ids = Array.from({ length: 16 }, (_, i) => `ctr-par${i}`);
    const conf = (i: number) => pmConf(prev, { backend }, [{ hostPort: 10000 + i, containerPort: 80, protocol: 'tcp' }]);
    const adds = await Promise.all(ids.map((id, i) => pm('ADD', conf(i), { id })));
    expect(adds.map((r) => r.exitCode)).toEqual(ids.map(() => 0));
    for (const [i, id] of ids.entries()) expect([id, (await pm('CHECK', conf(i), { id })).exitCode]).toEqual([id, 0]);
    if (backend === 'iptables') {
      const rules = await natRules(4);
      for (const shared of ['-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT', '-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE'])
        expect(rules.filter((l) => l === shared)).toHaveLength(1);
      expect(rules.filter((l) => l.startsWith('-A CNI-HOSTPORT-DNAT'))).toHaveLength(16);
    } else expect((await nftRules()).filter((x) => x.family === 'ip' && x.chain === 'prerouting')).toHaveLength(2);
    const dels = await Promise.all(ids.map((id, i) => pm('DEL', conf(i), { id })));
    expect(dels.map((r) => r.exitCode)).toEqual(ids.map(() => 0));
    if (backend === 'iptables') expect([...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH))).toEqual([]);
    else expect((await nftRules()).filter((x) => x.comment)).toEqual([]);
  });

  test('netfilter processes: iptables-nft: the first ADD one write per family (shared chains), later ADDs and DEL none (read, written and deleted in-process); iptables-legacy: one read and one write per family; nftables: ADD one nft -f, DEL none (the reference execs iptables per rule)', async () => {
    const [prev] = await setup(1);
    const conf = pmConf(prev, { backend });
    const add = await netfilterExecs(OURS(), 'ADD', conf, lab.pods[0]!);
    const del = await netfilterExecs(OURS(), 'DEL', conf, lab.pods[0]!);
    if (backend === 'iptables') {
      const nft = iptablesIsNft();
      for (const f of ['iptables', 'ip6tables']) {
        for (const ex of [add, del]) {
          expect(ex.filter((p) => p === `${f}-save`).length).toBe(nft ? 0 : 1);
          expect(ex.filter((p) => p === `${f}-restore`).length).toBe(nft && ex === del ? 0 : 1);
          expect(ex.filter((p) => p === f).length).toBe(0);
        }
      }
      expect(await podRules()).toEqual([]); // DEL did remove the rules
      // The shared chains stay after DEL, so the next ADD writes only the pod's chain and rules:
      // iptables-nft in-process (no process at all), iptables-legacy one read and one write per family.
      const again = await netfilterExecs(OURS(), 'ADD', conf, lab.pods[0]!);
      for (const f of ['iptables', 'ip6tables']) for (const tool of ['save', 'restore']) expect(again.filter((p) => p === `${f}-${tool}`).length).toBe(nft ? 0 : 1);
      expect((await podRules()).length).toBeGreaterThan(0);
      expect(await netfilterExecs(OURS(), 'DEL', conf, lab.pods[0]!)).toEqual(nft ? [] : expect.any(Array));
      expect(await podRules()).toEqual([]);
      const ref = await netfilterExecs(REFERENCE, 'ADD', conf, lab.pods[0]!);
      await netfilterExecs(REFERENCE, 'DEL', conf, lab.pods[0]!);
      expect(ref.length).toBeGreaterThan(add.length * 5);
      console.log(`portmap ADD netfilter execs: ours ${add.length} (${add.join(' ')}), reference ${ref.length}`);
    } else {
      // The tables read in-process: ADD is one `nft -f -` for both families, DEL deletes over netlink.
      expect(add).toEqual(['nft']);
      expect(del).toEqual([]);
      expect(await podRules()).toEqual([]);
    }
  });

  /** The pod rules of any container in the host netns (iptables: per-pod chains; nftables: commented rules). */
  const podRules = async (): Promise<unknown[]> =>
    backend === 'iptables' ? [...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH)) : (await nftRules()).filter((x) => x.comment);

  test('DEL without portMappings (the runtime does not repeat the capability args) removes the pod\'s rules and record, without netns or prevResult; DEL twice succeeds', async () => {
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev, { backend }))).exitCode).toBe(0);
    expect(await podRules()).not.toEqual([]);
    expect(records('brnet')).toEqual(['ctr-pm1:eth0']);
    // No backend either: the record says which one wrote the rules.
    const bare = { cniVersion: '1.0.0', name: 'brnet', type: 'portmap', dataDir: DATA };
    expect((await pm('DEL', bare, { pod: '' })).exitCode).toBe(0);
    expect(await podRules()).toEqual([]);
    expect(records('brnet')).toEqual([]);
    expect((await pm('DEL', bare, { pod: '' })).exitCode).toBe(0);
  });

  test('DEL with portMappings removes the record too', async () => {
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev, { backend }))).exitCode).toBe(0);
    expect((await pm('DEL', pmConf(prev, { backend }))).exitCode).toBe(0);
    expect([await podRules(), records('brnet')]).toEqual([[], []]);
  });

  test('DEL without portMappings of a pod that published no port execs no netfilter tool', async () => {
    const [prev] = await setup(1);
    // Another pod of the network has a record: the directory exists, the lookup misses.
    expect((await pm('ADD', pmConf(prev, { backend }), { id: 'ctr-other' })).exitCode).toBe(0);
    expect((await pm('ADD', pmConf(prev, { backend }, []))).exitCode).toBe(0);
    expect(records('brnet')).toEqual(['ctr-other:eth0']);
    expect(await netfilterExecs(OURS(), 'DEL', { ...pmConf(prev, { backend }), runtimeConfig: {} }, lab.pods[0]!)).toEqual([]);
  });

  test('an ADD whose record cannot be written fails naming it and takes its rules back', async () => {
    const [prev] = await setup(1);
    mkdirSync(join(DATA, 'brnet', 'ctr-pm1:eth0'), { recursive: true }); // rename(2) cannot replace a directory
    const r = await pm('ADD', pmConf(prev, { backend }));
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toContain(join(DATA, 'brnet'));
    expect(await podRules()).toEqual([]);
  });
});

describe('portmap attachment records', () => {
  test('nftables GC removes a stale attachment\'s rules and record, keeps a valid one\'s and another network\'s (the same container ID there included)', async () => {
    const [prev1, prev2] = await setup(2);
    const [p1, p2] = lab.pods as [string, string];
    const conf = (prev: Json, name: string, port: number) => ({ ...pmConf(prev, { backend: 'nftables' }, [{ hostPort: port, containerPort: 80, protocol: 'tcp' }]), name });
    expect((await pm('ADD', conf(prev1, 'brnet', 8080), { pod: p1, id: 'ctr-a' })).exitCode).toBe(0);
    expect((await pm('ADD', conf(prev2, 'brnet', 9090), { pod: p2, id: 'ctr-b' })).exitCode).toBe(0);
    expect((await pm('ADD', conf(prev2, 'othernet', 9191), { pod: p2, id: 'ctr-a' })).exitCode).toBe(0);
    const dnats = async () =>
      (await nftRules())
        .filter((x) => x.chain === 'hostports')
        .map((x) => `${x.family} ${x.comment} ${/"right":\s*(\d+)/.exec(JSON.stringify(x.expr))![1]}`)
        .sort();
    expect(await dnats()).toEqual(['ip ctr-a 8080', 'ip ctr-a 9191', 'ip ctr-b 9090', 'ip6 ctr-a 8080', 'ip6 ctr-a 9191', 'ip6 ctr-b 9090']);
    const gc = await pm('GC', { cniVersion: '1.1.0', name: 'brnet', type: 'portmap', backend: 'nftables', dataDir: DATA, 'cni.dev/valid-attachments': [{ containerID: 'ctr-b', ifname: 'eth0' }] });
    expect(gc.exitCode).toBe(0);
    expect(await dnats()).toEqual(['ip ctr-a 9191', 'ip ctr-b 9090', 'ip6 ctr-a 9191', 'ip6 ctr-b 9090']);
    // ctr-a's masquerade rules for its brnet address went too; nothing leads to that address.
    const a1 = prev1.ips.map((ip: Json) => ip.address.split('/')[0]);
    expect(a1).toHaveLength(2);
    const left = JSON.stringify(await nftRules());
    for (const ip of a1) expect([ip, left.includes(`"${ip}"`)]).toEqual([ip, false]);
    expect([records('brnet'), records('othernet')]).toEqual([['ctr-b:eth0'], ['ctr-a:eth0']]);
  });

  test('records are 0600 in 0700 directories; a symlink planted for the network directory or a record is replaced, its target untouched', async () => {
    const [prev] = await setup(1);
    const decoy = mkdtempSync(join(tmpdir(), 'pm-decoy-'));
    try {
      symlinkSync(decoy, join(DATA, 'brnet'));
      expect((await pm('ADD', pmConf(prev))).exitCode).toBe(0);
      const dir = lstatSync(join(DATA, 'brnet'));
      expect([dir.isDirectory(), dir.mode & 0o777]).toEqual([true, 0o700]);
      expect(readdirSync(decoy)).toEqual([]);
      const rec = join(DATA, 'brnet', 'ctr-pm1:eth0');
      expect([lstatSync(rec).isFile(), lstatSync(rec).mode & 0o777]).toEqual([true, 0o600]);

      const target = join(decoy, 'target');
      writeFileSync(target, 'keep');
      rmSync(rec);
      symlinkSync(target, rec);
      expect((await pm('ADD', pmConf(prev))).exitCode).toBe(0);
      expect([lstatSync(rec).isFile(), lstatSync(rec).mode & 0o777]).toEqual([true, 0o600]);
      expect(readFileSync(target, 'utf8')).toBe('keep');
      expect(JSON.parse(readFileSync(rec, 'utf8'))).toMatchObject({ containerID: 'ctr-pm1', ifName: 'eth0', backend: 'iptables' });
    } finally {
      rmSync(decoy, { recursive: true, force: true });
    }
  });
});

describe('portmap DEL and GC: the recorded backend, unreadable families, one container on two networks', () => {
  const other = (b: 'iptables' | 'nftables') => (b === 'iptables' ? 'nftables' : 'iptables');
  /** Every per-pod rule of either backend: iptables per-pod chain lines and nftables commented rules. */
  const anyPodRules = async (): Promise<unknown[]> => [...[...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH)), ...(await nftRules()).filter((x) => x.comment)];

  /**
   * A directory for the front of PATH whose `ip6tables-save` and `ip6tables-restore` fail, the other
   * commands going to the real tools: the IPv6 iptables table cannot be read, the IPv4 one can.
   */
  function ip6Unreadable(): string {
    const dir = mkdtempSync(join(tmpdir(), 'pm-noip6-'));
    // Both IPv6 tools: with iptables-nft behind ip6tables-restore the table would be read in-process.
    for (const t of ['ip6tables-save', 'ip6tables-restore']) writeFileSync(join(dir, t), `#!/bin/sh\necho "${t}: hidden by the test" >&2\nexit 1\n`, { mode: 0o755 });
    return dir;
  }
  const withPath = (dir: string): string[] => ['env', `PATH=${dir}:${process.env.PATH}`];

  test.each(['iptables', 'nftables'] as const)('DEL with portMappings after the config switched away from %s: the recorded backend\'s rules go, then the record', async (added) => {
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev, { backend: added }))).exitCode).toBe(0);
    expect(await anyPodRules()).not.toEqual([]);
    const del = await pm('DEL', pmConf(prev, { backend: other(added) }));
    expect(del.exitCode).toBe(0);
    expect([await anyPodRules(), records('brnet')]).toEqual([[], []]);
  });

  // iptables only: the nftables backend reads its tables in-process, so a failing `nft` in PATH no
  // longer makes a family unreadable (only a kernel without IPv6 nf_tables would); the handling of an
  // unreadable family is the same code for both backends (readFamilies in main.ts).
  test.each(['iptables'] as const)('%s DEL while the IPv6 table cannot be read fails naming it and keeps the record; the retry removes the IPv6 rules and the record', async (backend) => {
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev, { backend }))).exitCode).toBe(0);
    const dir = ip6Unreadable();
    try {
      for (const conf of [pmConf(prev, { backend }), { cniVersion: '1.0.0', name: 'brnet', type: 'portmap', dataDir: DATA }]) {
        const del = await lab.call('DEL', conf, { plugin: 'portmap', binary: OURS(), pod: '', id: 'ctr-pm1', wrap: withPath(dir) });
        expect([del.exitCode, del.json?.msg]).toEqual([1, expect.stringMatching(new RegExp(`IPv6 ${backend} table unreadable .*hidden by the test.*; attachment record kept`))]);
        expect(records('brnet')).toEqual(['ctr-pm1:eth0']);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The IPv4 rules went with the first try; the IPv6 ones are still there for the retry.
    const v6left = backend === 'iptables' ? (await natRules(6)).filter((l) => l.includes(CH)) : (await nftRules()).filter((x) => x.comment && x.family === 'ip6');
    const v4left = backend === 'iptables' ? (await natRules(4)).filter((l) => l.includes(CH)) : (await nftRules()).filter((x) => x.comment && x.family === 'ip');
    expect([v4left, v6left.length > 0]).toEqual([[], true]);
    expect((await pm('DEL', pmConf(prev, { backend }), { pod: '' })).exitCode).toBe(0);
    expect([await anyPodRules(), records('brnet')]).toEqual([[], []]);
  });

  test.each(['iptables'] as const)('%s GC while the IPv6 table cannot be read keeps a stale record with an IPv6 address and reports it; the next GC removes the rest', async (backend) => {
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev, { backend }), { id: 'ctr-a' })).exitCode).toBe(0);
    const gcConf = { cniVersion: '1.1.0', name: 'brnet', type: 'portmap', backend, dataDir: DATA, 'cni.dev/valid-attachments': [] };
    const dir = ip6Unreadable();
    try {
      const gc = await lab.call('GC', gcConf, { plugin: 'portmap', binary: OURS(), pod: '', id: 'ctr-gc', wrap: withPath(dir) });
      expect([gc.exitCode, gc.json?.msg]).toEqual([1, expect.stringMatching(new RegExp(`ctr-a:eth0: kept: IPv6 ${backend} table unreadable .*hidden by the test`))]);
      expect(records('brnet')).toEqual(['ctr-a:eth0']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await pm('GC', gcConf, { pod: '', id: 'ctr-gc' })).exitCode).toBe(0);
    expect([await anyPodRules(), records('brnet')]).toEqual([[], []]);
  });

  test.each(['iptables', 'nftables'] as const)('%s: 8 ADDs at once mapping the same port on one network (the network lock serialises the conflict check): one succeeds, 7 fail with code 7', async (backend) => {
    const [prev] = await setup(1);
    const ids = Array.from({ length: 8 }, (_, i) => `ctr-race${i}`);
    const conf = pmConf(prev, { backend }, [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
    const adds = await Promise.all(ids.map((id) => pm('ADD', conf, { id })));
    expect(adds.filter((r) => r.exitCode === 0)).toHaveLength(1);
    expect(adds.filter((r) => r.exitCode !== 0).map((r) => r.json?.code)).toEqual(Array(7).fill(7));
    expect(records('brnet')).toHaveLength(1);
  });

  test('nftables DEL with portMappings of a container on two portmap networks removes only this network\'s rules; the other network\'s DNATs and record stay', async () => {
    const [prev1, prev2] = await setup(2);
    const conf = (prev: Json, name: string, port: number) => ({ ...pmConf(prev, { backend: 'nftables' }, [{ hostPort: port, containerPort: 80, protocol: 'tcp' }]), name });
    expect((await pm('ADD', conf(prev1, 'brnet', 8080), { pod: lab.pods[0]!, id: 'ctr-a' })).exitCode).toBe(0);
    expect((await pm('ADD', conf(prev2, 'othernet', 9191), { pod: lab.pods[1]!, id: 'ctr-a' })).exitCode).toBe(0);
    expect((await pm('DEL', conf(prev1, 'brnet', 8080), { pod: '', id: 'ctr-a' })).exitCode).toBe(0);
    const ports = (await nftRules()).filter((x) => x.chain === 'hostports').map((x) => `${x.family} ${x.comment} ${/"right":\s*(\d+)/.exec(JSON.stringify(x.expr))![1]}`);
    expect(ports.sort()).toEqual(['ip ctr-a 9191', 'ip6 ctr-a 9191']);
    // othernet's masquerade rules (to its addresses) stay too; nothing leads to the brnet address any more.
    const left = JSON.stringify(await nftRules());
    for (const ip of prev1.ips.map((i: Json) => i.address.split('/')[0])) expect([ip, left.includes(`"${ip}"`)]).toEqual([ip, false]);
    for (const ip of prev2.ips.map((i: Json) => i.address.split('/')[0])) expect([ip, left.includes(`"${ip}"`)]).toEqual([ip, true]);
    expect([records('brnet'), records('othernet')]).toEqual([[], ['ctr-a:eth0']]);
  });
});

describe('portmap iptables: the reference\'s rules and a node switched between theirs and ours', () => {
  const normalise = (rules: string[]) => [...rules].sort();

  test('DEL without portMappings and without a record (ADDed by the reference, or the record under another dataDir as before the default moved): with iptables-nft the pod\'s chain is found by name and removed, with no process; another pod\'s rules stay', async () => {
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev), { id: 'ctr-other' })).exitCode).toBe(0);
    const other = [...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH));
    const nft = iptablesIsNft();
    for (const [who, binary] of [['ours', OURS()], ['reference', REFERENCE]] as const) {
      expect({ who, exit: (await pm('ADD', pmConf(prev, {}, [{ hostPort: 8090, containerPort: 80, protocol: 'tcp' }]), { binary })).exitCode }).toEqual({ who, exit: 0 });
      const added = [...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH));
      expect(added.length).toBeGreaterThan(other.length);
      const elsewhere = { ...pmConf(prev), dataDir: join(DATA, 'moved'), runtimeConfig: {} };
      // iptables-legacy: only an iptables-save per family could tell, and DEL does not look (as the reference).
      expect({ who, execs: await netfilterExecs(OURS(), 'DEL', elsewhere, lab.pods[0]!) }).toEqual({ who, execs: [] });
      expect({ who, left: [...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH)) }).toEqual({ who, left: nft ? other : added });
      if (!nft) expect((await pm('DEL', pmConf(prev, {}, [{ hostPort: 8090, containerPort: 80, protocol: 'tcp' }]))).exitCode).toBe(0);
      expect((await pm('DEL', elsewhere)).exitCode).toBe(0); // again: nothing of it left, still success
    }
  });

  test('with iptables-nft a dual-stack DEL removes both families\' rules in one nf_tables batch, all or nothing: an IPv6 verdict map jumping to the pod\'s chain (which iptables does not list) keeps it busy, so the DEL fails naming both tables and leaves the IPv4 rules too; once the map goes, one batch removes both', async () => {
    if (!iptablesIsNft()) return; // iptables-legacy: one iptables-restore per family, as the reference
    const [prev] = await setup(1);
    const conf = pmConf(prev);
    expect((await pm('ADD', conf)).exitCode).toBe(0);
    const v6chain = (await natRules(6)).find((l) => l.startsWith(`:${CH}`))!.slice(1).split(' ')[0]!;
    const nft = (...a: string[]) => execa('ip', ['netns', 'exec', lab.host, 'nft', ...a]);
    await nft('add', 'map', 'ip6', 'nat', 'foreign', '{ type ipv6_addr : verdict; }');
    await nft('add', 'element', 'ip6', 'nat', 'foreign', `{ fd00::99 : jump ${v6chain} }`);
    const before = [await natRules(4), await natRules(6)];
    expect(before[0]!.filter((l) => l.includes(CH)).length).toBeGreaterThan(0);
    const refused = await pm('DEL', conf);
    expect(refused.exitCode).toBe(1);
    expect(refused.json.msg).toMatch(/^removing port mappings of brnet\/ctr-pm1: deleting from the IPv4 and IPv6 nat tables: deleting nf_tables rules ip nat, ip6 nat: /);
    expect([await natRules(4), await natRules(6)]).toEqual(before);
    await nft('delete', 'map', 'ip6', 'nat', 'foreign');
    const del = await countNetfilterExecs((prefix) => runPrefixed(prefix, OURS(), 'DEL', conf, lab.pods[0]!));
    expect({ exit: del.result.exitCode, tools: del.tools, batches: del.batches }).toEqual({ exit: 0, tools: [], batches: 1 });
    expect([...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH))).toEqual([]);
  });

  test('with 12 other pods\' rules in the table: a port in another pod\'s entry rule (a list, a multiport range, a goto) is a conflict naming that pod and changes nothing; a repeated ADD replaces a jump to the pod\'s chain from a built-in chain, and DEL removes one from any chain (the rebuild on the whole table); the other pods\' rules stay', async () => {
    const [prev] = await setup(1);
    const ipt = (...a: string[]) => execa('ip', ['netns', 'exec', lab.host, 'iptables', '-t', 'nat', ...a]);
    for (let i = 0; i < 12; i++) {
      const add = await pm('ADD', pmConf(prev, {}, [{ hostPort: 9000 + i, containerPort: 80, protocol: 'tcp' }, { hostPort: 9100 + i, containerPort: 81, protocol: 'tcp' }]), { id: `ctr-o${i}` });
      expect({ i, exit: add.exitCode }).toEqual({ i, exit: 0 });
    }
    // A pod's chain entered through a port range (the plugins list ports one by one; iptables users may not).
    const ranged = 'CNI-DN-0123456789abcdef01234';
    await ipt('-N', ranged);
    await ipt('-A', ranged, '-p', 'tcp', '-m', 'tcp', '--dport', '9550', '-j', 'DNAT', '--to-destination', '198.18.0.77:80');
    await ipt('-A', 'CNI-HOSTPORT-DNAT', '-p', 'tcp', '-m', 'comment', '--comment', 'dnat name: "brnet" id: "ctr-range"', '-m', 'multiport', '--dports', '9500:9600', '-j', ranged);
    // And one entered with a goto (-g), which the plugins never write.
    const gone = 'CNI-DN-abcdef0123456789abcde';
    await ipt('-N', gone);
    await ipt('-A', gone, '-p', 'tcp', '-m', 'tcp', '--dport', '9650', '-j', 'DNAT', '--to-destination', '198.18.0.78:80');
    await ipt('-A', 'CNI-HOSTPORT-DNAT', '-p', 'tcp', '-m', 'comment', '--comment', 'dnat name: "brnet" id: "ctr-goto"', '-m', 'multiport', '--dports', '9650', '-g', gone);
    await ipt('-N', 'FOREIGN'); // someone else's chain, for a jump below
    const before = [await natRules(4), await natRules(6)];

    for (const [port, owner] of [[9107, 'ctr-o7'], [9550, 'ctr-range'], [9650, 'ctr-goto']] as const) {
      const refused = await pm('ADD', pmConf(prev, {}, [{ hostPort: port, containerPort: 80, protocol: 'tcp' }]), { id: 'ctr-new' });
      expect({ port, exit: refused.exitCode, code: refused.json?.code }).toEqual({ port, exit: 1, code: 7 });
      expect(refused.json.msg).toContain(`host port ${port}/tcp is already mapped to container ${owner} (network brnet); container ctr-new cannot map it too`);
      expect([await natRules(4), await natRules(6)]).toEqual(before);
    }

    const conf = pmConf(prev, {}, [{ hostPort: 9700, containerPort: 80, protocol: 'tcp' }]);
    expect((await pm('ADD', conf, { id: 'ctr-new' })).exitCode).toBe(0);
    const added = (await natRules(4)).filter((l) => !before[0]!.includes(l));
    const chain = added.find((l) => l.startsWith(`:${CH}`))!.slice(1).split(' ')[0]!;
    expect(added.filter((l) => l.startsWith(`-A ${chain} `)).length).toBeGreaterThan(0);
    for (const l of before[0]!) expect(await natRules(4)).toContain(l); // nothing of the others changed
    // A repeated ADD replaces the jumps to the pod's chain in the built-in chains too, as a whole-table read did.
    await ipt('-A', 'OUTPUT', '-p', 'tcp', '--dport', '1', '-j', chain);
    expect((await pm('ADD', conf, { id: 'ctr-new' })).exitCode).toBe(0);
    expect((await natRules(4)).filter((l) => l.startsWith('-A OUTPUT ') && l.endsWith(` -j ${chain}`))).toEqual([]);
    // A jump from a chain no verb reads keeps the pod's chain busy: DEL's rebuild on the whole table finds it.
    await ipt('-A', 'FOREIGN', '-j', chain);
    expect((await pm('DEL', conf, { id: 'ctr-new' })).exitCode).toBe(0);
    expect([await natRules(4), await natRules(6)]).toEqual(before);
  });

  test('with iptables-nft ADD and DEL read only the chains they act on: rules elsewhere in the nat table that the in-process reader cannot decode (kube-proxy\'s -m statistic) cost no process, while CHECK, which reads the whole table, lists it with iptables-save', async () => {
    if (!iptablesIsNft()) return; // iptables-legacy: one listing per family, whatever is in the table
    const [prev] = await setup(1);
    expect((await pm('ADD', pmConf(prev, {}, [{ hostPort: 9001, containerPort: 80, protocol: 'tcp' }]), { id: 'ctr-first' })).exitCode).toBe(0); // the node's first ADD makes the shared chains
    for (const t of ['iptables', 'ip6tables']) {
      await execa('ip', ['netns', 'exec', lab.host, t, '-t', 'nat', '-N', 'KUBE-SVC-TEST']);
      for (const chain of ['KUBE-SVC-TEST', 'POSTROUTING']) await execa('ip', ['netns', 'exec', lab.host, t, '-t', 'nat', '-A', chain, '-m', 'statistic', '--mode', 'random', '--probability', '0.5', '-j', 'RETURN']);
    }
    const before = [await natRules(4), await natRules(6)];
    const conf = pmConf(prev);
    expect(await netfilterExecs(OURS(), 'ADD', conf, lab.pods[0]!)).toEqual([]);
    expect(await netfilterExecs(OURS(), 'CHECK', conf, lab.pods[0]!)).toEqual(['iptables-save', 'ip6tables-save']);
    expect(await netfilterExecs(OURS(), 'DEL', conf, lab.pods[0]!)).toEqual([]);
    expect([await natRules(4), await natRules(6)]).toEqual(before);
  });

  test('every key: ours writes what the reference writes (IPv4, IPv6); ADD with one and DEL with the other leaves no rule, both ways', async () => {
    const [prev] = await setup(1);
    for (const extra of [
      {},
      { snat: false },
      { markMasqBit: 5 },
      { externalSetMarkChain: 'KUBE-MARK-MASQ' },
      // (masqAll is newer than Debian's 1.1.1, which ignores it; the unit test holds upstream's rule.)
      { conditionsV4: ['!', '-s', '198.19.0.0/16'], conditionsV6: ['!', '-s', 'fd00:19::/64'] },
    ]) {
      if (extra.externalSetMarkChain) for (const t of ['iptables', 'ip6tables']) await execa('ip', ['netns', 'exec', lab.host, t, '-t', 'nat', '-N', 'KUBE-MARK-MASQ'], { reject: false });
      const conf = pmConf(prev, extra);
      expect((await pm('ADD', conf)).exitCode).toBe(0);
      const ours = [normalise(await natRules(4)), normalise(await natRules(6))];
      expect((await pm('DEL', conf, { binary: REFERENCE })).exitCode).toBe(0);
      expect([...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH))).toEqual([]);

      const ref = await pm('ADD', conf, { binary: REFERENCE });
      expect(ref.exitCode).toBe(0);
      expect([JSON.stringify(extra), normalise(await natRules(4)), normalise(await natRules(6))]).toEqual([JSON.stringify(extra), ...ours]);
      expect((await pm('DEL', conf)).exitCode).toBe(0);
      expect([...(await natRules(4)), ...(await natRules(6))].filter((l) => l.includes(CH))).toEqual([]);
      // Shared chains stay (both plugins leave them); start the next key from an empty table.
      for (const t of ['iptables', 'ip6tables']) {
        await execa('ip', ['netns', 'exec', lab.host, t, '-t', 'nat', '-F']);
        await execa('ip', ['netns', 'exec', lab.host, t, '-t', 'nat', '-X']);
      }
    }
  });

  test('an ADD whose IPv6 transaction fails takes back its IPv4 rules and route_localnet: nothing is left', async () => {
    const [prev] = await setup(1);
    // The external mark chain exists for IPv4 only, so ip6tables-restore refuses the jump to it.
    await execa('ip', ['netns', 'exec', lab.host, 'iptables', '-t', 'nat', '-N', 'KUBE-MARK-MASQ']);
    const before = [await natRules(4), await natRules(6)];
    const rl = () => execa('ip', ['netns', 'exec', lab.host, 'cat', '/proc/sys/net/ipv4/conf/cni0/route_localnet']).then((r) => r.stdout.trim());
    expect(await rl()).toBe('0');
    const r = await pm('ADD', pmConf(prev, { externalSetMarkChain: 'KUBE-MARK-MASQ' }));
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toMatch(/^setting up IPv6 port mappings for brnet\/ctr-pm1: ip6tables-restore -w --noflush failed/);
    expect([await natRules(4), await natRules(6)]).toEqual(before);
    expect(await rl()).toBe('0');
  });

  test('GC removes exactly the chains of this network\'s containers that are not valid', async () => {
    const [prev1, prev2] = await setup(2);
    const [p1, p2] = lab.pods as [string, string];
    expect((await pm('ADD', pmConf(prev1, {}, [MAPS[0]]), { pod: p1, id: 'ctr-a' })).exitCode).toBe(0);
    expect((await pm('ADD', pmConf(prev2, {}, [{ hostPort: 9090, containerPort: 80, protocol: 'tcp' }]), { pod: p2, id: 'ctr-b' })).exitCode).toBe(0);
    const other = { ...pmConf(prev2, {}, [{ hostPort: 9191, containerPort: 80, protocol: 'tcp' }]), name: 'othernet' };
    expect((await pm('ADD', other, { pod: p2, id: 'ctr-c' })).exitCode).toBe(0);
    const gc = await pm('GC', { cniVersion: '1.1.0', name: 'brnet', type: 'portmap', dataDir: DATA, 'cni.dev/valid-attachments': [{ containerID: 'ctr-b', ifname: 'eth0' }] });
    expect(gc.exitCode).toBe(0);
    const left = (await natRules()).filter((l) => l.startsWith('-A CNI-HOSTPORT-DNAT'));
    expect(left.map((l) => /id: \\"([^\\]+)/.exec(l)![1]).sort()).toEqual(['ctr-b', 'ctr-c']);
    expect((await natRules()).some((l) => l.includes('--dport 8080'))).toBe(false);
  });

  test('STATUS succeeds with iptables here and is code 50 when the backend tool cannot run', async () => {
    await setup(0);
    const conf = { cniVersion: '1.1.0', name: 'brnet', type: 'portmap', backend: 'iptables' };
    expect((await pm('STATUS', conf, { pod: '' })).exitCode).toBe(0);
    // iptables-save made unrunnable in a private mount namespace only (the machine's file is untouched).
    const real = (await execa('readlink', ['-f', '/usr/sbin/iptables-save'])).stdout;
    const script = `mount --make-rprivate / && mount --bind /dev/null ${real} && exec ip netns exec "$0" "$1"`;
    const r = await execa('unshare', ['-m', 'sh', '-c', script, lab.host, OURS()], {
      input: JSON.stringify(conf),
      env: { PATH: process.env.PATH, CNI_COMMAND: 'STATUS', CNI_PATH: binDir() },
      extendEnv: false,
      reject: false,
    });
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 50, msg: expect.stringMatching(/^iptables is not usable: /) });
  });
});

describe('portmap bad input through the binary: one CNI error naming the field, no engine text, nothing run', () => {
  const base = { cniVersion: '1.0.0', name: 'n', type: 'portmap' };
  const one = [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }];
  test.each([
    [{ ...base, runtimeConfig: { portMappings: one } }, 999, 'must be called as chained plugin'],
    [{ ...base, runtimeConfig: { portMappings: 'x' }, prevResult: { cniVersion: '1.0.0' } }, 7, 'invalid config: field "runtimeConfig.portMappings" = "x": expected array'],
    [{ ...base, runtimeConfig: { portMappings: [null] }, prevResult: { cniVersion: '1.0.0' } }, 7, 'invalid config: field "runtimeConfig.portMappings[0]" = null: expected object'],
    [{ ...base, conditionsV4: 'x', prevResult: { cniVersion: '1.0.0' } }, 7, 'invalid config: field "conditionsV4" = "x": expected array'],
    [{ ...base, markMasqBit: 1.5 }, 7, 'invalid config: field "markMasqBit" = 1.5: expected int'],
    [{ ...base, runtimeConfig: { portMappings: one }, prevResult: { cniVersion: '1.0.0', ips: [{ address: 'bogus' }] } }, 6, 'failed to parse result: ips[0].address must be an address with a prefix length, got "bogus"'],
  ])('%j → code %i', async (conf, code, msg) => {
    const r = await runCni('portmap', { command: 'ADD', config: conf, env: { CNI_CONTAINERID: 'c', CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0', CNI_PATH: binDir() } });
    expect(r.exitCode).toBe(1);
    expect(r.json).toEqual({ cniVersion: '1.0.0', code, msg });
  });
});
