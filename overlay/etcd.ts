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

/**
 * Every call tries the endpoint again. etcd3's default per-endpoint circuit breaker refuses an
 * endpoint for 5 s after 3 failures, so an agent saw a restarted etcd only 4.5 s later (measured),
 * longer than a short lease; the agent has its own backoff. The pool only calls execute() on it.
 */
const passThrough = { execute: async <T>(fn: () => T | Promise<T>): Promise<T> => fn() } as unknown as HostPolicy;

/**
 * A client for `hosts` (parseEndpoints' output). Close it with close(). The etcd3 module is loaded
 * here, on first use (the build keeps it a separate chunk of the executable).
 */
export async function connectEtcd(hosts: string[]): Promise<Etcd3> {
  const { Etcd3, isRecoverableError } = await import('etcd3');
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
  return new Etcd3({
    hosts,
    dialTimeout: 3000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    faultHandling: { host: () => passThrough, global: oncePerEndpoint },
  });
}

/** One line for an etcd failure: the library's errors carry gRPC detail; the endpoints make it actionable. */
export function etcdFailure(hosts: string[], e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return `etcd at ${hosts.join(',')}: ${msg.split('\n')[0]}`;
}
