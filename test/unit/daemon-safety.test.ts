// Safe inside a long-running process (issue 10 §2): withNetns refuses async work before anything runs
// in the namespace, a failed switch back is a fatal error of its own kind (no process.exit in the
// library), lock/netfilter/netlink waits have forms that leave the event loop free, and errors keep
// a kind and their cause. libc is a fake here (no bun:ffi under jest) that records setns calls and
// answers netlink like the kernel; the real thing runs in test/integration/netns-worker.test.ts.
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, ErrInternal, ErrTryAgainLater, asCniError, wrapError } from '../../shared/cni/errors';
import { SyscallError } from '../../shared/linux/libc';
import { FileLock, type Flocker } from '../../shared/linux/lock';
import { errorKind, kindOfErrno } from '../../shared/linux/netlink/errno';
import { NetlinkError, isExists, isNotFound } from '../../shared/linux/netlink/errors';
import { WaitTimeoutError, waitForLink, waitForLinkAsync } from '../../shared/linux/netlink/link';
import { attrStr, attrU8, ifinfomsg, nlmsg } from '../../shared/linux/netlink/message';
import { NetlinkSocket } from '../../shared/linux/netlink/socket';
import { AsyncNetnsWorkError, NetnsNotFoundError, NetnsRestoreError, NotNetnsError, withNetns } from '../../shared/linux/netns';
import { SysctlError, sysctlGet } from '../../shared/linux/sysctl';
import { NetnsJobError, NetnsWorker, defineNetnsJob, isNetnsWorkerThread, serveNetnsJobs } from '../../shared/linux/netns-worker';
import { NetfilterError, mustRunToolAsync, runToolAsync } from '../../shared/netfilter/tool';

// ---- the fake libc ----------------------------------------------------------------------------
interface FakeLibc {
  setnsCalls: number[];
  /** result of the n-th setns call (default 0) */
  setnsResults: number[];
  nextFd: number;
  /** datagrams per socket fd, with their multicast group (0 = a unicast reply) */
  queues: Map<number, Array<{ data: Buffer; groups: number }>>;
  reply: (req: Buffer) => Buffer[];
  polls: number[]; // poll timeouts asked for
}
const mockLibc: FakeLibc = { setnsCalls: [], setnsResults: [], nextFd: 100, queues: new Map(), reply: () => [], polls: [] };

jest.mock('../../shared/linux/libc', () => {
  const actual = jest.requireActual('../../shared/linux/libc');
  const q = (fd: number) => mockLibc.queues.get(fd) ?? mockLibc.queues.set(fd, []).get(fd)!;
  return {
    ...actual,
    fstatfsType: () => 0x6e736673, // every file is nsfs: the tests here are about what happens after
    setns: (fd: number) => {
      mockLibc.setnsCalls.push(fd);
      return mockLibc.setnsResults[mockLibc.setnsCalls.length - 1] ?? 0;
    },
    socket: () => mockLibc.nextFd++,
    bind: () => 0,
    getsockname: (_fd: number, addr: Uint8Array) => {
      new DataView(addr.buffer).setUint32(4, 4242, true);
      return 0;
    },
    setsockoptInt: () => 0,
    close: () => 0,
    pollOne: (fd: number, _ev: number, timeoutMs: number) => {
      mockLibc.polls.push(timeoutMs);
      return q(fd).length ? 1 : 0;
    },
    sendto: (fd: number, buf: Uint8Array) => {
      const req = Buffer.from(buf);
      for (const data of mockLibc.reply(req)) q(fd).push({ data, groups: 0 });
      return buf.length;
    },
    recvFrom: (fd: number, buf: Uint8Array, _flags: number, addr: Uint8Array) => {
      const d = q(fd).shift();
      if (!d) throw new Error('fake kernel: recv with nothing queued (would block)');
      buf.set(d.data);
      new DataView(addr.buffer).setUint32(8, d.groups, true);
      return d.data.length;
    },
  };
});

