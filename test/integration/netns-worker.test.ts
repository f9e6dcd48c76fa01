// Daemon safety, through the built executable: a CNI_NETNS that is not a network namespace never
// blocks the plugin (issue 10 item 12: a FIFO hung it past 5 s).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCni } from '../support/cni';
import { Lab } from './bridge-harness';

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
