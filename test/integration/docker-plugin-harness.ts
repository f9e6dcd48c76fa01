// A scratch "host" for the Docker plugin suites: a network namespace of its own plus a private mount
// namespace with tmpfs over /run/netns, /run/docker, /etc/docker, /run/containerd, /var/lib/cni and /run/cni
// (issue 11 §4), held by a sleeping process; every command runs inside both with `nsenter -t PID -m -n`.
// The plugin (and dockerd) run there, so their sockets, scratch netns, bind mounts and CNI state
// vanish with the mount namespace. destroy() kills every process left in that mount namespace
// (all started by the suite), deletes the netns and the temp directory, also after a failure.
import { execa, type ResultPromise } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import { addNetns, binDir, delNetns, nsName } from '../support/cni';

// /run/cni: portmap's attachment records (its default dataDir) in the chain dockerd's networks run.
const PRIVATE_DIRS = ['/run/netns', '/run/docker', '/etc/docker', '/run/containerd', '/var/lib/cni', '/run/cni'];

/** Mount points a live Scratch made on this machine (they did not exist), and how many Scratches are live. */
const madeDirs = new Set<string>();
let live = 0;

export class Scratch {
  private constructor(
    readonly netns: string,
    readonly dir: string,
    private readonly holder: ChildProcess,
  ) {}

  get pid(): number {
    return this.holder.pid!;
  }

