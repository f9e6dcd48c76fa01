// The CNI side of a join: a network list run through our runner (libcni semantics, result cached in
// libcni's format) with CNI_CONTAINERID = sandbox ID, CNI_IFNAME = the endpoint's ethN, CNI_NETNS =
// the sandbox key. Shared by the drivers whose networks are CNI chains.
import { confListFromBytes } from '../../runner/conf';
import { resultMap } from '../../runner/result';
import type { RuntimeConf } from '../../runner/runner';
import { failed } from '../errors';
import type { DriverContext, JoinRequest, JoinResult } from './driver';

/** Writes `<state>/net.d/<name>.conflist` (atomic, 0600). */
export function writeConflist(ctx: DriverContext, name: string, list: Record<string, unknown>): void {
  ctx.netDir.writeAtomic(`${name}.conflist`, JSON.stringify(list, null, 2) + '\n', { mode: 0o600 });
}

export function removeConflist(ctx: DriverContext, name: string): void {
  ctx.netDir.unlink(`${name}.conflist`);
}

/** What a join passes besides the list: capability arguments (runtimeConfig) and CNI_ARGS pairs. */
export interface AttachArgs {
  capabilityArgs?: Record<string, unknown>;
  args?: Array<[string, string]>;
}

const runtimeConf = (j: JoinRequest, a: AttachArgs): RuntimeConf => ({
  containerID: j.sandbox.id,
  netns: j.sandbox.key,
  ifName: j.ifName,
  args: a.args ?? [],
  capabilityArgs: a.capabilityArgs ?? {},
});

const listOf = (list: Record<string, unknown>) => confListFromBytes(Buffer.from(JSON.stringify(list)));

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * CNI ADD of `list` for the join; returns the first IPv4/IPv6 address and the MAC of the sandbox
 * interface the result names. On failure the attachment is DEL'ed again (best effort) before the
 * error is thrown: a failed join leaves nothing behind.
 */
export async function cniAdd(ctx: DriverContext, list: Json, j: JoinRequest, a: AttachArgs = {}): Promise<JoinResult> {
  const conf = listOf(list);
  const rt = runtimeConf(j, a);
  let res: Json;
  try {
    res = resultMap(await ctx.runner.addNetworkList(conf, rt));
  } catch (e) {
    await ctx.runner.delNetworkList(conf, rt).catch(() => undefined);
    throw failed(`joining sandbox ${JSON.stringify(j.sandbox.name)} to network ${JSON.stringify(j.network.name)}`, e);
  }
  const ifaces = Array.isArray(res.interfaces) ? res.interfaces.filter(isObj) : [];
  const idx = ifaces.findIndex((i) => i.name === j.ifName && (i.sandbox === undefined || i.sandbox === j.sandbox.key));
  const out: JoinResult = {};
  if (idx >= 0 && typeof ifaces[idx]!.mac === 'string') out.mac = ifaces[idx]!.mac as string;
  for (const ip of Array.isArray(res.ips) ? res.ips.filter(isObj) : []) {
    if (ip.interface !== undefined && ip.interface !== idx) continue;
    const a = typeof ip.address === 'string' ? ip.address : '';
    if (a.includes(':')) out.ipv6 ??= a;
    else if (a) out.ipv4 ??= a;
  }
  return out;
}

/** CNI DEL of `list` for the join, with the cached result as prevResult (runner). */
export async function cniDel(ctx: DriverContext, list: Json, j: JoinRequest, a: AttachArgs = {}): Promise<void> {
  try {
    await ctx.runner.delNetworkList(listOf(list), runtimeConf(j, a));
  } catch (e) {
    throw failed(`disconnecting sandbox ${JSON.stringify(j.sandbox.name)} from network ${JSON.stringify(j.network.name)}`, e);
  }
}