// ---- a fake node:worker_threads: the "thread" runs in this one, joined by message queues --------
// Enough to test NetnsWorker's protocol here (results, rebuilt errors, a fatal error ending the
// thread); the real bun Worker runs in test/integration/netns-worker.test.ts.
const mockWT = { isMainThread: true, workerData: null as unknown, parentPort: null as unknown, started: 0 };
jest.mock('node:worker_threads', () => {
  const { EventEmitter: Emitter } = jest.requireActual('node:events');
  class FakeWorker extends Emitter {
    private alive = true;
    private readonly port: InstanceType<typeof Emitter> & { postMessage(m: unknown): void; close(): void };
    constructor(_entry: string, opts: { workerData: unknown }) {
      super();
      mockWT.started++;
      const port = new Emitter() as FakeWorker['port'];
      port.postMessage = (m: unknown) => setImmediate(() => this.alive && this.emit('message', structuredClone(m)));
      port.close = () => this.end(0);
      this.port = port;
      // "Load the entry module" in the new thread: it sees itself as a netns worker and serves.
      Object.assign(mockWT, { isMainThread: false, workerData: opts.workerData, parentPort: port });
      try {
        jest.requireActual('../../shared/linux/netns-worker').serveNetnsJobs();
      } finally {
        Object.assign(mockWT, { isMainThread: true, workerData: null, parentPort: null });
      }
    }
    postMessage(m: unknown): void {
      setImmediate(() => this.alive && this.port.emit('message', structuredClone(m)));
    }
    ref(): void {}
    unref(): void {}
    private end(code: number): void {
      if (!this.alive) return;
      this.alive = false;
      setImmediate(() => this.emit('exit', code));
    }
    terminate(): Promise<number> {
      this.end(1);
      return Promise.resolve(1);
    }
  }
  return {
    get isMainThread() {
      return mockWT.isMainThread;
    },
    get workerData() {
      return mockWT.workerData;
    },
    get parentPort() {
      return mockWT.parentPort;
    },
    Worker: FakeWorker,
  };
});
// netns-worker.ts loads node:worker_threads on first use through process.getBuiltinModule (a plugin's
// start-up does not pay for it), which jest's module mocks do not reach: route that name to the fake.
const realGetBuiltinModule = process.getBuiltinModule.bind(process);
process.getBuiltinModule = ((id: string) => (id === 'node:worker_threads' ? jest.requireMock('node:worker_threads') : realGetBuiltinModule(id))) as typeof process.getBuiltinModule;

beforeEach(() => {
  mockLibc.setnsCalls = [];
  mockLibc.setnsResults = [];
  mockLibc.queues = new Map();
  mockLibc.polls = [];
});

/** Counts event-loop turns while `p` is pending: > 0 proves the wait did not block the thread. */
async function ticksWhile<T>(p: Promise<T>): Promise<{ value?: T; error?: unknown; ticks: number }> {
  let ticks = 0;
  const t = setInterval(() => ticks++, 5);
  try {
    return { value: await p, ticks };
  } catch (error) {
    return { error, ticks };
  } finally {
    clearInterval(t);
  }
}

// A real nsfs path both on Node and in the binary; the fake setns makes entering it a no-op.
const NS = '/proc/self/ns/net';

