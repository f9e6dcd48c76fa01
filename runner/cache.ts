// The result cache, byte-compatible with libcni's cniCacheV1 (cni:libcni/api.go cacheAdd): one file
// `<cacheDir>/results/<net>-<containerID>-<ifname>` per attachment, mode 0600 in a 0700 dir, so
// containerd, the real cnitool and our cnitool can read each other's entries.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { goMarshal, goString } from './gojson';
import { resultVersion } from '../shared/cni/types';
import { resultAsVersion, type PluginResult } from './result';
import { writeFileAtomic } from '../shared/linux/files';

export const CNI_CACHE_V1 = 'cniCacheV1';
export const DEFAULT_CACHE_DIR = '/var/lib/cni';

export interface Attachment {
  containerID: string;
  ifName: string;
  netns?: string;
  args: Array<[string, string]>; // CNI_ARGS pairs
  capabilityArgs: Record<string, unknown>;
}

export interface CacheEntry {
  kind: string;
  containerId: string;
  config: Buffer; // the list bytes the ADD ran with
  ifName: string;
  networkName: string;
  netns?: string; // libcni ≥ 1.2: GC DELs stale attachments in the netns they were made in
  cniArgs?: Array<[string, string]>;
  capabilityArgs?: Record<string, unknown>;
  result?: Record<string, unknown>; // in the list's cniVersion at ADD time
}

export function cacheFile(cacheDir: string, net: string, containerID: string, ifName: string): string {
  return join(cacheDir, 'results', `${net}-${containerID}-${ifName}`);
}

/** The exact bytes libcni (≥ 1.2) writes: struct fields in declaration order, maps with sorted keys. */
export function encodeEntry(e: CacheEntry): string {
  const parts = [
    `"kind":${goString(e.kind)}`,
    `"containerId":${goString(e.containerId)}`,
    `"config":${goString(e.config.toString('base64'))}`,
    `"ifName":${goString(e.ifName)}`,
    `"networkName":${goString(e.networkName)}`,
  ];
  if (e.netns) parts.push(`"netns":${goString(e.netns)}`);
  if (e.cniArgs?.length) parts.push(`"cniArgs":${goMarshal(e.cniArgs)}`);
  if (e.capabilityArgs && Object.keys(e.capabilityArgs).length) parts.push(`"capabilityArgs":${goMarshal(e.capabilityArgs)}`);
  if (e.result && Object.keys(e.result).length) parts.push(`"result":${goMarshal(e.result)}`);
  return `{${parts.join(',')}}`;
}

/** Writes the entry for an ADD; `result` is the final result as a map (result.ts resultMap). */
export function writeCache(cacheDir: string, net: string, a: Attachment, config: Buffer, result: Record<string, unknown>): void {
  const file = cacheFile(cacheDir, net, a.containerID, a.ifName);
  const entry: CacheEntry = {
    kind: CNI_CACHE_V1,
    containerId: a.containerID,
    config,
    ifName: a.ifName,
    networkName: net,
    netns: a.netns,
    cniArgs: a.args,
    capabilityArgs: a.capabilityArgs,
    result,
  };
  mkdirSync(join(cacheDir, 'results'), { recursive: true, mode: 0o700 });
  // A reader (containerd, a concurrent DEL) never sees half a file; a planted symlink is not followed.
  writeFileAtomic(file, encodeEntry(entry), { mode: 0o600 });
}

export function removeCache(cacheDir: string, net: string, containerID: string, ifName: string): void {
  rmSync(cacheFile(cacheDir, net, containerID, ifName), { force: true });
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses a cache file; null when it is not a cniCacheV1 entry. */
export function decodeEntry(text: string): CacheEntry | null {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(o) || o.kind !== CNI_CACHE_V1 || typeof o.containerId !== 'string' || typeof o.ifName !== 'string' || typeof o.networkName !== 'string')
    return null;
  const entry: CacheEntry = {
    kind: CNI_CACHE_V1,
    containerId: o.containerId,
    ifName: o.ifName,
    networkName: o.networkName,
    config: Buffer.from(typeof o.config === 'string' ? o.config : '', 'base64'),
  };
  if (typeof o.netns === 'string' && o.netns) entry.netns = o.netns;
  if (Array.isArray(o.cniArgs)) entry.cniArgs = o.cniArgs.filter((p): p is [string, string] => Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'string'));
  if (isObj(o.capabilityArgs)) entry.capabilityArgs = o.capabilityArgs;
  if (isObj(o.result)) entry.result = o.result;
  return entry;
}

/**
 * The cached final result, converted to `version` as libcni's GetAsVersion does (what plugins get as
 * prevResult on DEL/CHECK). A legacy cache file is a bare result. Missing → null; unreadable or
 * unconvertible → throws.
 */
export function readCachedResult(cacheDir: string, net: string, containerID: string, ifName: string, version: string): PluginResult | null {
  let text: string;
  try {
    text = readFileSync(cacheFile(cacheDir, net, containerID, ifName), 'utf8');
  } catch {
    return null; // libcni ignores read errors: the entry may simply not exist
  }
  const entry = decodeEntry(text);
  const raw: unknown = entry ? entry.result : JSON.parse(text);
  if (!isObj(raw)) return null;
  const from = resultVersion(raw, version);
  return resultAsVersion(raw, from, version);
}

/** Every cniCacheV1 entry of `net` (what GC compares with the valid attachments). */
export function listCached(cacheDir: string, net: string): CacheEntry[] {
  const dir = join(cacheDir, 'results');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: CacheEntry[] = [];
  for (const n of names.sort()) {
    if (!n.startsWith(`${net}-`)) continue;
    let e: CacheEntry | null = null;
    try {
      e = decodeEntry(readFileSync(join(dir, n), 'utf8'));
    } catch {
      /* unreadable: not ours to judge */
    }
    if (e && e.networkName === net) out.push(e);
  }
  return out;
}
