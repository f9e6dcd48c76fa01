// Running a network list the way libcni does (cni:libcni/api.go; spec §3 "Execution of Network
// Configurations"): ADD in order with prevResult chaining, DEL in reverse with the cached result,
// CHECK, GC and STATUS; the result cache is written after a successful ADD and removed after DEL.
import { CniError, ErrInvalidNetworkConfig } from '../shared/cni/errors';
import { validAttachmentsConf, type GCAttachment } from '../shared/cni/gc';
import { processExecutor, type Executor } from '../shared/cni/exec';
import { findInPath } from '../shared/cni/invoke';
import { validateContainerID, validateIfName, validateNetworkName, type Verb } from '../shared/cni/skel';
import { atLeast } from '../shared/cni/version';
import { DEFAULT_CACHE_DIR, listCached, readCachedResult, removeCache, writeCache, type Attachment } from './cache';
import type { NetworkConfList, PluginConf } from './conf';
import { goMarshal } from './gojson';
import { decodeResult, resultMap, type PluginResult } from './result';

/** The attachment a verb is about (libcni RuntimeConf). */
export interface RuntimeConf {
  containerID: string;
  netns: string;
  ifName: string;
  args?: Array<[string, string]>; // sent as CNI_ARGS
  capabilityArgs?: Record<string, unknown>; // filtered by each plugin's capabilities into runtimeConfig
}

export type { GCAttachment } from '../shared/cni/gc';

export interface RunnerOptions {
  path: string[]; // CNI_PATH directories
  cacheDir?: string; // default: env CNI_CACHEDIR, else /var/lib/cni
  timeoutMs?: number; // per plugin execution; default 60 s
  env?: NodeJS.ProcessEnv; // base environment for plugins; default process.env
  onStderr?: (chunk: Buffer) => void; // each plugin's stderr (also quoted in its error when stdout is empty)
  executor?: Executor; // how plugins run; default: exec each one (processExecutor)
  signal?: AbortSignal; // cancels the plugin running when it fires (the operation fails)
}

/** A failed list operation. `code` is the failing plugin's CNI error code when there is one. */
export class RunnerError extends Error {
  override name = 'RunnerError';
  constructor(
    message: string,
    readonly code?: number,
    options?: { cause?: unknown }, // the plugin's error (an AggregateError of them when several failed)
  ) {
    super(message, options);
  }
}

const describe = (p: PluginConf): string => `type=${JSON.stringify(p.type)}${typeof p.raw.name === 'string' && p.raw.name ? ` name=${JSON.stringify(p.raw.name)}` : ''}`;

/** libcni prints a types.Error as "msg; details". */
function errText(e: unknown): { text: string; code?: number } {
  if (e instanceof CniError) return { text: e.details ? `${e.message}; ${e.details}` : e.message, code: e.code };
  if (e instanceof RunnerError) return { text: e.message, code: e.code };
  return { text: e instanceof Error ? e.message : String(e) };
}

function wrap(p: PluginConf, verb: string, e: unknown): RunnerError {
  const { text, code } = errText(e);
  return new RunnerError(`plugin ${describe(p)} failed (${verb}): ${text}`, code, { cause: e });
}

export class Runner {
  private readonly cacheDir: string;
  private readonly timeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly executor: Executor;

  constructor(private readonly o: RunnerOptions) {
    this.env = o.env ?? process.env;
    this.executor = o.executor ?? processExecutor;
    this.cacheDir = o.cacheDir || this.env.CNI_CACHEDIR || DEFAULT_CACHE_DIR;
    this.timeoutMs = o.timeoutMs ?? 60_000;
  }

  /** The version results are parsed and printed in: a list without cniVersion means 0.1.0. */
  private static version(list: NetworkConfList): string {
    return list.cniVersion || '0.1.0';
  }

  private static validate(list: NetworkConfList, rt: RuntimeConf): void {
    // These become parts of the cache file name: check them before any path is built.
    validateNetworkName(list.name);
    validateContainerID(rt.containerID);
    validateIfName(rt.ifName);
  }