describe('withNetns runs only synchronous work', () => {
  test('an async callback is a type error (the first line of defence)', () => {
    // tsc --noEmit checks these lines: if the types accepted async work, @ts-expect-error would fail the typecheck.
    const refuse = (): void => {
      // @ts-expect-error -- an async function returns a Promise
      withNetns(NS, async () => 1);
      // @ts-expect-error -- any thenable is refused, not only Promise
      withNetns(NS, () => ({ then: (f: (v: number) => void) => f(1) }));
    };
    expect(typeof refuse).toBe('function');
    expect(withNetns(NS, () => 42)).toBe(42); // a synchronous result type-checks and comes back
  });

  test('an async function is refused before the namespace is entered or the callback runs', () => {
    // A native async function whatever the test transpiler does to `async` syntax (eval'd code is not transpiled).
    const AsyncFunction = eval('(async () => {}).constructor') as new (body: string) => () => Promise<void>;
    const g = globalThis as { ranInNetns?: boolean };
    const fn = new AsyncFunction('globalThis.ranInNetns = true');
    expect(fn.constructor.name).toBe('AsyncFunction');
    expect(() => withNetns(NS, fn as never)).toThrow(AsyncNetnsWorkError);
    expect(g.ranInNetns).toBeUndefined();
    expect(mockLibc.setnsCalls).toEqual([]);
  });

  test('a callback that returns a thenable is switched back first, then refused; its rejection is not left unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const fn = (() => Promise.reject(new Error('late failure'))) as () => never;
      let err: unknown;
      try {
        withNetns(NS, fn);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AsyncNetnsWorkError);
      expect((err as AsyncNetnsWorkError).kind).toBe('invalid');
      expect(mockLibc.setnsCalls).toHaveLength(2); // entered, and switched back before the throw
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('an error thrown by the work propagates after switching back', () => {
    expect(() =>
      withNetns(NS, () => {
        throw new RangeError('work failed');
      }),
    ).toThrow('work failed');
    expect(mockLibc.setnsCalls).toHaveLength(2);
  });

  test('failing to switch back is a fatal NetnsRestoreError (not a process exit), even over the work\'s own error', () => {
    mockLibc.setnsResults = [0, -1]; // enter works, return fails with EPERM
    const exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    try {
      let err: unknown;
      try {
        withNetns(NS, () => {
          throw new Error('work failed');
        });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NetnsRestoreError);
      expect((err as NetnsRestoreError).fatal).toBe(true);
      expect((err as Error).message).toBe('cannot return to the original network namespace: operation not permitted');
      expect(exit).not.toHaveBeenCalled();
    } finally {
      exit.mockRestore();
    }
  });

  test('library code under shared/linux never exits the process or writes to stderr itself', () => {
    const root = join(__dirname, '..', '..', 'shared', 'linux');
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : f.endsWith('.ts') ? [join(dir, f)] : []));
    const offenders = files(root).filter((f) => /process\.(exit|stderr|stdout)\b/.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });
});

