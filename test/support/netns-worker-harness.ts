// Test-only entry, compiled the way build.mjs compiles main.ts (test/integration/netns-worker.test.ts):
// proves inside a bun-compiled executable that NetnsWorker runs netns jobs on a thread of its own.
// Usage: harness <target netns path>; prints one JSON object of observations on stdout.
import { statSync } from 'node:fs';
import { isNotFound } from '../../shared/linux/netlink/errors';
import { getLink, listLinks, setLinkUp, waitForLinkAsync } from '../../shared/linux/netlink/link';
import { openNetlink, withNetlink } from '../../shared/linux/netlink/socket';
import { defineNetnsJob, isNetnsWorkerThread, NetnsWorker, serveNetnsJobs } from '../../shared/linux/netns-worker';
import { NetnsNotFoundError } from '../../shared/linux/netns';
import { errorKind } from '../../shared/linux/netlink/errno';

const threadNetns = (): number => statSync('/proc/thread-self/ns/net').ino;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

// Jobs are registered in both threads: the worker loads this same module.
const whereAmI = defineNetnsJob('harness:where', (holdMs: number) => {
  if (holdMs) Atomics.wait(sleeper, 0, 0, holdMs); // netns work that takes a while, blocking only the worker
  return threadNetns();
});
const linkNames = defineNetnsJob('harness:links', (_: null) => withNetlink((nl) => listLinks(nl).map((l) => l.name)));
const missingLink = defineNetnsJob('harness:missing-link', (name: string) => withNetlink((nl) => getLink(nl, name).index));
const notSync = defineNetnsJob('harness:not-sync', (_: null) => Promise.resolve(1) as unknown as number);

const describeError = (e: unknown) => ({ name: (e as Error).name, message: (e as Error).message, kind: errorKind(e), isNotFound: isNotFound(e), isNetnsNotFound: e instanceof NetnsNotFoundError });

async function main(): Promise<void> {
  const target = process.argv[2]!;
  const w = new NetnsWorker();
  const mainBefore = threadNetns();
  // Sample the main thread's netns on every event-loop turn while a job holds the worker in the target.
  const samples: number[] = [];
  const t = setInterval(() => samples.push(threadNetns()), 5);
  const held = await w.run(whereAmI, target, 300);
  clearInterval(t);
  const [again, links] = await Promise.all([w.run(whereAmI, target, 0), w.run(linkNames, target, null)]);
  const missing = await w.run(missingLink, target, 'nope0').catch(describeError);
  const badPath = await w.run(whereAmI, '/nonexistent/netns', 0).catch(describeError);
  const notSyncErr = await w.run(notSync, target, null).catch(describeError);
  const afterErrors = await w.run(whereAmI, target, 0);
  await w.close();
  const waitAsync = await linkUpWhileWaiting(target);
  const out = { waitAsync, mainBefore, mainAfter: threadNetns(), target: statSync(target).ino, held, again, afterErrors, samples, links, missing, badPath, notSync: notSyncErr };
  process.stdout.write(JSON.stringify(out) + '\n');
}

/**
 * waitForLinkAsync on the real kernel: a timer sets nwa0 up 100 ms into the wait. It can fire only
 * if the wait leaves the event loop free; a blocking wait would time out after 3 s instead.
 */
async function linkUpWhileWaiting(target: string): Promise<Record<string, unknown>> {
  const nl = openNetlink(target);
  const other = openNetlink(target);
  try {
    const t0 = Date.now();
    let firedAt = -1;
    setTimeout(() => {
      firedAt = Date.now() - t0;
      setLinkUp(other, 'nwa0');
    }, 100);
    const link = await waitForLinkAsync(nl, 'nwa0', (l) => l.up, 3000).catch(describeError);
    return { up: 'up' in link ? link.up : link, firedAt, doneAt: Date.now() - t0 };
  } finally {
    nl.close();
    other.close();
  }
}

if (isNetnsWorkerThread()) serveNetnsJobs();
else void main();
