// Daemon safety, in compiled executables: a CNI_NETNS that is not a network namespace never blocks
// the plugin (issue 10 item 12: a FIFO hung it past 5 s), and NetnsWorker runs netns work on a bun
// Worker thread of a compiled executable while the main thread stays in its own netns (issue 10 §2).
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNetns, delNetns, nsName, runCni } from '../support/cni';
import { compileLikeTheProduct } from '../support/compile';
import { Lab } from './bridge-harness';

const root = join(__dirname, '..', '..');

describe('CNI_NETNS that is not a network namespace', () => {
  let lab: Lab;
  let dir: string;
  let fifo: string;
  beforeAll(async () => {
    lab = await Lab.create(0);
    dir = mkdtempSync(join(tmpdir(), 'netns-fifo-'));
    fifo = join(dir, 'netns');
    execFileSync('mkfifo', [fifo]);
  });
  afterAll(async () => {
    await lab?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  // Nobody ever opens the FIFO for writing: a blocking open of it for reading never returns.
  test.each(['ADD', 'CHECK', 'DEL'])('%s with CNI_NETNS a FIFO exits within 1 s with a CNI error naming the path', async (verb) => {
    const conf = { cniVersion: '1.0.0', name: 'brnet', type: 'bridge', bridge: 'cni0', prevResult: { cniVersion: '1.0.0' } };
    const env = { CNI_CONTAINERID: 'ctr-fifo', CNI_NETNS: fifo, CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent' };
    const t0 = Date.now();
    const r = await runCni('bridge', { command: verb, config: conf, env, hostNetns: lab.host });
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(1000);
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 999 });
    expect(r.json.msg).toContain(`"${fifo}" is not a network namespace`);
  });
});

/**
 * Compiles a test entry exactly as build.mjs compiles main.ts (esbuild ESM bundle, then bun
 * --compile --bytecode with the same flags), so the worker runs as it would in dist/bin/cnikit.
 */
describe('NetnsWorker in a compiled executable', () => {
  let dir: string;
  let exe: string;
  const host = nsName('nw-h');
  const pod = nsName('nw-p');
  let out: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- the harness's JSON, checked field by field

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'netns-worker-'));
    exe = await compileLikeTheProduct(join(root, 'test', 'support', 'netns-worker-harness.ts'), dir);
    await addNetns(host);
    await addNetns(pod);
    await execa('ip', ['-n', pod, 'link', 'add', 'nwa0', 'type', 'veth', 'peer', 'name', 'nwb0']);
    // The harness's main thread lives in the scratch host netns; its jobs go to the pod netns.
    const r = await execa('nsenter', [`--net=/var/run/netns/${host}`, exe, `/var/run/netns/${pod}`], { cwd: '/', reject: false, timeout: 20000 });
    if (r.exitCode !== 0) throw new Error(`harness failed (${r.exitCode}): ${r.stderr}`);
    out = JSON.parse(r.stdout);
  }, 60000);
  afterAll(async () => {
    await delNetns(host);
    await delNetns(pod);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the job runs in the target netns while the main thread stays in its own, sampled on every turn during the job', () => {
    const hostIno = statSync(`/var/run/netns/${host}`).ino;
    expect(out.target).toBe(statSync(`/var/run/netns/${pod}`).ino);
    expect(out.held).toBe(out.target);
    expect(out.again).toBe(out.target);
    expect([out.mainBefore, out.mainAfter]).toEqual([hostIno, hostIno]);
    // The job held the worker 300 ms: the main thread's event loop kept turning, never in the pod netns.
    expect(out.samples.length).toBeGreaterThanOrEqual(10);
    expect(new Set(out.samples)).toEqual(new Set([hostIno]));
  });

  test('netlink work in the worker sees the target netns (its links)', () => {
    expect(out.links.sort()).toEqual(['lo', 'nwa0', 'nwb0']);
  });

  test('waitForLinkAsync sees the kernel\'s link event while a timer on the same loop makes it happen', () => {
    expect(out.waitAsync.up).toBe(true);
    expect(out.waitAsync.firedAt).toBeGreaterThanOrEqual(100);
    expect(out.waitAsync.doneAt).toBeGreaterThanOrEqual(out.waitAsync.firedAt);
    expect(out.waitAsync.doneAt).toBeLessThan(1000); // woken by the event, not by the 3 s timeout
  });

  test('errors come back as their classes with kinds, and the worker goes on after them', () => {
    expect(out.missing).toMatchObject({ name: 'NetlinkError', kind: 'not-found', isNotFound: true });
    expect(out.missing.message).toContain('nope0');
    expect(out.badPath).toMatchObject({ name: 'NetnsNotFoundError', kind: 'not-found', isNetnsNotFound: true });
    expect(out.notSync).toMatchObject({ name: 'AsyncNetnsWorkError', kind: 'invalid' });
    expect(out.afterErrors).toBe(out.target);
  });
});
