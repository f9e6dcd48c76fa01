// host-local's store under attack and under faults (issue 10, items 2, 11 and 12), through the built
// binary inside a scratch netns (prefix hls-): whoever can write into a store directory cannot make
// us touch anything outside it; a garbled or missing index, a `.cnikit` that is not a directory and
// a full disk lose or duplicate nothing; stale-lease reclaim frees only leases provably from an
// earlier boot, and no more than needed; a FIFO named as resolvConf fails fast.
import { execa } from 'execa';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REFERENCE_DIR, binDir, runCni, suiteNetns, type RunResult } from '../support/cni';

let host: string; // scratch "host" netns the plugin runs in
let sandbox: string;
let dataDir: string;
let outside: string; // a directory beside the store that nothing may touch

const scratch = suiteNetns(['hls-host', 'hls-ctr']);
beforeAll(() => {
  host = scratch.names[0]!;
  sandbox = `/var/run/netns/${scratch.names[1]}`;
});
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'hls-'));
  outside = mkdtempSync(join(tmpdir(), 'hls-outside-'));
});
afterEach(() => {
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const NET = 'hlnet';
const store = () => join(dataDir, NET);
const conf = (ipam: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: NET,
  ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '198.18.0.0/24' }]], ...ipam },
  ...extra,
});
const small = { ranges: [[{ subnet: '198.18.0.0/29' }]] }; // .2-.6: five addresses

function hl(command: string, config: unknown, id = 'c1', binary?: string): Promise<RunResult> {
  return runCni('host-local', {
    command,
    config,
    hostNetns: host,
    binary,
    env: { CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: sandbox, CNI_PATH: binDir() },
  });
}

const leases = () =>
  readdirSync(store())
    .filter((f) => f !== 'lock' && !f.startsWith('.') && !f.startsWith('last_reserved_ip'))
    .sort();
const owners = () => Object.fromEntries(leases().map((f) => [f, readFileSync(join(store(), f), 'utf8')]));

/** Files under `outside` with their bytes and modes: what nothing we run may change. */
function snapshot(dir = outside): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    const st = lstatSync(join(dir, f));
    out[f] = `${(st.mode & 0o7777).toString(8)} ${st.isFile() ? readFileSync(join(dir, f), 'utf8') : 'dir'}`;
  }
  return out;
}
function victim(name: string): string {
  const p = join(outside, name);
  writeFileSync(p, `precious ${name}\n`, { mode: 0o644 });
  return p;
}

