// Bench group `docker-plugin`: one Docker endpoint's life through `cnm docker-plugin` at the protocol
// level (no dockerd): CreateEndpoint + Join + Leave + DeleteEndpoint POSTed on the plugin's socket,
// as dockerd sends them for `docker run --rm` (captured bodies, shared/research/cnm-shim.md §2.1).
// The same daemon runs the same chain (bridge + host-local + portmap, cniVersion 1.0.0, `-o
// cni.network`) three ways: our plugins in-process (the default), our plugins exec'd
// (--exec-plugins), and the Go reference plugins from /usr/lib/cni (exec'd). Issue 11's target:
// ours in-process ≤ 0.5× the reference. Everything runs in the bench's scratch host netns; the
// daemons' scratch netns come and go under /run/netns.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

const post = (socketPath, method, body) =>
  new Promise((resolve, reject) => {
    const data = `${JSON.stringify(body)}\n`;
    const req = request({ socketPath, path: `/${method}`, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`${method}: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(data);
  });

/**
 * Runs the group (cases docker-endpoint, docker-endpoint-ours-execd, docker-endpoint-chain); `ctx` is bench.mjs's: OURS, REF, ROUNDS, host (the scratch host netns name), work
 * (a temp dir removed by bench.mjs), record(name, oursMs[], refMs[], extra), skip(name, why), log.
 */
export default async function dockerPluginBench(ctx) {
  const { OURS, REF, ROUNDS, host, work, record, skip, log } = ctx;
  const cnikit = join(OURS, 'cnikit');
  if (!existsSync(cnikit) || !['bridge', 'host-local', 'portmap'].every((p) => existsSync(join(OURS, p)) && existsSync(join(REF, p)))) {
    for (const name of ['docker-endpoint', 'docker-endpoint-ours-execd', 'docker-endpoint-chain']) skip(name, 'cnikit or a chain plugin is missing');
    return;
  }
  const sides = { ours: { cniPath: OURS, net: 0 }, execd: { cniPath: OURS, net: 1, exec: true }, reference: { cniPath: REF, net: 2 } };
  const daemons = [];
  try {
    for (const [s, side] of Object.entries(sides)) {
      const d = join(work, `docker-plugin-${s}`);
      mkdirSync(join(d, 'conf'), { recursive: true });
      const subnet = `198.18.${200 + side.net * 4}`;
      side.subnet = subnet;
      writeFileSync(
        join(d, 'conf', 'bench.conflist'),
        JSON.stringify({
          cniVersion: '1.0.0',
          name: `dpbench${side.net}`,
          plugins: [
            { type: 'bridge', bridge: `dpb${side.net}`, isGateway: true, isDefaultGateway: true, ipMasq: true, capabilities: { ips: true, mac: true }, ipam: { type: 'host-local', dataDir: join(d, 'ipam'), ranges: [[{ subnet: `${subnet}.0/22` }]] } },
            { type: 'portmap', capabilities: { portMappings: true }, snat: true },
          ],
        }),
      );
      const name = `dpbench-${s}-${randomBytes(3).toString('hex')}`;
      side.sock = join(d, `${name}.sock`);
      const args = ['--net=' + `/run/netns/${host}`, cnikit, 'cnm', 'docker-plugin', '--name', name, '--socket-dir', d, '--state-dir', join(d, 'state'), '--conf-dir', join(d, 'conf'), '--cni-path', side.cniPath];
      if (side.exec) args.push('--exec-plugins');
      const p = spawn('nsenter', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (c) => (err += c));
      daemons.push(p);
      for (let i = 0; i < 100 && !err.includes(': serving '); i++) await new Promise((r) => setTimeout(r, 50));
      if (!err.includes(': serving ')) throw new Error(`docker-plugin (${s}) did not start: ${err}`);
      side.stderr = () => err;
      side.nid = randomBytes(32).toString('hex');
      await post(side.sock, 'NetworkDriver.CreateNetwork', {
        NetworkID: side.nid,
        Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'cni.network': `dpbench${side.net}` } },
        IPv4Data: [{ AddressSpace: 'LocalDefault', Gateway: `${subnet}.1/22`, Pool: `${subnet}.0/22` }],
        IPv6Data: [],
      });
    }
    let n = 0;
    /** One endpoint's life; returns its wall time in ms. */
    const endpoint = async (side) => {
      const eid = randomBytes(32).toString('hex');
      const ids = { NetworkID: side.nid, EndpointID: eid };
      const host = 10 + (n++ % 200);
      const t0 = process.hrtime.bigint();
      await post(side.sock, 'NetworkDriver.CreateEndpoint', { ...ids, Interface: { Address: `${side.subnet}.${host}/22`, AddressIPv6: '', MacAddress: `02:42:c6:12:00:${host.toString(16).padStart(2, '0')}` }, Options: {} });
      await post(side.sock, 'NetworkDriver.Join', { ...ids, SandboxKey: `/var/run/docker/netns/${eid.slice(0, 12)}`, Options: {} });
      await post(side.sock, 'NetworkDriver.EndpointOperInfo', ids);
      await post(side.sock, 'NetworkDriver.Leave', ids);
      await post(side.sock, 'NetworkDriver.DeleteEndpoint', ids);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const t = { ours: [], execd: [], reference: [] };
    const order = ['ours', 'execd', 'reference'];
    for (let i = 0; i < ROUNDS + 1; i++) {
      const o = i % 2 ? [...order].reverse() : order;
      for (const s of o) {
        const ms = await endpoint(sides[s]);
        if (i > 0) t[s].push(ms); // round 0 warms up (the bridge is created)
      }
    }
    record('docker-endpoint', t.ours, t.reference, { note: 'our plugins in-process vs the reference exec\'d; target <= 0.5' });
    record('docker-endpoint-ours-execd', t.execd, t.reference, { note: 'our plugins exec\'d vs the reference exec\'d' });
    // The chain's share (the daemon's request log: CreateEndpoint's ADD + DeleteEndpoint's DEL), without
    // the hand-over's kernel link moves and the records, which both sides pay alike.
    const chain = (side) => {
      const grab = (method, ph) => [...side.stderr().matchAll(new RegExp(`^NetworkDriver\\.${method} .*-> ok \\(.*\\b${ph} ([0-9.]+)`, 'gm'))].map((m) => Number(m[1]));
      const [add, del] = [grab('CreateEndpoint', 'ADD'), grab('DeleteEndpoint', 'DEL')];
      return add.slice(1).map((a, i) => a + (del[i + 1] ?? NaN)).filter((x) => !Number.isNaN(x));
    };
    record('docker-endpoint-chain', chain(sides.ours), chain(sides.reference), { note: 'ADD + DEL alone: our plugins in-process vs the reference exec\'d' });
    for (const side of Object.values(sides)) if (side.sock) await post(side.sock, 'NetworkDriver.DeleteNetwork', { NetworkID: side.nid }).catch(() => undefined);
  } finally {
    for (const p of daemons) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }
    // The chains' bridges stay (a cni.network's bridge is not the plugin's): they go with bench.mjs's host netns.
    log('docker-plugin: daemons stopped');
  }
}
