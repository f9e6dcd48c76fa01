// The etcd client of the overlay (agent and CNM driver): endpoint parsing with errors naming the
// value, and a client whose unary calls have a deadline (an unreachable etcd fails a call in
// seconds instead of waiting forever; watch streams have none, they live as long as the agent).
import type { Etcd3, IOptions } from 'etcd3';
import { parseIP } from '../shared/ip';

// Per try of a unary call. A member without a leader (the leader died; the others elect one within
// about an election timeout) drops a proposal such as a lease grant or a txn and answers only at its
// own request timeout (5 s + 2 election timeouts): at 5 s, an agent starting during the election
// waited the whole 5 s (measured, 3 of 6 runs of the member-loss test); at 2 s it retries on another
// member after 2 s. etcd answers our calls in milliseconds otherwise.
const CALL_DEADLINE_MS = 2000;

/**
 * Parses "http://IP:2379[,http://IP2:2379...]" (etcd:// is accepted for http://, as Docker's
 * --cluster-store writes it). Throws Error naming the bad endpoint: only http and https, a host,
 * an explicit port 1..65535, no path.
 */
export function parseEndpoints(flag: string, value: string): string[] {
  const out: string[] = [];
  for (const raw of value.split(',').map((s) => s.trim())) {
    const bad = (why: string): never => {
      throw new Error(`${flag} ${JSON.stringify(raw)}: ${why} (expected http://IP:PORT[,http://IP2:PORT...])`);
    };
    if (!raw) bad('empty endpoint');
    // The port from the text: URL drops a scheme's default one (http://h:80 has port ""), and
    // refuses one over 65535 as a whole ("not a URL").
    const port = /^[a-z][a-z0-9+.-]*:\/\/(?:[^/?#@]*@)?(?:\[[^\]]*\]|[^/?#:]*)(?::(\d*))?(?:[/?#]|$)/i.exec(raw)?.[1];
    if (port !== undefined && port !== '' && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) bad(`port ${port} is not 1..65535`);
    let u: URL;
    try {
      u = new URL(raw.replace(/^etcd:\/\//, 'http://'));
    } catch {
      return bad('not a URL');
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(`scheme ${u.protocol.replace(/:$/, '')} is not http or https`);
    if (!u.hostname) bad('no host');
    if (!port) bad('no port');
    if ((u.pathname && u.pathname !== '/') || u.search || u.hash || u.username) bad('an endpoint is scheme://host:port and nothing else');
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (!parseIP(host) && !/^[a-zA-Z0-9.-]+$/.test(host)) bad(`host ${host} is not an address or a name`);
    out.push(`${u.protocol}//${u.hostname}:${Number(port)}`);
  }
  return out;
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
type GlobalPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** How long an endpoint that did not answer is passed over while another one has not failed, ms. */
export const PASS_OVER_MS = 1000;

/** Thrown instead of calling an endpoint that is passed over: the pool tries the next one, retryOncePerEndpoint the call. */
export class EndpointPassedOver extends Error {}

/**
 * Whether `e` says the endpoint did not answer: gRPC UNAVAILABLE or DEADLINE_EXCEEDED, as a stream
 * emits it (`code`) or as etcd3 rethrows it (the same message, "14 UNAVAILABLE: ..."), and not an
 * answer of etcd's own under those codes: a live member says "etcdserver: no leader" or
 * "etcdserver: request timed out" while the cluster elects a leader. A cancelled stream (ours, at a
 * session's end) is no sign either.
 */
export function isUnreachable(e: unknown): boolean {
  if (!(e instanceof Error) || e.message.includes('etcdserver:')) return false;
  const code = (e as { code?: unknown }).code;
  return code === 14 || code === 4 || /^(14 UNAVAILABLE|4 DEADLINE_EXCEEDED):/.test(e.message);
}

interface GrpcStream {
  on(event: 'error', f: (e: unknown) => void): unknown;
  once(event: 'metadata', f: () => void): unknown;
}
const isStream = (r: unknown): r is GrpcStream => typeof (r as Partial<GrpcStream> | null)?.on === 'function' && typeof (r as Partial<GrpcStream>).once === 'function';

/**
 * The per-endpoint policies of one client, sharing when each endpoint last did not answer
 * (`isFailure`): a call or stream goes to an endpoint that failed in the last PASS_OVER_MS only
 * when every endpoint did; otherwise it throws EndpointPassedOver and the pool tries the next.
 * etcd3 picks a random endpoint per call and per watch reconnect: with one of three members killed,
 * a third of the watch's reconnects went to the dead one, each doubling the watch's backoff, and a
 * new host's record reached the last agent up to 470 ms late (15 trials, measured; 185 ms with
 * this). etcd3's own breaker refuses an endpoint for 5 s after 3 failures even when it is the only
 * one: a restarted single etcd was seen 4.5 s late (measured), longer than a short lease. A call
 * that returns clears its endpoint's mark; a stream (watch, lease keep-alive) is opened at once
 * whether the endpoint answers or not, so it clears the mark when the endpoint sends its headers
 * and sets it when it fails. `now` is for tests.
 */
export function passOverFailedEndpoints(hosts: string[], isFailure: (e: unknown) => boolean, now: () => number = Date.now): (host: string) => HostPolicy {
  const failedAt = new Map<string, number>();
  const recent = (h: string, t: number): boolean => t - (failedAt.get(h) ?? -Infinity) < PASS_OVER_MS;
  return (host) =>
    ({
      execute: async <T>(fn: () => T | Promise<T>): Promise<T> => {
        const t = now();
        if (recent(host, t) && hosts.some((h) => !recent(h, t))) throw new EndpointPassedOver(`etcd endpoint ${host} did not answer ${t - failedAt.get(host)!} ms ago`);
        let r: T;
        try {
          r = await fn();
        } catch (e) {
          if (isFailure(e)) failedAt.set(host, now());
          throw e;
        }
        if (isStream(r)) {
          r.once('metadata', () => failedAt.delete(host));
          r.on('error', (e) => isFailure(e) && failedAt.set(host, now()));
        } else failedAt.delete(host);
        return r;
      },
    }) as unknown as HostPolicy;
}

/**
 * The global policy: a call tries each endpoint once (the pool picks another one per try), then
 * fails with the last endpoint's error (etcd3's default retried 3 more times, so a call to an etcd
 * whose host does not answer took 12 s, measured, longer than a short lease, before the agent's
 * own backoff ran). A try on which the pool met only passed-over endpoints (its shuffled picks can
 * repeat them) does not count; after hosts.length such tries the call fails with the last real
 * error, or the EndpointPassedOver when there was none.
 */
export function retryOncePerEndpoint(hosts: string[], isRecoverable: (e: Error) => boolean): GlobalPolicy {
  return {
    execute: async <T>(fn: () => T | Promise<T>): Promise<T> => {
      let lastFailure: unknown;
      for (let tried = 0, skipped = 0; ; ) {
        try {
          return await fn();
        } catch (e) {
          if (e instanceof EndpointPassedOver) {
            if (++skipped > hosts.length) throw lastFailure ?? e;
            continue;
          }
          lastFailure = e;
          if (++tried >= hosts.length || !isRecoverable(e as Error)) throw e;
        }
      }
    },
  } as unknown as GlobalPolicy;
}

/**
 * A client for `hosts` (parseEndpoints' output). Close it with close(). The etcd3 module is loaded
 * here, on first use (the build keeps it a separate chunk of the executable).
 */
export async function connectEtcd(hosts: string[]): Promise<Etcd3> {
  const { Etcd3, isRecoverableError } = await import('etcd3');
  return new Etcd3({
    hosts,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    faultHandling: { host: passOverFailedEndpoints(hosts, isUnreachable), global: retryOncePerEndpoint(hosts, isRecoverableError) },
  });
}

/** One line for an etcd failure: the library's errors carry gRPC detail; the endpoints make it actionable. */
export function etcdFailure(hosts: string[], e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return `etcd at ${hosts.join(',')}: ${msg.split('\n')[0]}`;
}
