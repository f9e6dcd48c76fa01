// Bench cases of the CNM shim (imported by bench.mjs): the `cnm` CLI against the equivalent
// `cnitool` work, both ours, on the same generated bridge network (its conflist in <state>/net.d),
// in a scratch host netns. Not a comparison with the reference plugins: it prices the CNM layer
// (records, lock, IPAM on the store, netns creation) on top of the same chain.
//   cnm-connect-disconnect: `cnm network connect` + `disconnect` of an existing sandbox
//                           vs `cnitool add` + `del` of the network into an existing netns
//   cnm-run-cycle:          `cnm run --rm --network NET -- true` (sandbox netns made and removed)
//                           vs `ip netns add` + `cnitool add` + `del` + `ip netns del`
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const hex = () => randomBytes(4).toString('hex');

/**
 * Adds the cases through bench.mjs's own helpers: `timed(cmd, args, {env})` → {ms}, `record(name,
 * ours[], baseline[], extra)`, `skip(name, why)`, `guard(names, fn)` (a failure is reported, not a
 * number). Everything it makes (host netns, sandboxes, state) is removed again, also on failure.
 */
export async function benchCnm({ ours, rounds, timed, record, skip, guard, log }) {
  const names = ['cnm-connect-disconnect', 'cnm-run-cycle'];
  if (!existsSync(join(ours, 'cnm'))) {
    for (const n of names) skip(n, `${join(ours, 'cnm')} not built`);
    return;
  }
  const host = `cnm-bench-${hex()}`;
  const work = mkdtempSync(join(tmpdir(), 'cnm-bench-'));
  const env = { ...process.env, CNI_PATH: ours, CNI_CACHEDIR: join(work, 'cache'), CNM_STATE_DIR: join(work, 'state'), NETCONFPATH: join(work, 'state', 'net.d') };
  delete env.NODE_EXTRA_CA_CERTS;
  const inHost = (cmd, args) => timed('nsenter', [`--net=/run/netns/${host}`, cmd, ...args], { env });
  const cnm = (...args) => inHost(join(ours, 'cnm'), args);
  const cnitool = (...args) => inHost(join(ours, 'cnitool'), args);
  const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const order = (i) => (i % 2 ? ['cnitool', 'cnm'] : ['cnm', 'cnitool']);
  const sandboxes = [];
  try {
    ip('netns', 'add', host);
    ip('-n', host, 'link', 'set', 'lo', 'up');
    await cnm('network', 'create', '--subnet', '198.18.192.0/20', 'bench');
    await guard(['cnm-connect-disconnect'], async () => {
      const sb = `cnm-b-${hex()}`;
      sandboxes.push(sb);
      await cnm('sandbox', 'create', sb);
      const t = { cnm: [], cnitool: [] };
      const once = {
        cnm: async () => (await cnm('network', 'connect', 'bench', sb)).ms + (await cnm('network', 'disconnect', 'bench', sb)).ms,
        cnitool: async () => (await cnitool('add', 'bench', `/run/netns/${sb}`)).ms + (await cnitool('del', 'bench', `/run/netns/${sb}`)).ms,
      };
      for (let i = 0; i < rounds + 1; i++) for (const s of order(i)) t[s].push(await once[s]());
      // round 0 warms up (the bridge is created by the first ADD)
      record('cnm-connect-disconnect', t.cnm.slice(1), t.cnitool.slice(1), { baseline: 'cnitool add+del (ours)' });
    });
    await guard(['cnm-run-cycle'], async () => {
      const t = { cnm: [], cnitool: [] };
      const once = {
        cnm: async () => (await cnm('run', '--rm', '--network', 'bench', '--', 'true')).ms,
        cnitool: async () => {
          const ns = `cnm-bc-${hex()}`;
          const t0 = process.hrtime.bigint();
          ip('netns', 'add', ns);
          try {
            await cnitool('add', 'bench', `/run/netns/${ns}`);
            await cnitool('del', 'bench', `/run/netns/${ns}`);
          } finally {
            ip('netns', 'del', ns);
          }
          return Number(process.hrtime.bigint() - t0) / 1e6;
        },
      };
      for (let i = 0; i < rounds; i++) for (const s of order(i)) t[s].push(await once[s]());
      record('cnm-run-cycle', t.cnm, t.cnitool, { baseline: 'ip netns add + cnitool add+del + ip netns del (ours)' });
    });
  } catch (e) {
    for (const n of names) skip(n, `setup failed: ${e.message}`);
  } finally {
    for (const sb of sandboxes) await cnm('sandbox', 'rm', sb).catch((e) => log(`cnm bench cleanup: ${e.message}`));
    await cnm('network', 'rm', 'bench').catch(() => undefined);
    try {
      ip('netns', 'del', host);
    } catch {
      /* not made */
    }
    rmSync(work, { recursive: true, force: true });
  }
}