  /** What libcni sends on stdin: the plugin object + name, cniVersion, prevResult, runtimeConfig. */
  private static stdin(list: NetworkConfList, p: PluginConf, prev: PluginResult | null, rt: RuntimeConf | null, extra?: Record<string, unknown>): Buffer {
    const conf: Record<string, unknown> = { ...p.raw, name: list.name, cniVersion: list.cniVersion };
    // libcni injects the result struct as it is (ADD: in the version the previous plugin printed).
    if (prev) conf.prevResult = prev.value;
    if (rt) {
      // runtimeConfig = the capabilities this plugin enables ∩ what the caller passed (spec §3).
      const rc: Record<string, unknown> = {};
      for (const [cap, on] of Object.entries(p.capabilities)) if (on && rt.capabilityArgs && cap in rt.capabilityArgs) rc[cap] = rt.capabilityArgs[cap];
      if (Object.keys(rc).length) conf.runtimeConfig = rc;
    }
    Object.assign(conf, extra);
    // libcni re-marshals the config from a map: sorted keys, Go escaping.
    return Buffer.from(goMarshal(conf));
  }

  private async exec(verb: Verb, p: PluginConf, stdin: Buffer, rt: RuntimeConf | null): Promise<string> {
    const file = findInPath(p.type, this.o.path.join(':'));
    const env: NodeJS.ProcessEnv = {
      ...this.env,
      CNI_COMMAND: verb,
      CNI_CONTAINERID: rt?.containerID ?? '',
      CNI_NETNS: rt?.netns ?? '',
      CNI_ARGS: (rt?.args ?? []).map(([k, v]) => `${k}=${v}`).join(';'),
      CNI_IFNAME: rt?.ifName ?? '',
      CNI_PATH: this.o.path.join(':'),
    };
    // stderr is always captured: libcni quotes it when a plugin fails without an error on stdout.
    const onStderr = this.o.onStderr ?? ((): void => {});
    return this.executor.exec({ file, env, stdin, timeoutMs: this.timeoutMs, signal: this.o.signal, onStderr });
  }

  /**
   * ADD: the final result in the version its plugin printed it, as libcni holds it (result.ts), so
   * that printing and caching never depend on a conversion.
   */
  async addNetworkList(list: NetworkConfList, rt: RuntimeConf): Promise<PluginResult> {
    Runner.validate(list, rt);
    const ver = Runner.version(list);
    let result: PluginResult | null = null;
    for (const p of list.plugins) {
      try {
        const out = await this.exec('ADD', p, Runner.stdin(list, p, result, rt), rt);
        let raw: unknown;
        try {
          raw = JSON.parse(out);
        } catch {
          throw new CniError(ErrInvalidNetworkConfig, `plugin returned no valid result JSON: ${JSON.stringify(out.trim().slice(0, 200))}`);
        }
        result = decodeResult(raw, ver);
      } catch (e) {
        throw wrap(p, 'add', e);
      }
    }
    if (!result) throw new RunnerError(`network "${list.name}" has no plugins`);
    try {
      writeCache(this.cacheDir, list.name, attachment(rt), list.bytes, resultMap(result));
    } catch (e) {
      throw new RunnerError(`failed to set network ${JSON.stringify(list.name)} cached result: ${(e as Error).message}`);
    }
    return result;
  }

  /** The cached final result in the list's version, or null (missing, or unreadable: dropped). */
  cachedResult(list: NetworkConfList, rt: RuntimeConf): PluginResult | null {
    Runner.validate(list, rt);
    return readCachedResult(this.cacheDir, list.name, rt.containerID, rt.ifName, Runner.version(list));
  }

  async checkNetworkList(list: NetworkConfList, rt: RuntimeConf): Promise<void> {
    Runner.validate(list, rt);
    const ver = Runner.version(list);
    if (!atLeast(ver, '0.4.0')) throw new RunnerError(`configuration version ${JSON.stringify(ver)} does not support the CHECK command`);
    if (list.disableCheck) return;
    let cached: PluginResult | null;
    try {
      cached = readCachedResult(this.cacheDir, list.name, rt.containerID, rt.ifName, ver);
    } catch (e) {
      throw new RunnerError(`failed to get network ${JSON.stringify(list.name)} cached result: ${errText(e).text}`);
    }
    for (const p of list.plugins) {
      try {
        await this.exec('CHECK', p, Runner.stdin(list, p, cached, rt), rt);
      } catch (e) {
        throw wrap(p, 'check', e);
      }
    }
  }

