// A seeded fuzz campaign through the BUILT executable (issue 10, item 12): valid bridge and
// host-local configs and their environment, mutated (wrong types, huge numbers, odd strings, unicode,
// nested junk, truncated or garbled JSON, bad CNI_* values), each run as a runtime would run it.
// Invariants for every case:
//   - the plugin exits within 5 s;
//   - stdout is exactly one CNI error object (exit != 0, a spec code, a message) or a valid result
//     (ADD), the version JSON (VERSION), or nothing (DEL/CHECK/GC/STATUS, exit 0);
//   - no engine text or stack frame on stdout or stderr;
//   - nothing is left behind: a failed ADD, and an ADD followed by its DEL, leave no veth in the
//     host netns, nothing but lo in the pod netns, and no lease or index entry in the store.
// Two workers, each with its own scratch host netns, pod netns and store. FUZZ_CASES and FUZZ_SEED
// change the size and the seed (a failure prints the seed and case to rerun).
import { execa } from 'execa';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseResult } from '../../shared/cni/types';
import { addNetns, binDir, delNetns, nsName } from '../support/cni';

jest.setTimeout(15 * 60 * 1000);

const CASES = Number(process.env.FUZZ_CASES ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261130);
const TIMEOUT_MS = 5000;

// CNI spec error codes (SPEC.md "Error"), the Go skel's 8 (CNI_NETNS is the plugin's own) and
// libcni's 999 (ErrInternal: what the Go skel reports for a plugin error without a code, e.g. the
// reference bridge's "failed to open netns"). A 999 that masks an engine error is a failure below.
const SPEC_CODES = new Set([1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 999]);
// Engine phrases that must never reach a user: JavaScriptCore's and V8's error texts, stack frames.
const ENGINE_TEXT = [
  /is not an object/,
  /\bundefined\b/,
  /null is not/,
  /Cannot read propert/,
  /Unexpected token/,
  /JSON\.parse/,
  /JSON Parse error/,
  /is not a function/,
  /Maximum call stack/,
  /^\s*at .*[(:]\d+/m,
  /\$bunfs/,
  /\bBun v\d/,
];

/** mulberry32: a small seeded PRNG, so a failing case can be replayed from its seed and index. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const ODD_STRINGS = ['', ' ', '-', '0', '..', '../../x', 'a/b', 'a'.repeat(300), '\u0000', 'é', '💥', '\u202e', 'eth0\n', '198.18.0.0/33', '198.18.0.256', '::/0', 'fd00::/129', '255.255.255.255', '0.0.0.0/0', '1.0.0', '9.9.9', 'true', '{}', '[]', 'NaN', '%s%n', 'bridge', 'host-local'];
// Addresses near the edges of the configs' ranges, for the address fields (subnet, rangeStart, gateway, dst, gw).
const ADDRESSES = ['198.18.20.0', '198.18.20.1', '198.18.20.9', '198.18.20.51', '198.18.20.255', '198.18.21.15', '198.18.21.0/28', '198.18.21.14/31', '198.18.20.0/24', '198.18.0.0/15', '255.255.255.252/30', '255.255.255.255', '0.0.0.0', 'fd00:20::', 'fd00:20::1', 'fd00:20::/127', '::ffff:198.18.20.5', 'fe80::1%eth0'];
// Subnets and the addresses at their edges (network, first, last, broadcast, just outside).
const RANGE_EDGES: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['198.18.21.0/28', ['198.18.21.0', '198.18.21.1', '198.18.21.14', '198.18.21.15', '198.18.21.16']],
  ['198.18.21.14/31', ['198.18.21.14', '198.18.21.15', '198.18.21.13']],
  ['198.18.21.15/32', ['198.18.21.15', '198.18.21.14']],
  ['255.255.255.252/30', ['255.255.255.252', '255.255.255.253', '255.255.255.254', '255.255.255.255']],
  ['fd00:20::/127', ['fd00:20::', 'fd00:20::1', 'fd00:20::2']],
  ['fd00:20::/126', ['fd00:20::', 'fd00:20::1', 'fd00:20::3', 'fd00:20::4', '198.18.21.1']],
];
const NUMBERS = [0, -1, 1, 1.5, 65535, 65536, 4294967295, 4294967296, 2 ** 53 + 1, 1e308, -1e308, 1e-308];

function junk(r: () => number, depth = 0): Json {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  switch (Math.floor(r() * (depth > 2 ? 6 : 8))) {
    case 5:
      return pick(ADDRESSES);
    case 0:
      return pick(NUMBERS);
    case 1:
      return pick(ODD_STRINGS);
    case 2:
      return r() < 0.5;
    case 3:
      return null;
    case 4:
      return String.fromCodePoint(0x20 + Math.floor(r() * 0x2fff)).repeat(1 + Math.floor(r() * 4));
    case 6:
      return Array.from({ length: Math.floor(r() * 3) }, () => junk(r, depth + 1));
    default:
      return { [pick(['a', 'subnet', 'type', 'ranges', '']) as string]: junk(r, depth + 1) };
  }
}

/** Every [container, key] path of `v`, containers included (so whole sections get replaced too). */
function paths(v: Json, at: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  if (v !== null && typeof v === 'object') {
    for (const [k, c] of Array.isArray(v) ? v.entries() : Object.entries(v)) {
      const p = [...at, k];
      out.push(p);
      paths(c, p, out);
    }
  }
  return out;
}

function mutateValue(conf: Json, r: () => number): Json {
  const c = JSON.parse(JSON.stringify(conf)) as Json;
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const ps = paths(c).filter((p) => p[p.length - 1] !== 'dataDir');
    const p = ps[Math.floor(r() * ps.length)]!;
    let parent = c as Record<string | number, Json>;
    for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
    const key = p[p.length - 1]!;
    const what = r();
    if (what < 0.15 && !Array.isArray(parent)) delete parent[key];
    else if (what < 0.25 && !Array.isArray(parent)) parent[`x${Math.floor(r() * 10)}`] = junk(r);
    else parent[key] = junk(r);
  }
  return c;
}