  /** A netns named `<prefix>-<hex>` and its holder process in a private mount namespace; `dir` is a fresh temp directory. */
  static async create(prefix: string): Promise<Scratch> {
    const netns = nsName(prefix);
    const dir = mkdtempSync(`/tmp/${prefix}-`);
    await addNetns(netns);
    // A mount point must exist: a directory missing on this machine (dockerd never started: no
    // /run/docker) is made, empty, and removed again by the last Scratch's destroy(); what is
    // mounted on it is private to the holder.
    for (const d of PRIVATE_DIRS) if (!existsSync(d)) madeDirs.add(d);
    live++;
    const mounts = PRIVATE_DIRS.map((d) => `mkdir -p ${d} && mount -t tmpfs -o mode=0755 tmpfs ${d}`).join(' && ');
    const holder = spawn('nsenter', [`--net=/run/netns/${netns}`, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', `${mounts} && echo ready && exec sleep 100000`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const s = new Scratch(netns, dir, holder);
    try {
      await new Promise<void>((resolve, reject) => {
        let err = '';
        holder.stderr!.on('data', (c: Buffer) => (err += c.toString()));
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`scratch holder exited (${code}): ${err}`)));
      });
    } catch (e) {
      await s.destroy();
      throw e;
    }
    return s;
  }

  private nsArgs(): string[] {
    return ['-t', String(this.pid), '-m', '-n', '--'];
  }

  /** Runs a command inside the scratch host; never rejects (check exitCode). */
  run(cmd: string, args: string[], opts: { timeout?: number; input?: string } = {}) {
    return execa('nsenter', [...this.nsArgs(), cmd, ...args], { reject: false, timeout: opts.timeout ?? 60_000, input: opts.input, stripFinalNewline: true });
  }

  /** Runs a command that must succeed; returns its stdout. */
  async must(cmd: string, args: string[], opts: { timeout?: number; input?: string } = {}): Promise<string> {
    const r = await this.run(cmd, args, opts);
    if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${String(r.stderr)}${String(r.stdout)}`);
    return String(r.stdout);
  }

  /** Starts a long-running process inside, its stdout+stderr appended to `log`. */
  spawn(cmd: string, args: string[], log: string): ChildProcess {
    const fd = openSync(log, 'a');
    try {
      return spawn('nsenter', [...this.nsArgs(), cmd, ...args], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
  }

  /** GET `url` from the scratch host (Node's http, so nothing beyond the test runner is needed); the body, or '' on failure. */
  async httpGet(url: string): Promise<string> {
    const script = `require('http').get(${JSON.stringify(url)}, { timeout: 2000 }, (r) => r.pipe(process.stdout)).on('error', () => process.exit(1)).on('timeout', () => process.exit(1))`;
    const r = await this.run(process.execPath, ['-e', script], { timeout: 10_000 });
    return r.exitCode === 0 ? String(r.stdout) : '';
  }

  /** The host's link names (the scratch netns). */
  async links(): Promise<string[]> {
    const out = await this.must('ip', ['-o', 'link', 'show']);
    return out
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '')
      .filter(Boolean);
  }

  /** The netns names under the private /run/netns. */
  async netnsNames(): Promise<string[]> {
    const out = await this.must('ls', ['/run/netns']);
    return out.split('\n').filter(Boolean);
  }

  /** iptables-save and nft list ruleset of the scratch host, joined. */
  async rules(): Promise<string> {
    const a = await this.run('iptables-save', []);
    const b = await this.run('nft', ['list', 'ruleset']);
    return `${String(a.stdout)}\n${String(b.stdout)}`;
  }

  /** Processes whose mount namespace is the holder's (everything the suite started in here). */
  private inside(): number[] {
    let mine: string;
    try {
      mine = readlinkSync(`/proc/${this.pid}/ns/mnt`);
    } catch {
      return [];
    }
    const out: number[] = [];
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p) || Number(p) === this.pid) continue;
      try {
        if (readlinkSync(`/proc/${p}/ns/mnt`) === mine) out.push(Number(p));
      } catch {
        /* gone */
      }
    }
    return out;
  }

  async destroy(): Promise<void> {
    for (const pid of this.inside()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (this.holder.exitCode === null) {
      const exited = new Promise((r) => this.holder.once('exit', r));
      this.holder.kill('SIGKILL');
      await exited;
    }
    await delNetns(this.netns);
    rmSync(this.dir, { recursive: true, force: true });
    if (--live > 0) return;
    for (const d of madeDirs) {
      try {
        rmdirSync(d); // empty, since nothing was ever mounted on it outside a holder
      } catch {
        /* not empty: something else uses it now */
      }
    }
    madeDirs.clear();
  }
}

/** The plugin daemon as a child process inside a Scratch. */
export class PluginDaemon {
  proc: ChildProcess | undefined;
  readonly log: string;
  constructor(
    private readonly s: Scratch,
    readonly name: string,
    readonly args: { stateDir: string; confDir: string; socketDir?: string; cniPath?: string },
  ) {
    this.log = join(s.dir, `${name}.log`);
  }

  get socket(): string {
    return join(this.args.socketDir ?? '/run/docker/plugins', `${this.name}.sock`);
  }

  /** Starts it and waits until its socket answers (the log's "serving" line). */
  async start(): Promise<void> {
    const argv = ['cnm', 'docker-plugin', '--name', this.name, '--state-dir', this.args.stateDir, '--conf-dir', this.args.confDir, '--cni-path', this.args.cniPath ?? binDir(), '--timeout', '20'];
    if (this.args.socketDir) argv.push('--socket-dir', this.args.socketDir);
    const before = this.logText().length;
    this.proc = this.s.spawn(join(binDir(), 'cnikit'), argv, this.log);
    const proc = this.proc;
    for (let i = 0; i < 200; i++) {
      if (this.logText().slice(before).includes(': serving ')) return;
      if (proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`plugin ${this.name} did not start: ${this.logText().slice(before)}`);
  }

  logText(): string {
    try {
      return readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
  }

  /** Sends `signal` to the daemon (not to nsenter: the daemon is its child after the exec) and waits for its exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    // nsenter execs the command in place (no fork for -m -n), so the pid is the daemon's.
    p.kill(signal);
    return exited;
  }
}

/** POSTs `body` (an object, or a raw string: "" for the empty calls) to `/<method>` on a plugin socket. */
export function post(socketPath: string, method: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const data = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: `/${method}`, method: 'POST', headers: { Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> });
        } catch {
          reject(new Error(`${method}: not JSON: ${text}`));
        }
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** dockerd 20.10 wholly inside a Scratch, with its own data/exec roots; `docker()` is the 20.10 client on its socket. */
export class Dockerd {
  private proc: ChildProcess | undefined;
  readonly sock: string;
  /** the containers' cgroup parent: cgroupfs is the machine's, so a name of our own, removed by stop() */
  readonly cgroupParent: string;
  constructor(private readonly s: Scratch) {
    this.sock = join(s.dir, 'docker.sock');
    this.cgroupParent = `cnikit-test-${randomBytes(4).toString('hex')}`;
  }

  async start(): Promise<void> {
    const d = this.s.dir;
    this.proc = this.s.spawn(
      'dockerd',
      ['--host', `unix://${this.sock}`, '--data-root', join(d, 'data'), '--exec-root', join(d, 'x'), '--pidfile', join(d, 'pid'), '--iptables=false', '--ip6tables=false', '--bridge=none', '--storage-driver=vfs', '--cgroup-parent', `/${this.cgroupParent}`],
      join(d, 'dockerd.log'),
    );
    for (let i = 0; i < 150; i++) {
      if ((await this.docker(['info'], 5000)).exitCode === 0) return;
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`dockerd did not start: ${readFileSync(join(d, 'dockerd.log'), 'utf8').slice(-2000)}`);
  }

  docker(args: string[], timeout = 60_000): ResultPromise<{ reject: false; timeout: number; input: undefined; stripFinalNewline: true }> {
    return this.s.run('/usr/bin/docker', ['-H', `unix://${this.sock}`, ...args], { timeout }) as never;
  }

  async must(args: string[], timeout = 60_000): Promise<string> {
    const r = await this.docker(args, timeout);
    if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.exitCode}): ${String(r.stderr)}`);
    return String(r.stdout);
  }

  /** `docker import` of a busybox-static rootfs as `bb` (no registry), PATH=/bin. */
  async importBusybox(): Promise<void> {
    const root = join(this.s.dir, 'rootfs');
    await execa('sh', ['-c', `mkdir -p ${root}/bin ${root}/www && cp /bin/busybox ${root}/bin/ && for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox ${root}/bin/$a; done && echo served-by-container > ${root}/www/index.html`]);
    await this.s.must('sh', ['-c', `tar -C ${root} -c . | /usr/bin/docker -H unix://${this.sock} import --change 'ENV PATH=/bin' - bb:latest`]);
  }

  /** Removes every container, stops dockerd (SIGTERM, then SIGKILL after 20 s), removes its (empty) cgroups. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const ids = String((await this.docker(['ps', '-aq'], 20_000)).stdout).split('\n').filter(Boolean);
      if (ids.length) await this.docker(['rm', '-f', ...ids], 60_000);
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    }
    // cgroup v1 (one tree per controller) or v2 (one tree): rmdir deepest first; a busy one stays.
    for (const root of ['/sys/fs/cgroup', ...listDirs('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c))]) {
      const top = join(root, this.cgroupParent);
      if (!existsSync(top)) continue;
      for (const d of [...listDirs(top).map((c) => join(top, c)), top]) {
        try {
          rmdirSync(d);
        } catch {
          /* in use or gone */
        }
      }
    }
  }
}

function listDirs(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => {
      try {
        return statSync(join(dir, n)).isDirectory();
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}
