// The tuning plugin's network configuration (the reference's TuningConf in plugins/meta/tuning):
// schema, the precedence of its sources (config < CNI_ARGS < runtimeConfig < args.cni), and the
// rules a sysctl key must pass before it becomes a file under /proc/sys/net.
import * as z from 'zod/mini';
import { readFileSync } from 'node:fs';
import { loadArgs } from '../../../shared/cni/args';
import { configError, opt, parseConfig, sparseObject, stateDirFromConfig } from '../../../shared/cni/config';
import { CniError, ErrInvalidNetworkConfig, errorMessage } from '../../../shared/cni/errors';
import type { CmdArgs } from '../../../shared/cni/skel';
import { normalizeMAC } from '../../../shared/mac';

/** Where the original link values are saved between ADD and DEL (the reference's defaultDataDir). */
export const DEFAULT_DATA_DIR = '/run/cni/tuning';

const U32_MAX = 0xffffffff;
const MTU_MAX = 0x7fffffff; // the kernel judges the device's own limit; this only keeps it an int
const MTU_RANGE = `must be 0 (leave the MTU alone) or a positive MTU up to ${MTU_MAX}`;
// The reference takes a negative txQLen and sends it as a huge u32; refused here.
const TXQLEN_RANGE = `must be a packet count between 0 and ${U32_MAX}`;

/** The keys the reference reads both at the top level and from args.cni (its IPAMArgs). */
const TUNABLES = {
  sysctl: () => opt(z.record(z.string(), z.string())),
  mac: () => opt(z.string()),
  promisc: () => opt(z.boolean()),
  mtu: () => opt(z.int().check(z.minimum(0, MTU_RANGE), z.maximum(MTU_MAX, MTU_RANGE))),
  txQLen: () => opt(z.int().check(z.minimum(0, TXQLEN_RANGE), z.maximum(U32_MAX, TXQLEN_RANGE))),
  allmulti: () => opt(z.boolean()),
};

/** The schema for this config: only the keys it has are built (sparseObject). */
function tuningConfSchema(raw: unknown) {
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: () => opt(z.string()),
      dataDir: () => opt(z.string()),
      ...TUNABLES,
      runtimeConfig: (v) => opt(sparseObject(v, { mac: () => opt(z.string()) }, { loose: true })),
      args: (v) => opt(sparseObject(v, { cni: (c) => opt(sparseObject(c, TUNABLES, { loose: true })) }, { loose: true })),
      prevResult: () => opt(z.unknown()),
    },
    { required: ['name'], loose: true },
  );
}

/** A value with the config field it came from, for error messages. */
export interface Sourced<T> {
  value: T;
  field: string;
}

/** The parsed config: each key after its sources are merged; nothing is checked against the pod yet. */
export interface TuningConf {
  dataDir: string;
  /** sysctl entries in config order, args.cni.sysctl merged over them by key */
  sysctl: Array<Sourced<string> & { key: string }>;
  mac: Sourced<string> | undefined; // as given; planTuning checks and normalises it
  promisc: boolean;
  mtu: number; // 0: leave the MTU alone
  txQLen: number | undefined;
  allmulti: boolean | undefined;
  prevResult: unknown;
}

/**
 * Parses stdin config and CNI_ARGS (MAC=, with the IgnoreUnknown rule) with the reference's
 * precedence: the config's keys, then CNI_ARGS MAC, then runtimeConfig.mac (capability "mac"), then
 * args.cni.* (each overrides when present, as in the reference's parseConf). Throws CniError code 7
 * naming the field and value for a wrong type or range, code 4 for bad CNI_ARGS.
 */