  async delNetworkList(list: NetworkConfList, rt: RuntimeConf): Promise<void> {
    Runner.validate(list, rt);
    const ver = Runner.version(list);
    let cached: PluginResult | null = null;
    // prevResult on DEL came with 0.4.0; a corrupt entry is dropped, DEL must still run (spec §1.6).
    if (atLeast(ver, '0.4.0')) {
      try {
        cached = readCachedResult(this.cacheDir, list.name, rt.containerID, rt.ifName, ver);
      } catch {
        cached = null;
      }
    }
    // Unlike libcni, a plugin that is missing or fails does not stop DEL (issue 10): the others
    // still release what they hold (a bridge's veth, leases, masquerade rules), then every failure
    // is reported together and the cache entry stays for the runtime's retry.
    const failures: RunnerError[] = [];
    for (const p of [...list.plugins].reverse()) {
      try {
        await this.exec('DEL', p, Runner.stdin(list, p, cached, rt), rt);
      } catch (e) {
        failures.push(wrap(p, 'delete', e));
      }
    }
    if (failures.length === 1) throw failures[0]!;
    if (failures.length > 1) throw new RunnerError(failures.map((f) => f.message).join('; '), failures[0]!.code, { cause: new AggregateError(failures) });
    removeCache(this.cacheDir, list.name, rt.containerID, rt.ifName);
  }

  /**
   * GC (spec 1.1.0): DEL every cached attachment of this network that is not valid, then send GC with
   * `cni.dev/valid-attachments` to every plugin. Errors are collected, not fatal (libcni 1.2).
   * `sendGC: false` stops after the DELs: for a caller whose cache holds only part of the network's
   * attachments (a conflist other runtimes use too), GC's "everything else is stale" would be wrong.
   */
  async gcNetworkList(list: NetworkConfList, valid: GCAttachment[] = [], o: { sendGC?: boolean } = {}): Promise<void> {
    validateNetworkName(list.name);
    if (list.disableGC) return;
    const errs: string[] = [];
    const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
    for (const c of listCached(this.cacheDir, list.name)) {
      if (keep.has(`${c.containerId}\0${c.ifName}`)) continue;
      const rt: RuntimeConf = { containerID: c.containerId, ifName: c.ifName, netns: c.netns ?? '', args: c.cniArgs ?? [], capabilityArgs: c.capabilityArgs ?? {} };
      try {
        await this.delNetworkList(list, rt);
      } catch (e) {
        errs.push(`failed to delete stale attachment ${c.containerId} ${c.ifName}: ${errText(e).text}`);
      }
    }
    if (o.sendGC !== false && atLeast(Runner.version(list), '1.1.0')) {
      const extra = validAttachmentsConf(valid);
      for (const p of list.plugins) {
        try {
          await this.exec('GC', p, Runner.stdin(list, p, null, null, extra), null);
        } catch (e) {
          errs.push(wrap(p, 'gc', e).message);
        }
      }
    }
    if (errs.length) throw new RunnerError(errs.join('\n'));
  }

  /** STATUS (spec 1.1.0): every plugin must be ready; lists older than 1.1.0 have no STATUS. */
  async statusNetworkList(list: NetworkConfList): Promise<void> {
    validateNetworkName(list.name);
    if (!atLeast(Runner.version(list), '1.1.0')) return;
    for (const p of list.plugins) {
      try {
        await this.exec('STATUS', p, Runner.stdin(list, p, null, null), null);
      } catch (e) {
        throw wrap(p, 'status', e);
      }
    }
  }
}

function attachment(rt: RuntimeConf): Attachment {
  return { containerID: rt.containerID, ifName: rt.ifName, netns: rt.netns, args: rt.args ?? [], capabilityArgs: rt.capabilityArgs ?? {} };
}