describe('nothing outside the store is touched, whatever is planted in it', () => {
  test('a lease whose content climbs out of the store (`..\\r\\n/../../…/<abs path>`): ADD, GC and DEL leave that path alone', async () => {
    const target = victim('target');
    expect((await hl('ADD', conf(), 'c1')).exitCode).toBe(0);
    const before = snapshot();
    // As the campaign found: the content became a path component of the index.
    writeFileSync(join(store(), '198.18.0.9'), `..\r\n${'/..'.repeat(16)}${target}`, { mode: 0o600 });
    const add = await hl('ADD', conf(), 'c2');
    expect(add.exitCode).toBe(0);
    expect(add.json.ips[0].address).not.toBe('198.18.0.9/24'); // the planted lease still blocks its address
    expect(snapshot()).toEqual(before);
    expect((await hl('DEL', conf(), 'c1')).exitCode).toBe(0);
    const gc = await hl('GC', { ...conf(), 'cni.dev/valid-attachments': [{ containerID: 'c2', ifname: 'eth0' }] });
    expect(gc.exitCode).toBe(0);
    expect(snapshot()).toEqual(before);
    expect(leases()).toEqual(['198.18.0.3']); // GC released the garbage lease (a file inside the store) and c1's
  });

  test('`.cnikit/by-key` planted as a symlink to another directory: ADD, DEL and GC neither write nor delete there', async () => {
    victim('c9+eth0');
    victim('unrelated');
    expect((await hl('ADD', conf(), 'c1')).exitCode).toBe(0);
    const before = snapshot();
    rmSync(join(store(), '.cnikit', 'by-key'), { recursive: true });
    symlinkSync(outside, join(store(), '.cnikit', 'by-key'));
    // A lease added behind our back forces an index rebuild, which prunes the key directory.
    writeFileSync(join(store(), '198.18.0.50'), 'ref\r\neth0', { mode: 0o600 });
    expect((await hl('ADD', conf(), 'c2')).exitCode).toBe(0);
    expect((await hl('DEL', conf(), 'c1')).exitCode).toBe(0);
    expect((await hl('GC', { ...conf(), 'cni.dev/valid-attachments': [{ containerID: 'c2', ifname: 'eth0' }] })).exitCode).toBe(0);
    expect(snapshot()).toEqual(before);
    expect(leases()).toEqual(['198.18.0.3']);
    expect(lstatSync(join(store(), '.cnikit', 'by-key')).isDirectory()).toBe(true); // replaced by a real one
  });

  test('predictable temp names planted as symlinks (the old `.last_reserved_ip.0.cnikit-tmp`, `.cnikit/.state.cnikit-tmp`) are never written through', async () => {
    expect((await hl('ADD', conf(), 'c1')).exitCode).toBe(0);
    const a = victim('a');
    const b = victim('b');
    const c = victim('c');
    symlinkSync(a, join(store(), '.last_reserved_ip.0.cnikit-tmp'));
    symlinkSync(b, join(store(), '.cnikit', '.state.cnikit-tmp'));
    symlinkSync(c, join(store(), '.cnikit', 'by-key', '.c2+eth0.cnikit-tmp'));
    const before = snapshot();
    expect((await hl('ADD', conf(), 'c2')).exitCode).toBe(0);
    expect((await hl('DEL', conf(), 'c2')).exitCode).toBe(0);
    expect(snapshot()).toEqual(before);
    // Our own temp files have random names and are gone after every call.
    const tmp = (d: string) => readdirSync(d).filter((n) => n.endsWith('.tmp'));
    expect([...tmp(store()), ...tmp(join(store(), '.cnikit')), ...tmp(join(store(), '.cnikit', 'by-key'))]).toEqual([]);
  });

  test('`lock` planted as a symlink is not followed: nothing is created at its target, ADD fails with code 5 naming it', async () => {
    mkdirSync(store(), { recursive: true });
    const target = join(outside, 'created-by-lock');
    symlinkSync(target, join(store(), 'lock'));
    const r = await hl('ADD', conf(), 'c1');
    expect(r.json.code).toBe(5);
    expect(r.json.msg).toContain(`${store()}/lock`);
    expect(existsSync(target)).toBe(false);
    expect(leases()).toEqual([]);
  });
});