/** Text-level damage (truncation, a garbled or inserted byte), never inside the dataDir value. */
function mutateText(text: string, r: () => number, dataDir: string): string {
  const lo = text.indexOf(JSON.stringify(dataDir));
  const hi = lo + JSON.stringify(dataDir).length;
  let at = Math.floor(r() * text.length);
  if (lo >= 0 && at >= lo && at < hi) at = hi;
  const ch = String.fromCharCode([0x22, 0x2c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x5c, 0x00, 0x0a, 0xe9, 0x41][Math.floor(r() * 12)]!);
  const w = r();
  if (w < 0.4) return text.slice(0, at);
  if (w < 0.7) return text.slice(0, at) + ch + text.slice(at + 1);
  return text.slice(0, at) + ch + text.slice(at);
}

interface World {
  host: string; // netns names
  pod: string;
  dataDir: string;
}

function baseConfigs(w: World): Array<{ plugin: 'bridge' | 'host-local'; conf: Json }> {
  return [
    {
      plugin: 'bridge',
      conf: {
        cniVersion: '1.0.0',
        name: 'fuzznet',
        type: 'bridge',
        bridge: 'fz0',
        isGateway: true,
        ipMasq: false,
        mtu: 1400,
        hairpinMode: false,
        ipam: {
          type: 'host-local',
          dataDir: w.dataDir,
          ranges: [[{ subnet: '198.18.20.0/24', rangeStart: '198.18.20.10', rangeEnd: '198.18.20.50', gateway: '198.18.20.1' }], [{ subnet: 'fd00:20::/64' }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
    },
    {
      plugin: 'host-local',
      conf: {
        cniVersion: '0.4.0',
        name: 'fuzzhl',
        type: 'bridge',
        ipam: { type: 'host-local', dataDir: w.dataDir, subnet: '198.18.21.0/28', gateway: '198.18.21.1', routes: [{ dst: '198.18.22.0/24', gw: '198.18.21.1' }] },
      },
    },
  ];
}

interface Case {
  plugin: 'bridge' | 'host-local';
  verb: string;
  env: Record<string, string>;
  stdin: string;
  desc: string;
}

const VERBS = ['ADD', 'ADD', 'ADD', 'ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION', '', 'add', 'BOGUS'];

function makeCase(index: number, w: World): Case {
  const r = prng(SEED * 1000003 + index);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const { plugin, conf } = pick(baseConfigs(w));
  const verb = pick(VERBS);
  const env: Record<string, string> = {
    PATH: process.env.PATH!,
    CNI_COMMAND: verb,
    CNI_CONTAINERID: `fz-${index}`,
    CNI_NETNS: `/var/run/netns/${w.pod}`,
    CNI_IFNAME: 'eth0',
    CNI_PATH: binDir(),
  };
  const kind = r();
  let stdin = JSON.stringify(conf);
  if (kind < 0.1) {
    // A range whose fields are each valid alone but maybe not together (issue 10, item 1).
    const [subnet, edges] = pick(RANGE_EDGES);
    const range: Record<string, string> = { subnet };
    for (const k of ['rangeStart', 'rangeEnd', 'gateway']) if (r() < 0.6) range[k] = pick(r() < 0.8 ? edges : ADDRESSES);
    const c = JSON.parse(stdin) as { ipam: Record<string, unknown> };
    delete c.ipam.subnet;
    delete c.ipam.gateway;
    c.ipam.ranges = [[range]];
    stdin = JSON.stringify(c);
  } else if (kind < 0.55) {
    let m = mutateValue(conf, r);
    // The store must stay in this scratch world whatever else changes (never /var/lib/cni).
    if (m && typeof m === 'object' && !Array.isArray(m) && m.ipam && typeof m.ipam === 'object' && !Array.isArray(m.ipam)) m = { ...m, ipam: { ...m.ipam, dataDir: w.dataDir } };
    else if (m && typeof m === 'object' && !Array.isArray(m)) m = { ...m, ipam: null };
    stdin = JSON.stringify(m);
  } else if (kind < 0.75) {
    stdin = mutateText(stdin, r, w.dataDir);
  } else {
    const k = pick(['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH', 'CNI_ARGS', 'CNI_COMMAND'] as const);
    const values: Record<typeof k, string[]> = {
      CNI_CONTAINERID: ['', '-x', 'a/b', '..', 'a'.repeat(300), 'é', 'c\n1', 'fz'],
      CNI_NETNS: ['', '/nonexistent/ns', '/proc/self/ns/net', '/dev/null', '/', 'relative/ns', `/var/run/netns/${w.pod}/x`],
      CNI_IFNAME: ['', 'a'.repeat(16), 'eth/0', 'eth 0', '.', '..', 'ä'.repeat(8), 'lo', 'fz0'],
      CNI_PATH: ['', '/nonexistent', `${binDir()}:/nonexistent`, '::'],
      CNI_ARGS: ['IgnoreUnknown=1;IP=198.18.20.77', 'IP=198.18.99.1', 'IP=junk', 'K8S_POD_NAME', '=;=;', 'IgnoreUnknown=true;X=1;IP=fd00:20::5', 'a'.repeat(5000)],
      CNI_COMMAND: ['ADD\n', ' ADD', 'VERSION ', 'Add'],
    };
    env[k] = pick(values[k]);
  }
  return { plugin, verb: env.CNI_COMMAND!, env, stdin, desc: `seed ${SEED} case ${index}: ${plugin} ${JSON.stringify(env.CNI_COMMAND)} env ${JSON.stringify({ ...env, PATH: undefined })} stdin ${JSON.stringify(stdin).slice(0, 600)}` };
}

interface Run {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

async function exec(w: World, c: Case, env = c.env): Promise<Run> {
  // A mutation can rename the `dataDir` key itself, and host-local then uses its default store: the
  // plugin gets a private tmpfs over /var/lib so such a case cannot write to the machine's.
  const inScratch = '/bin/mount -t tmpfs cnikit-fuzz /var/lib && exec /usr/bin/nsenter --net="$1" "$2"';
  const r = await execa('/usr/bin/unshare', ['-m', '--propagation', 'private', '/bin/sh', '-c', inScratch, 'sh', `/var/run/netns/${w.host}`, join(binDir(), c.plugin)], {
    input: c.stdin,
    env,
    extendEnv: false,
    reject: false,
    cwd: w.dataDir,
    timeout: TIMEOUT_MS,
    stripFinalNewline: false,
  });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), timedOut: Boolean(r.timedOut) };
}

/** What is wrong with one run's output, or null. */
function checkOutput(c: Case, r: Run): string | null {
  if (r.timedOut) return `did not exit within ${TIMEOUT_MS} ms`;
  for (const re of ENGINE_TEXT) {
    if (re.test(r.stdout)) return `engine text ${re} on stdout: ${r.stdout.slice(0, 400)}`;
    if (re.test(r.stderr)) return `engine text ${re} on stderr: ${r.stderr.slice(0, 400)}`;
  }
  if (r.exitCode !== 0) {
    let e: unknown;
    try {
      e = JSON.parse(r.stdout);
    } catch {
      return `exit ${r.exitCode} without one JSON error object on stdout: ${JSON.stringify(r.stdout.slice(0, 300))} stderr ${r.stderr.slice(0, 300)}`;
    }
    const o = e as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return `error output is not an object: ${r.stdout}`;
    const extra = Object.keys(o).filter((k) => !['cniVersion', 'code', 'msg', 'details'].includes(k));
    if (extra.length) return `error object has keys ${extra.join(',')}`;
    if (typeof o.code !== 'number' || !SPEC_CODES.has(o.code)) return `error code ${o.code} is not a spec code: ${r.stdout}`;
    if (typeof o.msg !== 'string' || !o.msg) return `error without a message: ${r.stdout}`;
    if (o.msg.startsWith('internal error (')) return `an engine error (a bug) on this input: ${r.stdout}`;
    return null;
  }
  if (c.verb === 'ADD') {
    try {
      const res = JSON.parse(r.stdout) as { cniVersion?: unknown };
      parseResult(res, String(res.cniVersion));
    } catch (e) {
      return `ADD exit 0 without a valid result (${(e as Error).message}): ${r.stdout.slice(0, 300)}`;
    }
    return null;
  }
  if (c.verb === 'VERSION') return /^\{"cniVersion":"1\.1\.0","supportedVersions":\[[^\]]+\]\}\n$/.test(r.stdout) ? null : `VERSION printed ${JSON.stringify(r.stdout)}`;
  if (c.verb === '') return r.stdout === '' ? null : `bare invocation printed on stdout: ${r.stdout}`;
  return r.stdout === '' ? null : `${c.verb} exit 0 printed ${JSON.stringify(r.stdout.slice(0, 200))}`;
}

async function links(ns: string): Promise<Array<{ ifname: string; kind?: string }>> {
  const out = (await execa('ip', ['-n', ns, '-d', '-j', 'link', 'show'])).stdout;
  return (JSON.parse(out) as Array<{ ifname: string; linkinfo?: { info_kind?: string } }>).map((l) => ({ ifname: l.ifname, kind: l.linkinfo?.info_kind }));
}

/** Store files that hold an allocation: leases (named by address) and index keys. Locks and cursors are fine. */
function storeLeftovers(dataDir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f !== 'lock' && !/^last_reserved_ip\.\d+$/.test(f) && !(relative(dataDir, p).split('/').includes('.cnikit') && !relative(dataDir, p).includes('by-key'))) out.push(relative(dataDir, p));
    }
  };
  try {
    walk(dataDir);
  } catch {
    /* no store yet */
  }
  return out;
}

