// The bandwidth plugin's network configuration (the reference's PluginConf and BandwidthEntry in
// plugins/meta/bandwidth): the four limits at the top level or, when none of them is there, in
// runtimeConfig.bandwidth (the "bandwidth" capability). Rates are bits/s, bursts bits.
import * as z from 'zod/mini';
import { configError, opt, parseConfig, sparseObject } from '../../../shared/cni/config';
import type { CmdArgs } from '../../../shared/cni/skel';
import { timeToTicks } from '../../../shared/linux/netlink/tc';

const LIMIT_KEYS = ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const;
// The newer reference's HTB mode splits traffic by subnet; tbf shapes all of it, so these are refused.
const SUBNET_KEYS = ['shapedSubnets', 'unshapedSubnets'] as const;
const U32_MAX = 0xffffffff;
const BITS = `must be a whole number of bits between 0 and ${Number.MAX_SAFE_INTEGER}`;

const bits = () => opt(z.int().check(z.minimum(0, BITS), z.maximum(Number.MAX_SAFE_INTEGER, BITS)));
const subnets = () => opt(z.array(z.string()));
const entryShape = { ingressRate: bits, ingressBurst: bits, egressRate: bits, egressBurst: bits, shapedSubnets: subnets, unshapedSubnets: subnets };

function bandwidthConfSchema(raw: unknown) {
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: () => opt(z.string()),
      ...entryShape,
      runtimeConfig: (v) => opt(sparseObject(v, { bandwidth: (b) => opt(sparseObject(b, entryShape, { loose: true })) }, { loose: true })),
      prevResult: () => opt(z.unknown()),
    },
    { required: ['name'], loose: true },
  );
}

/** tbf's latency: how long a packet may wait in the queue (the reference's latencyInMillis). */
export const LATENCY_MS = 25;

/**
 * A limit as tbf parameters, computed as the reference's createTBF does so the kernel holds the
 * same values: rate in bytes/s (bits / 8, truncated), buffer = burst's transmit time at that rate in
 * scheduler ticks, limit = rate × 25 ms + burst in bytes. A buffer beyond a u32 is saturated (Go's
 * conversion in the reference wraps it to an arbitrary smaller value).
 */
export function tbfFor(l: Limit): { rate: number; buffer: number; limit: number } {
  const rate = Math.floor(l.rate / 8);
  const burst = Math.floor(l.burst / 8);
  return {
    rate,
    buffer: timeToTicks((burst * 1e6) / rate),
    limit: Math.floor((rate * (1e6 * (LATENCY_MS / 1000))) / 1e6) + burst,
  };
}

/** One direction's limit: rate in bits/s and burst in bits, both > 0. */
export interface Limit {
  rate: number;
  burst: number;
}

export interface BandwidthConf {
  name: string;
  /** traffic to the pod (tbf on the host veth); undefined: unlimited */
  ingress: Limit | undefined;
  /** traffic from the pod (tbf on the ifb its packets are redirected to); undefined: unlimited */
  egress: Limit | undefined;
  prevResult: unknown;
}

type Entry = Partial<Record<(typeof LIMIT_KEYS)[number], number | null> & Record<(typeof SUBNET_KEYS)[number], string[] | null>>;

/**
 * Parses the stdin config. The top-level limits win as a whole when any of their keys is present
 * (Go allocates the embedded *BandwidthEntry then), else runtimeConfig.bandwidth is used. Throws
 * CniError code 7 naming the field and value: a negative or fractional number, a rate without its
 * burst (or the reverse), a burst of 4 GB (2^32 bytes) or more, a rate or burst under one byte
 * (8 bits: tbf cannot shape at 0 bytes/s, and a 0-byte bucket passes nothing), shaped/unshapedSubnets.
 */
export function loadBandwidthConf(a: Pick<CmdArgs, 'conf'>): BandwidthConf {
  const c = parseConfig(bandwidthConfSchema(a.conf), a.conf);
  const topLevel = [...LIMIT_KEYS, ...SUBNET_KEYS].some((k) => Object.hasOwn(a.conf, k));
  const entry: Entry = topLevel ? c : (c.runtimeConfig?.bandwidth ?? {});
  const at = topLevel ? '' : 'runtimeConfig.bandwidth.';
  for (const k of SUBNET_KEYS)
    if (entry[k]?.length) throw configError(at + k, entry[k], 'subnet-based shaping is not supported: tbf shapes all of the pod\'s traffic');
  return {
    name: c.name,
    ingress: limitOf(entry, at, 'ingress'),
    egress: limitOf(entry, at, 'egress'),
    prevResult: c.prevResult ?? undefined,
  };
}

/**
 * Only the network name (code 7 when it is missing or not a string), for DEL, GC and STATUS: they
 * need nothing else, and a limit refused here but taken by the reference's ADD must not stop the
 * DEL of a pod a node switched over.
 */
export function loadNetworkName(a: Pick<CmdArgs, 'conf'>): string {
  return parseConfig(sparseObject(a.conf, { name: () => z.string() }, { required: ['name'], loose: true }), a.conf).name;
}

/** The reference's validateRateAndBurst for one direction, naming the field at fault. */
function limitOf(e: Entry, at: string, dir: 'ingress' | 'egress'): Limit | undefined {
  const rate = e[`${dir}Rate`] ?? 0;
  const burst = e[`${dir}Burst`] ?? 0;
  if (rate === 0 && burst === 0) return undefined;
  if (burst === 0) throw configError(`${at}${dir}Burst`, e[`${dir}Burst`], `if rate is set, burst must also be set (${dir}Rate is ${rate})`);
  if (rate === 0) throw configError(`${at}${dir}Rate`, e[`${dir}Rate`], `if burst is set, rate must also be set (${dir}Burst is ${burst})`);
  if (Math.floor(burst / 8) >= U32_MAX) throw configError(`${at}${dir}Burst`, burst, 'burst cannot be more than 4GB');
  if (rate < 8) throw configError(`${at}${dir}Rate`, rate, 'must be at least 8 bits/s (one byte per second)');
  if (burst < 8) throw configError(`${at}${dir}Burst`, burst, 'must be at least 8 bits (one byte)');
  if (tbfFor({ rate, burst }).limit > U32_MAX)
    throw configError(`${at}${dir}Rate`, rate, `with ${dir}Burst ${burst} the tbf queue (25 ms at this rate plus the burst) exceeds 4 GB`);
  return { rate, burst };
}