describe('faults: nothing lost, nothing duplicated', () => {
  test.each([
    ['emptied (`: >`)', ''],
    ['garbled', 'garbage\n\0\0'],
    ['rewritten well-formed, listing another address', 'cnikit-lease-index v1\n198.18.0.77 -\n'],
  ])('an index key file %s is not trusted: a second ADD for c1/eth0 is refused as a duplicate, DEL frees the lease', async (_, text) => {
    expect((await hl('ADD', conf(), 'c1')).exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 20)); // a later clock tick than the index's own writes
    writeFileSync(join(store(), '.cnikit', 'by-key', 'c1+eth0'), text);
    const dup = await hl('ADD', conf(), 'c1');
    expect(dup.exitCode).toBe(1);
    expect(dup.json.msg).toBe('failed to allocate for range 0: 198.18.0.2 has been allocated to c1, duplicate allocation is not allowed');
    expect(leases()).toEqual(['198.18.0.2']);
    // The refused ADD rebuilt the index: again a later tick than its writes (lease-index.ts's stated
    // limitation: a change in the same clock tick as our last write can go unseen).
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(join(store(), '.cnikit', 'by-key', 'c1+eth0'), text);
    expect((await hl('DEL', conf(), 'c1')).exitCode).toBe(0);
    expect(leases()).toEqual([]);
  });

  test('`.cnikit` as a regular file (or a symlink): ADD and DEL recover, like the reference works without it', async () => {
    expect((await hl('ADD', conf(), 'c1')).exitCode).toBe(0);
    rmSync(join(store(), '.cnikit'), { recursive: true });
    writeFileSync(join(store(), '.cnikit'), 'not a directory');
    const add = await hl('ADD', conf(), 'c2');
    expect([add.exitCode, add.json.ips?.[0]?.address]).toEqual([0, '198.18.0.3/24']);
    rmSync(join(store(), '.cnikit'), { recursive: true });
    symlinkSync(outside, join(store(), '.cnikit'));
    expect((await hl('DEL', conf(), 'c1')).exitCode).toBe(0);
    expect(leases()).toEqual(['198.18.0.3']);
    expect((await hl('DEL', conf(), 'c2')).exitCode).toBe(0);
    expect(leases()).toEqual([]);
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(store(), '.cnikit')).isDirectory()).toBe(true);
  });

  test('full disk (a 256 KiB tmpfs in a private mount namespace): a failed ADD leaves no lease and no temp file; DEL needs no free space', async () => {
    const mnt = join(dataDir, 'tmpfs');
    mkdirSync(mnt);
    const cfg = join(dataDir, 'conf.json');
    writeFileSync(cfg, JSON.stringify({ ...conf(small), ipam: { ...conf(small).ipam, dataDir: mnt } }));
    const plugin = join(binDir(), 'host-local');
    // One shell in its own mount namespace (the tmpfs vanishes with it), inside the scratch host netns.
    const script = `
      set -u
      mount -t tmpfs -o size=256k,mode=0755 cnikit-test "$M" || exit 99
      run() { echo "@@$1"; CNI_COMMAND=$2 CNI_CONTAINERID=$3 "$P" < "$C"; rc=$?; echo; echo "rc=$rc"; }
      store() { echo "@@ls-$1"; cd "$M/${NET}" && find . -mindepth 1 | sort; cd /; }
      run add1 ADD c1
      dd if=/dev/zero of="$M/fill" bs=4096 2>/dev/null
      # Removing the index state frees one page: the lease fits, last_reserved_ip does not.
      run add-full ADD c2
      store add-full
      dd if=/dev/zero of="$M/fill2" bs=4096 2>/dev/null
      run add-full-again ADD c2     # now the lease itself cannot be written
      store add-full-again
      run del-full DEL c1
      store del-full
      rm -f "$M/fill" "$M/fill2"
      run add-after ADD c3
      run del-after DEL c3
      store end
    `;
    const r = await execa('nsenter', [`--net=/var/run/netns/${host}`, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script], {
      reject: false,
      extendEnv: false,
      env: { PATH: process.env.PATH, M: mnt, P: plugin, C: cfg, CNI_IFNAME: 'eth0', CNI_NETNS: sandbox, CNI_PATH: binDir() },
      timeout: 30000,
    });
    expect(r.exitCode).toBe(0);
    const sec: Record<string, string> = {};
    for (const part of String(r.stdout).split('@@').slice(1)) {
      const nl = part.indexOf('\n');
      sec[part.slice(0, nl)] = part.slice(nl + 1).trim();
    }
    const json = (s: string) => JSON.parse(sec[s]!.replace(/\nrc=\d+$/, ''));
    expect(sec['add1']).toMatch(/rc=0$/);
    for (const s of ['add-full', 'add-full-again']) {
      expect(sec[s]).toMatch(/rc=1$/);
      expect(json(s)).toMatchObject({ code: 5 });
      expect(json(s).msg).toContain('ENOSPC');
    }
    const onlyC1 = ['./.cnikit', './.cnikit/by-key', './.cnikit/by-key/c1+eth0', './198.18.0.2', './last_reserved_ip.0', './lock'];
    expect(sec['ls-add-full']!.split('\n')).toEqual(onlyC1); // no c2 lease, no temp file (state is gone: rebuild next)
    expect(json('add-full').msg).toContain(`${mnt}/${NET}/last_reserved_ip.0: cannot write: ENOSPC`);
    expect(json('add-full-again').msg).toContain(`${mnt}/${NET}/198.18.0.3: cannot write: ENOSPC`);
    expect(sec['ls-add-full-again']!.split('\n')).toEqual(onlyC1);
    expect(sec['del-full']).toBe('rc=0');
    expect(sec['ls-del-full']!.split('\n')).not.toContain('./198.18.0.2');
    expect(sec['add-after']).toMatch(/rc=0$/);
    expect(sec['del-after']).toBe('rc=0');
    expect(sec['ls-end']!.split('\n').filter((f) => !f.startsWith('./.cnikit'))).toEqual(['./last_reserved_ip.0', './lock']);
  });
});