export function loadTuningConf(a: Pick<CmdArgs, 'conf' | 'args'>): TuningConf {
  const c = parseConfig(tuningConfSchema(a.conf), a.conf);
  const cni = c.args?.cni ?? undefined;

  const sysctl = new Map<string, Sourced<string> & { key: string }>();
  for (const [key, value] of Object.entries(c.sysctl ?? {})) sysctl.set(key, { key, value, field: 'sysctl' });
  // The reference writes these into the config's map (and panics when the config has none).
  for (const [key, value] of Object.entries(cni?.sysctl ?? {})) sysctl.set(key, { key, value, field: 'args.cni.sysctl' });

  let mac: Sourced<string> | undefined = c.mac ? { value: c.mac, field: 'mac' } : undefined;
  const envMac = loadArgs(a.args, ['MAC']).MAC;
  if (envMac) mac = { value: envMac, field: 'CNI_ARGS MAC' };
  if (c.runtimeConfig?.mac) mac = { value: c.runtimeConfig.mac, field: 'runtimeConfig.mac' };
  if (cni?.mac != null) mac = cni.mac ? { value: cni.mac, field: 'args.cni.mac' } : undefined;

  return {
    dataDir: stateDirFromConfig('dataDir', c.dataDir, DEFAULT_DATA_DIR),
    sysctl: [...sysctl.values()],
    mac,
    promisc: cni?.promisc ?? c.promisc ?? false,
    mtu: cni?.mtu ?? c.mtu ?? 0,
    txQLen: cni?.txQLen ?? c.txQLen ?? undefined,
    allmulti: cni?.allmulti ?? c.allmulti ?? undefined,
    prevResult: c.prevResult ?? undefined,
  };
}

/** One sysctl to write in the pod: `path` is relative to /proc/sys ("net/ipv4/conf/eth0/rp_filter"). */
export interface SysctlSetting {
  key: string; // as the config spells it (what the allowlist matches)
  field: string;
  path: string;
  value: string;
}

/** What ADD applies and CHECK verifies, after the rules that need the interface name. */
export interface TuningPlan {
  sysctls: SysctlSetting[];
  mac: string | undefined; // normalised (lower-case colon hex)
  promisc: boolean;
  mtu: number;
  txQLen: number | undefined;
  allmulti: boolean | undefined;
}

/** True when ADD changes the link, so its original values must be saved first. */
export const changesLink = (p: TuningPlan): boolean =>
  p.mac !== undefined || p.promisc || p.mtu !== 0 || p.txQLen !== undefined || p.allmulti !== undefined;

const SYSCTL_RULE = 'a sysctl key must name a file under /proc/sys/net: net.* (or net/...), no empty, "." or ".." parts';

/**
 * The reference's getSysctlFilename: every "." becomes "/", then the first "IFNAME" becomes the
 * interface name (after the dots, so a name like eth0.100 stays one part). Unlike the reference,
 * which cleans the joined path and only checks the /proc/sys/net/ prefix, any "..", "." or empty
 * part is refused rather than resolved. Returns the path relative to /proc/sys; throws code 7.
 */
export function sysctlFile(key: string, ifName: string, field = 'sysctl'): string {
  const path = key.split('.').join('/').replace('IFNAME', ifName);
  const parts = path.split('/');
  if (parts[0] !== 'net' || parts.length < 2 || parts.some((p) => p === '' || p === '.' || p === '..') || path.includes('\0'))
    throw configError(field, key, SYSCTL_RULE);
  return path;
}

/**
 * Resolves the sysctl keys for `ifName` and checks the MAC: the rules ADD and CHECK share. Two
 * config keys naming the same file (e.g. "net.core.somaxconn" and "net/core/somaxconn") are refused:
 * the reference would write them in Go's random map order. Throws CniError code 7.
 */
export function planTuning(conf: TuningConf, ifName: string): TuningPlan {
  const byPath = new Map<string, SysctlSetting>();
  for (const s of conf.sysctl) {
    const path = sysctlFile(s.key, ifName, s.field);
    const other = byPath.get(path);
    if (other && other.field === s.field)
      throw configError(s.field, s.key, `names the same file (/proc/sys/${path}) as the key ${JSON.stringify(other.key)}`);
    byPath.set(path, { key: s.key, field: s.field, path, value: s.value });
  }
  let mac: string | undefined;
  if (conf.mac) {
    const m = normalizeMAC(conf.mac.value);
    if (!m) throw configError(conf.mac.field, conf.mac.value, 'not a MAC address (expected 6 hex pairs like 0a:58:c6:12:00:02)');
    mac = m;
  }
  return { sysctls: [...byPath.values()], mac, promisc: conf.promisc, mtu: conf.mtu, txQLen: conf.txQLen, allmulti: conf.allmulti };
}

