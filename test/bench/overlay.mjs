// The overlay's figures (issue 13, Performance), in rows of bench.mjs's table where "reference" is
// the thing the overlay is compared with:
//   overlay-add-del          pod ADD+DEL on an overlay network vs the same pod on a plain bridge
//                            network (same bridge + host-local underneath; target ratio ≤ 1.1)
//   overlay-routable-3       ms from a new host's agent start until both other hosts route its
//                            subnet, vs the 1000 ms target
//   overlay-routable-16      the same with 15 hosts already there, vs the 3-host figure (growth)
//   overlay-tcp-mbps         TCP throughput pod→pod across two hosts over VXLAN vs the same pods
//                            routed across the underlay without VXLAN
// Hosts are netns on a scratch switch netns (198.19.0.0/24), etcd runs in its own netns; everything
// started is killed and every netns deleted at the end, also on failure.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const id = randomBytes(3).toString('hex');
const PREFIX = `/cnikit-bench-${id}/`;
const ETCD_IP = '198.19.0.250';
const ETCD = `http://${ETCD_IP}:2379`;
const VNI = 77;
const NET = 'benchnet';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const run = (cmd, args, o = {}) => execFileSync(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...o }).toString();
const tryRun = (cmd, args, o) => {
  try {
    return run(cmd, args, o);
  } catch {
    return null;
  }
};
const inNs = (ns, argv, o) => run('nsenter', [`--net=/run/netns/${ns}`, ...argv], o);

