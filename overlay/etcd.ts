// The etcd client of the overlay (agent and CNM driver): endpoint parsing with errors naming the
// value, and a client whose unary calls have a deadline (an unreachable etcd fails a call in
// seconds instead of waiting forever; watch streams have none, they live as long as the agent).
import type { Etcd3, IOptions } from 'etcd3';
import { parseIP } from '../shared/ip';

const CALL_DEADLINE_MS = 5000;

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

/** How long an endpoint whose call or stream failed is passed over while another one has not failed, ms. */
export const PASS_OVER_MS = 1000;

/** Thrown instead of calling an endpoint that is passed over; the pool then tries the next one. */
export class EndpointPassedOver extends Error {}

const isStream = (r: unknown): r is { on(event: 'error', f: (e: unknown) => void): unknown } => typeof (r as { on?: unknown } | null)?.on === 'function';

/**
 * The per-endpoint policies of one client, sharing what failed when: a call or stream goes to an
 * endpoint that failed (isFailure: unreachable, not an etcd answer) in the last PASS_OVER_MS only
 * when every endpoint did; a passed-over endpoint throws EndpointPassedOver and the pool tries the
 * next. etcd3 picks a random endpoint per call and per watch reconnect: with one of three members
 * killed, a third of the watch's reconnects went to the dead one, each doubling the watch's backoff,
 * and a new host's record reached the last agent up to 470 ms late (15 trials, measured); one CI run
 * had a new host's pods unreachable from one host for ~3 s. etcd3's own breaker refuses an endpoint
 * for 5 s after 3 failures even when it is the only one: a restarted single etcd was seen 4.5 s late
 * (measured), longer than a short lease. The pool calls execute() once per try; a stream's later
 * failure is seen on the stream itself. `now` is for tests.
 */
export function passOverFailedEndpoints(hosts: string[], isFailure: (e: unknown) => boolean, now: () => number = Date.now): (host: string) => HostPolicy {
  const failedAt = new Map<string, number>();
  const recent = (h: string, t: number): boolean => t - (failedAt.get(h) ?? -Infinity) < PASS_OVER_MS;
  return (host) =>
    ({
      execute: async <T>(fn: () => T | Promise<T>): Promise<T> => {
        const t = now();
        if (recent(host, t) && hosts.some((h) => !recent(h, t))) throw new EndpointPassedOver(`etcd endpoint ${host} failed ${t - failedAt.get(host)!} ms ago`);
        try {
          const r = await fn();
          failedAt.delete(host);
          // A stream (watch, lease keep-alive) opens at once and fails later, on the endpoint it chose.
          if (isStream(r)) r.on('error', (e) => isFailure(e) && failedAt.set(host, now()));
          return r;
        } catch (e) {
          if (isFailure(e)) failedAt.set(host, now());
          throw e;
        }
      },
    }) as unknown as HostPolicy;
}

/**
 * A client for `hosts` (parseEndpoints' output). Close it with close(). The etcd3 module is loaded
 * here, on first use (the build keeps it a separate chunk of the executable).
 */
export async function connectEtcd(hosts: string[]): Promise<Etcd3> {
  const { Etcd3, isRecoverableError, castGrpcError, GRPCUnavailableError, GRPCDeadlineExceededError } = await import('etcd3');
  // A call tries each endpoint once (the pool picks another one per try), then fails: etcd3's
  // default retried 3 more times, so a call to an etcd whose host does not answer took 4 dial
  // timeouts (12 s, measured), longer than a short lease, before the agent's own backoff ran.
  const oncePerEndpoint = {
    execute: async <T>(fn: () => T | Promise<T>): Promise<T> => {
      for (let tried = 1; ; tried++) {
        try {
          return await fn();
        } catch (e) {
          if (tried >= hosts.length || !isRecoverableError(e as Error)) throw e;
        }
      }
    },
  } as unknown as GlobalPolicy;
  // Only the endpoint's own failures: a cancelled stream (ours, at a session's end) is no sign of one.
  const unreachable = (e: unknown): boolean => {
    const c = e instanceof Error ? castGrpcError(e) : e;
    return c instanceof GRPCUnavailableError || c instanceof GRPCDeadlineExceededError;
  };
  return new Etcd3({
    hosts,
    dialTimeout: 3000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    faultHandling: { host: passOverFailedEndpoints(hosts, unreachable), global: oncePerEndpoint },
  });
}

/** One line for an etcd failure: the library's errors carry gRPC detail; the endpoints make it actionable. */
export function etcdFailure(hosts: string[], e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return `etcd at ${hosts.join(',')}: ${msg.split('\n')[0]}`;
}