describe('stale-lease reclaim (reclaimStaleLeases) frees only leases provably from an earlier boot', () => {
  const btime = () => Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
  /** Sets every lease file's mtime to an hour before this boot, as after a wall-clock step. */
  const beforeBoot = () => {
    const t = new Date((btime() - 3600) * 1000);
    for (const f of leases()) utimesSync(join(store(), f), t, t);
  };
  const fill = async (binary?: string) => {
    for (const id of ['a', 'b', 'c', 'd', 'e']) expect((await hl('ADD', conf(small), id, binary)).exitCode).toBe(0);
  };
  const full = (r: RunResult) => {
    expect(r.exitCode).toBe(1);
    expect(r.json.msg).toBe('failed to allocate for range 0: no IP addresses available in range set: 198.18.0.1-198.18.0.6');
  };

  test('clock step: leases whose mtime is before btime but which the index records in this boot are kept', async () => {
    await fill();
    const was = owners();
    beforeBoot();
    full(await hl('ADD', conf(small), 'new'));
    expect(owners()).toEqual(was);
  });

  test('lost index (`.cnikit` deleted) with mtimes before btime: the boot is unknown, nothing is reclaimed', async () => {
    await fill();
    const was = owners();
    beforeBoot();
    rmSync(join(store(), '.cnikit'), { recursive: true });
    full(await hl('ADD', conf(small), 'new'));
    expect(owners()).toEqual(was);
  });

  (existsSync(join(REFERENCE_DIR, 'host-local')) ? test : test.skip)('leases written by the reference plugin (no index record) are never reclaimed', async () => {
    const ref = join(REFERENCE_DIR, 'host-local');
    const refConf = { ...conf(small), cniVersion: '1.0.0' };
    for (const id of ['a', 'b', 'c', 'd', 'e']) expect((await hl('ADD', refConf, id, ref)).exitCode).toBe(0);
    const was = owners();
    beforeBoot();
    full(await hl('ADD', conf(small), 'new'));
    expect(owners()).toEqual(was);
  });

  test('leases the index records from an earlier boot are reclaimed, one per allocation, and never with reclaim off', async () => {
    await fill();
    const was = owners();
    // What a reboot leaves: every key file and the state say another boot ID (the state written last).
    const now = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const earlier = '00000000-0000-4000-8000-000000000001';
    const own = join(store(), '.cnikit');
    for (const f of readdirSync(join(own, 'by-key'))) {
      const p = join(own, 'by-key', f);
      expect(readFileSync(p, 'utf8')).toContain(` ${now}\n`); // each lease was recorded with this boot
      writeFileSync(p, readFileSync(p, 'utf8').replaceAll(now, earlier));
    }
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(join(own, 'state'), readFileSync(join(own, 'state'), 'utf8').replace(now, earlier));

    full(await hl('ADD', conf({ ...small, reclaimStaleLeases: false }), 'new'));
    expect(owners()).toEqual(was);
    const add = await hl('ADD', conf(small), 'new');
    expect(add.exitCode).toBe(0);
    const got = add.json.ips[0].address.split('/')[0];
    const after = owners();
    expect(after[got]).toBe('new\r\neth0');
    // Exactly one earlier-boot lease went; the other four are untouched.
    expect(Object.entries(after).filter(([ip, o]) => was[ip] === o)).toHaveLength(4);
    expect(readFileSync(join(own, 'by-key', 'new+eth0'), 'utf8')).toContain(`${got} ${now}\n`);
    const add2 = await hl('ADD', conf(small), 'new2'); // the next one reclaims the next one
    expect(add2.exitCode).toBe(0);
    expect(Object.entries(owners()).filter(([ip, o]) => was[ip] === o)).toHaveLength(3);
  });
});

describe('files a config names are read bounded and must be regular files', () => {
  test('a FIFO as ipam.resolvConf fails fast with code 7 naming the field', async () => {
    const fifo = join(dataDir, 'resolv.fifo');
    await execa('mkfifo', [fifo]);
    const t0 = Date.now();
    const r = await hl('ADD', conf({ resolvConf: fifo }));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain(`field "ipam.resolvConf" = ${JSON.stringify(fifo)}`);
    expect(r.json.msg).toContain('not a regular file');
    expect(existsSync(store()) ? leases() : []).toEqual([]);
  });

  test('a resolvConf larger than the bound fails with code 7; a symlinked one (systemd-resolved style) is followed', async () => {
    const big = join(dataDir, 'big.conf');
    writeFileSync(big, `nameserver 198.18.0.53\n${'#'.repeat(2 * 1024 * 1024)}\n`);
    const r = await hl('ADD', conf({ resolvConf: big }));
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('larger than');
    const real = join(dataDir, 'real.conf');
    writeFileSync(real, 'nameserver 198.18.0.53\n');
    symlinkSync(real, join(dataDir, 'link.conf'));
    const ok = await hl('ADD', conf({ resolvConf: join(dataDir, 'link.conf') }), 'c2');
    expect(ok.json.dns).toEqual({ nameservers: ['198.18.0.53'] });
    expect(statSync(real).isFile()).toBe(true);
  });
});