/**
 * The first key that occurs twice in the top-level "sysctl" object of the stdin JSON, if any. The
 * reference (since v1.2) refuses such a config; JSON.parse silently keeps the last one, so this
 * scans the text. `json` has already parsed, so the scan can trust its syntax.
 */
export function duplicatedSysctlKey(json: string): string | undefined {
  let i = 0;
  const ws = (): void => {
    while (i < json.length && (json[i] === ' ' || json[i] === '\t' || json[i] === '\n' || json[i] === '\r')) i++;
  };
  const str = (): string => {
    const start = i++;
    while (json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(json.slice(start, i)) as string;
  };
  const skipValue = (): void => {
    ws();
    if (json[i] === '"') return void str();
    if (json[i] !== '{' && json[i] !== '[') {
      while (i < json.length && !',}] \t\n\r'.includes(json[i]!)) i++;
      return;
    }
    let depth = 0;
    do {
      if (json[i] === '"') {
        str();
        continue;
      }
      if (json[i] === '{' || json[i] === '[') depth++;
      else if (json[i] === '}' || json[i] === ']') depth--;
      i++;
    } while (depth > 0 && i < json.length);
  };
  /** Walks the members of the object at i, calling onMember with i at each value; it must consume it. */
  const members = (onMember: (key: string) => string | undefined): string | undefined => {
    ws();
    if (json[i] !== '{') return skipValue(), undefined;
    i++;
    for (;;) {
      ws();
      if (json[i] === '}') return void i++, undefined;
      const key = str();
      ws();
      i++; // ':'
      const found = onMember(key);
      if (found !== undefined) return found;
      ws();
      if (json[i] === ',') i++;
    }
  };
  const seen = new Set<string>(); // one set for every "sysctl" object, like the reference's package-level map
  return members((top) => {
    if (top !== 'sysctl') return skipValue(), undefined;
    return members((key) => {
      if (seen.has(key)) return key;
      seen.add(key);
      skipValue();
      return undefined;
    });
  });
}

/** ADD and CHECK refuse a config whose "sysctl" object repeats a key (the reference's validateSysctlConflictingKeys). */
export function rejectDuplicatedSysctlKeys(stdin: Buffer): void {
  const dup = duplicatedSysctlKey(stdin.toString('utf8'));
  if (dup !== undefined) throw configError('sysctl', dup, 'duplicated sysctl keys are not allowed');
}

/** The node's sysctl allowlist (the reference's /etc/cni/tuning/allowlist.conf). */
export const ALLOWLIST_FILE = '/etc/cni/tuning/allowlist.conf';

/**
 * The allowlist's patterns: one regular expression a line, blank lines skipped, each matched
 * unanchored against the key as the config spells it (the reference's regexp.MatchString). Throws
 * code 7 naming the file and line for a pattern that does not compile.
 */
export function parseAllowlist(text: string, file = ALLOWLIST_FILE): RegExp[] {
  const out: RegExp[] = [];
  text.split('\n').forEach((raw, n) => {
    const line = raw.trim();
    if (!line) return;
    try {
      out.push(new RegExp(line));
    } catch (e) {
      throw new CniError(ErrInvalidNetworkConfig, `invalid sysctl allowlist ${file}: line ${n + 1} ${JSON.stringify(line)} is not a regular expression`, errorMessage(e));
    }
  });
  return out;
}

/**
 * The allowlist's patterns (parseAllowlist), or undefined when the file is absent: then every net.*
 * key is allowed, as in the reference. Throws code 7 when it cannot be read or a line does not compile.
 */
export function readAllowlist(file = ALLOWLIST_FILE): RegExp[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CniError(ErrInvalidNetworkConfig, `failed to read the sysctl allowlist ${file}: ${errorMessage(e)}`, '', { cause: e });
  }
  return parseAllowlist(text, file);
}

/** Every sysctl must match a pattern of the allowlist; none is checked when there is no allowlist file. Throws code 7. */
export function checkAllowlist(sysctls: SysctlSetting[], allow: RegExp[] | undefined, file = ALLOWLIST_FILE): void {
  if (!allow) return;
  for (const s of sysctls) {
    if (!allow.some((re) => re.test(s.key)))
      throw configError(s.field, s.key, `not allowed by ${file} (allowed: ${allow.map((r) => r.source).join(' ') || 'none'})`);
  }
}