async function leftovers(w: World): Promise<string | null> {
  // The bridge itself is shared by every attachment and stays, as the reference's does.
  const host = (await links(w.host)).filter((l) => l.ifname !== 'lo' && l.kind !== 'bridge');
  const pod = (await links(w.pod)).filter((l) => l.ifname !== 'lo');
  const store = storeLeftovers(w.dataDir);
  if (!host.length && !pod.length && !store.length) return null;
  return `left behind: host ${JSON.stringify(host)} pod ${JSON.stringify(pod)} store ${JSON.stringify(store)}`;
}

async function runCase(w: World, index: number): Promise<string | null> {
  const c = makeCase(index, w);
  const r = await exec(w, c);
  const bad = checkOutput(c, r);
  if (bad) return `${bad}\n  ${c.desc}`;
  if (c.verb !== 'ADD') return null;
  if (r.exitCode === 0) {
    // The accepted attachment must go away with its DEL (same config and env, as a runtime does it).
    const del = await exec(w, c, { ...c.env, CNI_COMMAND: 'DEL' });
    const delBad = checkOutput({ ...c, verb: 'DEL' }, del) ?? (del.exitCode === 0 ? null : `DEL after a successful ADD failed: ${del.stdout}`);
    if (delBad) return `${delBad}\n  ${c.desc}`;
  }
  // Codes 1, 4 and 6 come from the protocol core before any handler runs (core-protocol.test.ts
  // proves it): there is nothing to leave behind, and one check fewer keeps the campaign short.
  const code = r.exitCode === 0 ? 0 : (JSON.parse(r.stdout) as { code: number }).code;
  if (code === 1 || code === 4 || code === 6) return null;
  const left = await leftovers(w);
  if (left) {
    // Clean up so the next cases start from nothing, then report.
    rmSync(w.dataDir, { recursive: true, force: true });
    for (const l of (await links(w.pod)).filter((x) => x.ifname !== 'lo')) await execa('ip', ['-n', w.pod, 'link', 'del', l.ifname], { reject: false });
    for (const l of (await links(w.host)).filter((x) => x.ifname !== 'lo' && x.kind !== 'bridge')) await execa('ip', ['-n', w.host, 'link', 'del', l.ifname], { reject: false });
    return `${left} after ${r.exitCode === 0 ? 'ADD+DEL' : 'a failed ADD'}\n  ${c.desc}`;
  }
  return null;
}

describe('seeded fuzz campaign', () => {
  const worlds: World[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 2; i++) {
      const w: World = { host: nsName('fz-h'), pod: nsName('fz-p'), dataDir: mkdtempSync(join(tmpdir(), 'cnikit-fuzz-')) };
      worlds.push(w);
      await addNetns(w.host);
      await addNetns(w.pod);
    }
  });
  afterAll(async () => {
    for (const w of worlds) {
      await delNetns(w.host);
      await delNetns(w.pod);
      rmSync(w.dataDir, { recursive: true, force: true });
    }
  });

  test(`${CASES} mutated bridge and host-local invocations: exit within 5 s, one CNI error or a valid result, no engine text, nothing left behind`, async () => {
    const failures: string[] = [];
    await Promise.all(
      worlds.map(async (w, wi) => {
        for (let i = wi; i < CASES; i += worlds.length) {
          const f = await runCase(w, i);
          if (f) failures.push(f);
        }
      }),
    );
    expect(failures.slice(0, 25)).toEqual([]);
  });
});