class Lab {
  constructor(bin) {
    this.bin = bin;
    this.tmp = mkdtempSync(join(tmpdir(), 'cnikit-bench-overlay-'));
    this.netns = [];
    this.procs = [];
    this.hosts = [];
    this.sw = `obsw-${id}`;
    this.addNs(this.sw);
    run('ip', ['-n', this.sw, 'link', 'add', 'sw0', 'type', 'bridge']);
    run('ip', ['-n', this.sw, 'link', 'set', 'sw0', 'up']);
  }
  addNs(n) {
    run('ip', ['netns', 'add', n]);
    this.netns.push(n);
    run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  plug(ns, port, ip) {
    run('ip', ['-n', this.sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    run('ip', ['-n', this.sw, 'link', 'set', port, 'master', 'sw0', 'up']);
    run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  spawn(ns, argv) {
    const p = spawn('nsenter', [`--net=/run/netns/${ns}`, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    p.out = '';
    p.stderr.on('data', (d) => (p.out += d));
    this.procs.push(p);
    return p;
  }
  async startEtcd() {
    const ns = `obe-${id}`;
    this.addNs(ns);
    this.plug(ns, 'etcd', ETCD_IP);
    this.etcdNs = ns;
    this.spawn(ns, ['etcd', '--name', 'b', '--data-dir', join(this.tmp, 'etcd'), '--listen-client-urls', ETCD, '--advertise-client-urls', ETCD,
      '--listen-peer-urls', `http://${ETCD_IP}:2380`, '--initial-advertise-peer-urls', `http://${ETCD_IP}:2380`, '--initial-cluster', `b=http://${ETCD_IP}:2380`, '--log-level', 'warn']);
    for (let i = 0; i < 100 && this.etcdctl('endpoint', 'health') === null; i++) await sleep(200);
    this.etcdctl('put', `${PREFIX}networks/${NET}`, JSON.stringify({ subnet: '198.18.128.0/17', hostPrefix: 24, vni: VNI }));
  }
  etcdctl(...args) {
    return tryRun('nsenter', [`--net=/run/netns/${this.etcdNs}`, 'etcdctl', `--endpoints=${ETCD}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
  }
  addHost() {
    const i = this.hosts.length + 1;
    const h = { i, ns: `obh${i}-${id}`, ip: `198.19.0.${10 + i}`, state: join(this.tmp, `h${i}`) };
    this.addNs(h.ns);
    this.plug(h.ns, `h${i}`, h.ip);
    this.hosts.push(h);
    return h;
  }
  startAgent(h) {
    h.agent = this.spawn(h.ns, [join(this.bin, 'cnikit'), 'overlay-agent', '--etcd', ETCD, '--underlay-ip', h.ip, '--name', `h${h.i}`, '--state-dir', h.state, '--lease-ttl', '5', '--etcd-prefix', PREFIX]);
  }
  /** The subnets host h routes through its vxlan device. */
  routes(h) {
    return (tryRun('ip', ['-n', h.ns, 'route', 'show', 'dev', `ovl.${VNI}`]) ?? '').split('\n').filter(Boolean).map((l) => l.split(' ')[0]);
  }
  lease(h) {
    return tryRun('cat', [join(h.state, `${NET}.json`)]);
  }
  close() {
    for (const p of this.procs) p.kill('SIGKILL');
    for (const n of this.netns.reverse()) tryRun('ip', ['netns', 'del', n]);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

async function until(what, fn, timeoutMs = 20000, everyMs = 5) {
  const t0 = performance.now();
  for (;;) {
    if (fn()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** ms until every host in `others` routes the subnet of a new host whose agent starts now. */
async function timeToRoutable(lab, others) {
  const h = lab.addHost();
  const t0 = performance.now();
  lab.startAgent(h);
  await until(`host ${h.i}'s lease`, () => lab.lease(h) !== null, 20000, 2);
  const subnet = JSON.parse(lab.lease(h)).hostSubnet;
  await until(`the other hosts to route ${subnet}`, () => others.every((o) => lab.routes(o).includes(subnet)), 20000, 2);
  return { host: h, ms: performance.now() - t0, subnet };
}

/** A timed exec of plugin `name` in host h for pod netns `pod`. */
function cniTimed(lab, h, name, command, pod, conf) {
  const t0 = performance.now();
  inNs(h.ns, [join(lab.bin, name)], {
    input: JSON.stringify(conf),
    env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: `c-${pod}`, CNI_NETNS: `/run/netns/${pod}`, CNI_IFNAME: 'eth0', CNI_PATH: lab.bin },
  });
  return performance.now() - t0;
}

/** MiB/s of a TCP stream from netns `from` to `toIp` (listener in `to`), `mib` MiB with node on both ends. */
async function tcpMbps(lab, from, to, toIp, mib = 256) {
  const server = lab.spawn(to, [process.execPath, '-e', `require('net').createServer((s)=>s.on('data',()=>{}).on('end',()=>s.end())).listen(5201,'${toIp}',()=>console.error('up'))`]);
  await until('the TCP listener', () => server.out.includes('up'), 10000, 10);
  const out = inNs(from, [process.execPath, '-e', `
    const s=require('net').connect(5201,'${toIp}');const b=Buffer.alloc(1<<20);let n=${mib};const t0=process.hrtime.bigint();
    const w=()=>{while(n>0){n--;if(!s.write(b))return s.once('drain',w);}s.end();};
    s.on('connect',w);s.on('close',()=>{const ms=Number(process.hrtime.bigint()-t0)/1e6;console.log((${mib}*8*1.048576/(ms/1000)).toFixed(0));});s.resume();`]);
  server.kill('SIGKILL');
  return Number(out.trim());
}

/**
 * The overlay rows for bench.mjs (see the module comment). `ours` is the directory of the built
 * links; `rounds` as bench.mjs's. Returns rows in bench.mjs's result shape.
 */
export async function overlayCases({ ours, rounds, log }) {
  const results = [];
  const lab = new Lab(ours);
  try {
    await lab.startEtcd();
    const [h1, h2] = [lab.addHost(), lab.addHost()];
    for (const h of [h1, h2]) lab.startAgent(h);
    await until('two leases', () => lab.lease(h1) !== null && lab.lease(h2) !== null);

    // Pod ADD+DEL: overlay vs the bridge config it delegates to (the same bridge and subnet).
    const lease = JSON.parse(lab.lease(h1));
    const overlay = { cniVersion: '1.1.0', name: NET, type: 'overlay', network: NET, stateDir: h1.state };
    const bridge = { cniVersion: '1.1.0', name: 'benchbr', type: 'bridge', bridge: 'benchbr0', isGateway: true, isDefaultGateway: true, mtu: lease.mtu, ipam: { type: 'host-local', subnet: '198.18.1.0/24', dataDir: join(lab.tmp, 'br-ipam') } };
    const t = { overlay: [], bridge: [] };
    lab.addNs(`obp-${id}`);
    const pod = `obp-${id}`;
    for (let i = 0; i < rounds * 2; i++)
      for (const [k, conf, plugin] of i % 2 ? [['bridge', bridge, 'bridge'], ['overlay', overlay, 'overlay']] : [['overlay', overlay, 'overlay'], ['bridge', bridge, 'bridge']])
        t[k].push(cniTimed(lab, h1, plugin, 'ADD', pod, conf) + cniTimed(lab, h1, plugin, 'DEL', pod, conf));
    const r1 = { name: 'overlay-add-del (vs bridge)', ours_ms: round(median(t.overlay)), reference_ms: round(median(t.bridge)) };
    results.push({ ...r1, ratio: round(r1.ours_ms / r1.reference_ms, 2) });
    log(`overlay-add-del: overlay ${r1.ours_ms} ms, plain bridge ${r1.reference_ms} ms per pod ADD+DEL`);

    // Time to routable: the third host of three, then the 16th of sixteen.
    const three = [];
    for (let i = 0; i < 3; i++) {
      const { host, ms, subnet } = await timeToRoutable(lab, [h1, h2]);
      three.push(ms);
      // The host leaves at once: its agent killed, its key deleted (not waiting for the TTL).
      host.agent.kill('SIGKILL');
      lab.etcdctl('del', `${PREFIX}subnets/${NET}/${subnet.replace('/', '-')}`);
      await until('the host to be gone', () => !lab.routes(h1).includes(subnet) && !lab.routes(h2).includes(subnet), 20000, 10);
    }
    const m3 = round(median(three), 0);
    results.push({ name: 'overlay-routable-3 (ms, vs 1000 ms target)', unit: 'count', ours_count: m3, reference_count: 1000, ratio: round(m3 / 1000, 2) });
    log(`overlay-routable-3: ${three.map((x) => round(x, 0)).join(', ')} ms`);
    const others = [h1, h2];
    while (others.length < 15) {
      const h = lab.addHost();
      lab.startAgent(h);
      others.push(h);
    }
    await until('15 hosts meshed', () => others.every((o) => lab.routes(o).length === 14), 60000, 50);
    const { ms: m16 } = await timeToRoutable(lab, others);
    results.push({ name: 'overlay-routable-16 (ms, vs 3 hosts)', unit: 'count', ours_count: round(m16, 0), reference_count: m3, ratio: round(m16 / m3, 2) });
    log(`overlay-routable-16: ${round(m16, 0)} ms`);

    // TCP across hosts: pods on h1 and h2 over VXLAN, then the same pods routed over the underlay.
    const [pa, pb] = [`obta-${id}`, `obtb-${id}`];
    lab.addNs(pa);
    lab.addNs(pb);
    const ipOf = (h, p) => JSON.parse(inNs(h.ns, [join(ours, 'overlay')], { input: JSON.stringify({ ...overlay, stateDir: h.state }), env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: `t-${p}`, CNI_NETNS: `/run/netns/${p}`, CNI_IFNAME: 'eth0', CNI_PATH: ours } })).ips[0].address.split('/')[0];
    const [ia, ib] = [ipOf(h1, pa), ipOf(h2, pb)];
    // Alternating rounds: VXLAN (the agent's routes), then the same pods routed over the underlay
    // without encapsulation (each host routes the other's pod subnet via the other's underlay address).
    const [sa, sb] = [JSON.parse(lab.lease(h1)).hostSubnet, JSON.parse(lab.lease(h2)).hostSubnet];
    for (const h of lab.hosts) h.agent?.kill('SIGKILL'); // from here on the routes are the bench's
    await sleep(200);
    const vtep = (subnet) => subnet.replace(/\/\d+$/, '');
    const via = (mode) => {
      for (const [h, other, subnet] of [[h1, h2, sb], [h2, h1, sa]])
        run('ip', ['-n', h.ns, 'route', 'replace', subnet, ...(mode === 'vxlan' ? ['via', vtep(subnet), 'dev', `ovl.${VNI}`, 'onlink'] : ['via', other.ip, 'dev', 'eth0'])]);
    };
    const vx = [];
    const plain = [];
    for (let i = 0; i < Math.max(3, rounds >> 1); i++)
      for (const mode of i % 2 ? ['plain', 'vxlan'] : ['vxlan', 'plain']) {
        via(mode);
        (mode === 'vxlan' ? vx : plain).push(await tcpMbps(lab, pa, pb, ib));
      }
    const [mv, mp] = [median(vx), median(plain)];
    results.push({ name: 'overlay-tcp-mbps (vs no VXLAN)', unit: 'count', ours_count: mv, reference_count: mp, ratio: round(mv / mp, 2) });
    log(`overlay-tcp-mbps: VXLAN ${vx.join(', ')} Mbit/s; routed underlay ${plain.join(', ')} Mbit/s (pods ${ia} -> ${ib})`);
  } catch (e) {
    results.push({ name: 'overlay', failed: e.message });
    log(`overlay: FAILED ${e.message}`);
  } finally {
    lab.close();
  }
  return results;
}