describe('errors keep a kind and their cause', () => {
  test('errno kinds: not found, exists, try again, permission, invalid, other', () => {
    expect([2, 19, 3, 20].map(kindOfErrno)).toEqual(['not-found', 'not-found', 'not-found', 'not-found']);
    expect(kindOfErrno(-17)).toBe('exists');
    expect([11, 4, 16, 105, 110].map(kindOfErrno)).toEqual(Array(5).fill('try-again'));
    expect([1, 13].map(kindOfErrno)).toEqual(['permission', 'permission']);
    expect(kindOfErrno(22)).toBe('invalid');
    expect(kindOfErrno(28)).toBe('other'); // ENOSPC
    expect(errorKind(new Error('x'))).toBe('other');
    expect(errorKind(undefined)).toBe('other');
  });

  test('NetlinkError: kind from the errno; deleting a missing address is not-found; isNotFound/isExists read it', () => {
    expect(new NetlinkError('creating bridge', 'cni0', 17).kind).toBe('exists');
    expect(new NetlinkError('deleting address', '198.18.0.2/24 on eth0', 99).kind).toBe('not-found');
    expect(new NetlinkError('adding address', '198.18.0.2/24 on eth0', 99).kind).toBe('other');
    expect(new NetlinkError('adding route', '', 16).kind).toBe('try-again');
    expect(isExists(new NetlinkError('creating bridge', 'cni0', 17))).toBe(true);
    expect(isNotFound(new NetlinkError('getting link', 'eth0', 19))).toBe(true);
  });

  test('SyscallError has the errno\'s kind', () => {
    expect(new SyscallError('flock', 11).kind).toBe('try-again');
    expect(new SyscallError('setns', 1).kind).toBe('permission');
  });

  test('a missing netns is NetnsNotFoundError (not-found) with the fs error as cause', () => {
    let err: unknown;
    try {
      withNetns('/nonexistent/netns', () => 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetnsNotFoundError);
    expect(errorKind(err)).toBe('not-found');
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
    expect(new NotNetnsError('/tmp/x').kind).toBe('invalid');
  });

  test('SysctlError: kind from the errno, the fs error as cause', () => {
    let err: unknown;
    try {
      sysctlGet('net.ipv4.conf.no-such-if0.forwarding');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysctlError);
    expect((err as SysctlError).kind).toBe('not-found');
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  test('wrapError and asCniError keep the code, the message and the original error as cause', () => {
    const nl = new NetlinkError('creating bridge', 'cni0', 17);
    const c = asCniError(nl);
    expect([c.code, c.message, c.cause]).toEqual([ErrInternal, 'creating bridge cni0: file exists', nl]);
    const inner = new CniError(ErrTryAgainLater, 'lock busy', 'details');
    const w = wrapError(inner, 'failed to allocate for range 0');
    expect([w.code, w.message, w.details, w.cause]).toEqual([ErrTryAgainLater, 'failed to allocate for range 0: lock busy', 'details', inner]);
    expect(JSON.stringify(w.toJSON('1.1.0'))).not.toContain('cause'); // the CNI error JSON is unchanged
  });
});

describe('file lock: acquire() waits without blocking the event loop', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'daemon-lock-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A flocker that reports the lock held by someone else for `busyFor` ms. */
  function busyFlocker(busyFor: number, otherErrno = 0): Flocker & { tries: number } {
    const until = Date.now() + busyFor;
    const f = {
      tries: 0,
      LOCK_EX: 2,
      LOCK_NB: 4,
      LOCK_UN: 8,
      flock: (_fd: number, op: number) => {
        if (op === 8) return 0;
        f.tries++;
        if (otherErrno) return -otherErrno;
        return Date.now() < until ? -11 : 0;
      },
    };
    return f;
  }

  test('acquire() polls until the holder lets go while timers keep running', async () => {
    const f = busyFlocker(120);
    const lock = new FileLock(join(dir, 'lock1'), f, 2000);
    const r = await ticksWhile(lock.acquire());
    expect(r.error).toBeUndefined();
    expect(f.tries).toBeGreaterThan(2);
    expect(r.ticks).toBeGreaterThanOrEqual(5); // ~24 turns of a 5 ms interval in 120 ms; a blocking wait gives 0
    lock.close();
  });

  test('acquire() gives up after the timeout with code 11, the loop still free', async () => {
    const lock = new FileLock(join(dir, 'lock2'), busyFlocker(60_000), 150);
    const r = await ticksWhile(lock.acquire());
    expect(r.error).toBeInstanceOf(CniError);
    expect((r.error as CniError).code).toBe(ErrTryAgainLater);
    expect(r.ticks).toBeGreaterThanOrEqual(5);
    lock.close();
  });

  test('a second acquire() on the same lock waits for unlock() (flock alone would let it in)', async () => {
    const lock = new FileLock(join(dir, 'lock3'), busyFlocker(0), 2000);
    await lock.acquire();
    let second = false;
    const p = lock.acquire().then(() => (second = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(second).toBe(false);
    lock.unlock();
    await p;
    expect(second).toBe(true);
    lock.close();
  });

  test('a flock failure other than "held" is code 999 with the SyscallError as cause', async () => {
    const lock = new FileLock(join(dir, 'lock4'), busyFlocker(0, 37), 1000);
    const r = await ticksWhile(lock.acquire());
    expect((r.error as CniError).code).toBe(ErrInternal);
    expect((r.error as CniError).message).toBe(`failed to lock ${join(dir, 'lock4')}: no locks available`);
    expect((r.error as Error).cause).toBeInstanceOf(SyscallError);
    expect(() => lock.lock()).toThrow('no locks available'); // the blocking form fails alike
    lock.close();
  });
});

describe('netfilter tools: runToolAsync/mustRunToolAsync run without blocking the event loop', () => {
  let dir: string;
  const path = process.env.PATH;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'daemon-tool-'));
    // A stand-in for iptables reporting the xtables lock busy (exit 4, RESOURCE_PROBLEM).
    writeFileSync(join(dir, 'iptables'), '#!/bin/sh\necho "Another app is currently holding the xtables lock." >&2\nexit 4\n');
    chmodSync(join(dir, 'iptables'), 0o755);
    process.env.PATH = `${dir}:${path}`;
  });
  afterAll(() => {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  });

  test('stdin goes in, stdout, stderr and the exit status come back', async () => {
    const r = await runToolAsync('sh', ['-c', 'cat; echo oops >&2; exit 3'], 'table inet x\n');
    expect(r).toEqual({ status: 3, stdout: 'table inet x\n', stderr: 'oops\n' });
  });

  test('the event loop runs while the tool does', async () => {
    const r = await ticksWhile(runToolAsync('sh', ['-c', 'sleep 0.2']));
    expect(r.value?.status).toBe(0);
    expect(r.ticks).toBeGreaterThanOrEqual(5);
  });

  test('a failing tool is a NetfilterError naming the command; exit 4 of iptables is try-again', async () => {
    await expect(mustRunToolAsync('iptables', ['-w', '-t', 'nat', '-S'], 'listing nat rules')).rejects.toMatchObject({
      name: 'NetfilterError',
      kind: 'try-again',
      message: 'listing nat rules: iptables -w -t nat -S failed (exit 4): Another app is currently holding the xtables lock.',
    });
  });

  test('a missing tool is kind not-found; a hung tool is killed at the timeout as try-again', async () => {
    const missing = await runToolAsync('no-such-netfilter-tool', []).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NetfilterError);
    expect((missing as NetfilterError).kind).toBe('not-found');
    expect((missing as NetfilterError).notFound).toBe(true);
    const t0 = Date.now();
    const hung = await runToolAsync('sh', ['-c', 'sleep 5'], '', { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(hung).toMatchObject({ name: 'NetfilterError', kind: 'try-again' });
  });
});

describe('netlink: waitForLinkAsync waits for a link state with the event loop free', () => {
  const RTM_NEWLINK = 16;
  let operstate = 2; // 'down'
  /** RTM_NEWLINK for veth0 (index 7) with the current operstate, answering `req` or as an event. */
  const linkMsg = (req?: Buffer): Buffer => {
    const m = nlmsg(RTM_NEWLINK, 0, ifinfomsg({ index: 7 }), attrStr(3, 'veth0'), attrU8(16, operstate));
    if (req) m.writeUInt32LE(req.readUInt32LE(8), 8);
    m.writeUInt32LE(req ? 4242 : 0, 12);
    return m;
  };
  beforeEach(() => {
    operstate = 2;
    mockLibc.reply = (req) => [linkMsg(req)];
  });

  test('the link comes up 60 ms later: resolved by the event, timers ran meanwhile, no blocking poll', async () => {
    const nl = NetlinkSocket.open();
    setTimeout(() => {
      operstate = 6; // 'up'
      const eventFd = mockLibc.nextFd - 1; // subscribe() opened the event socket last
      mockLibc.queues.get(eventFd)!.push({ data: linkMsg(), groups: 1 });
    }, 60);
    const r = await ticksWhile(waitForLinkAsync(nl, 'veth0', (l) => l.operstate === 'up', 2000));
    expect(r.error).toBeUndefined();
    expect(r.value?.operstate).toBe('up');
    expect(r.ticks).toBeGreaterThanOrEqual(5);
    expect(mockLibc.polls.every((t) => t === 0 || t === 5000)).toBe(true); // 5000: the request's reply wait, answered at once
    nl.close();
  });

  test('no event before the timeout: WaitTimeoutError (try-again) with the last state', async () => {
    const nl = NetlinkSocket.open();
    const r = await ticksWhile(waitForLinkAsync(nl, 'veth0', (l) => l.operstate === 'up', 100));
    expect(r.error).toBeInstanceOf(WaitTimeoutError);
    expect((r.error as WaitTimeoutError).kind).toBe('try-again');
    expect((r.error as WaitTimeoutError).link.operstate).toBe('down');
    expect(r.ticks).toBeGreaterThanOrEqual(5);
    nl.close();
  });

  test('the blocking form still answers at once when the link is already ready', () => {
    operstate = 6;
    const nl = NetlinkSocket.open();
    expect(waitForLink(nl, 'veth0', (l) => l.operstate === 'up', 100).name).toBe('veth0');
    nl.close();
  });
});

describe('NetnsWorker: netns jobs on a thread of their own', () => {
  const inNs = defineNetnsJob('unit:echo', (x: { n: number }) => ({ doubled: x.n * 2, setns: mockLibc.setnsCalls.length }));
  const failsNetlink = defineNetnsJob('unit:netlink-fails', (name: string) => {
    throw new NetlinkError('getting link', name, 19);
  });
  const failsCni = defineNetnsJob('unit:cni-fails', (_: null) => {
    throw new CniError(ErrTryAgainLater, 'busy', 'details');
  });
  const failsOther = defineNetnsJob('unit:other-fails', (_: null) => {
    throw new RangeError('out of range');
  });
  beforeEach(() => (mockWT.started = 0));

  test('the job runs inside withNetns on the worker and its result comes back', async () => {
    const w = new NetnsWorker('entry.js');
    await expect(w.run(inNs, NS, { n: 21 })).resolves.toEqual({ doubled: 42, setns: 1 });
    expect(mockLibc.setnsCalls).toHaveLength(2); // entered, switched back
    await w.close();
  });

  test('errors come back as their classes: NetlinkError (isNotFound), CniError (code), others by name and kind', async () => {
    const w = new NetnsWorker('entry.js');
    const nl = await w.run(failsNetlink, NS, 'nope0').catch((e: unknown) => e);
    expect(nl).toBeInstanceOf(NetlinkError);
    expect(isNotFound(nl)).toBe(true);
    expect((nl as Error).message).toBe('getting link nope0: no such device');
    const cni = await w.run(failsCni, NS, null).catch((e: unknown) => e);
    expect(cni).toBeInstanceOf(CniError);
    expect([(cni as CniError).code, (cni as CniError).details]).toEqual([ErrTryAgainLater, 'details']);
    const other = await w.run(failsOther, NS, null).catch((e: unknown) => e);
    expect(other).toBeInstanceOf(NetnsJobError);
    expect([(other as Error).name, (other as Error).message, (other as NetnsJobError).kind]).toEqual(['RangeError', 'out of range', 'other']);
    const missing = await w.run(inNs, '/nonexistent/netns', { n: 1 }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NetnsNotFoundError);
    expect(mockWT.started).toBe(1); // one thread served them all
    await w.close();
  });

  test('a fatal NetnsRestoreError ends that thread; the next job gets a fresh one', async () => {
    const w = new NetnsWorker('entry.js');
    mockLibc.setnsResults = [0, -1]; // the first job cannot switch back
    const fatal = await w.run(inNs, NS, { n: 1 }).catch((e: unknown) => e);
    expect(fatal).toBeInstanceOf(NetnsRestoreError);
    await expect(w.run(inNs, NS, { n: 2 })).resolves.toMatchObject({ doubled: 4 });
    expect(mockWT.started).toBe(2);
    await w.close();
  });

  test('closing the worker rejects jobs still pending; async jobs are refused when defined', async () => {
    const w = new NetnsWorker('entry.js');
    const p = w.run(inNs, NS, { n: 1 });
    await w.close();
    await expect(p).rejects.toThrow('netns worker closed');
    const AsyncFunction = eval('(async () => {}).constructor') as new (body: string) => () => Promise<void>;
    expect(() => defineNetnsJob('unit:async', new AsyncFunction('') as never)).toThrow(AsyncNetnsWorkError);
    expect(() => defineNetnsJob('unit:echo', () => 1)).toThrow('defined twice');
  });

  test('only a thread started by NetnsWorker serves jobs', () => {
    expect(isNetnsWorkerThread()).toBe(false);
    expect(() => serveNetnsJobs()).toThrow('outside a netns worker thread');
  });
});
