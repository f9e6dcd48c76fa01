// Loading network configuration the way libcni does (cni:libcni/conf.go): `*.conflist` files in
// name order (the first whose `name` matches wins), plugin fragments from `<dir>/<name>/*.conf`
// unless `loadOnlyInlinedPlugins`, else a legacy single-plugin `*.conf`/`*.json` wrapped in a list.
import { jsonSyntaxError } from '../shared/cni/json';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { compareVersions, CURRENT_VERSION, parseVersion } from '../shared/cni/version';
import { NAME_RE } from '../shared/cni/skel';
import { goMarshal } from './gojson';

export type Json = Record<string, unknown>;

/** One plugin object of a list; `raw` is sent to the plugin with name/cniVersion/runtimeConfig injected. */
export interface PluginConf {
  type: string;
  capabilities: Record<string, boolean>;
  raw: Json;
}

export interface NetworkConfList {
  name: string;
  cniVersion: string; // the selected version ("" when the file gives none: libcni passes it on as is)
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: PluginConf[];
  bytes: Buffer; // the file as read: libcni caches exactly these bytes (cniCacheV1 `config`)
}

/** A configuration problem, worded like libcni's errors so users recognise them. */
export class ConfError extends Error {
  override name = 'ConfError';
}

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function parseJson(bytes: Buffer | string, what: string): Json {
  const text = bytes.toString();
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfError(`error parsing ${what}: ${jsonSyntaxError(text)}`, { cause: e });
  }
  if (!isObj(v)) throw new ConfError(`error parsing ${what}: expected a JSON object, got ${typeName(v)}`);
  return v;
}

/** libcni accepts a bool or a string strconv.ParseBool understands for the list flags. */
function readBool(o: Json, key: string): boolean {
  const v = o[key];
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
    if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  }
  throw new ConfError(`error parsing configuration list: invalid ${key} ${JSON.stringify(v)}: expected a boolean`);
}

export function pluginFromObject(o: Json, where: string): PluginConf {
  const t = o.type;
  if (t === undefined || t === '') throw new ConfError(`error parsing ${where}: missing 'type'`);
  if (typeof t !== 'string') throw new ConfError(`error parsing ${where}: invalid type ${JSON.stringify(t)}: expected a string`);
  const caps = o.capabilities;
  const capabilities: Record<string, boolean> = {};
  if (caps !== undefined && caps !== null) {
    if (!isObj(caps)) throw new ConfError(`error parsing ${where}: invalid capabilities ${JSON.stringify(caps)}: expected an object`);
    for (const [k, v] of Object.entries(caps)) {
      if (typeof v !== 'boolean') throw new ConfError(`error parsing ${where}: invalid capabilities.${k} ${JSON.stringify(v)}: expected a boolean`);
      capabilities[k] = v;
    }
  }
  return { type: t, capabilities, raw: o };
}

/**
 * The version the runtime uses: the highest of `cniVersions` ∪ {cniVersion} that this runner
 * implements; higher entries are dropped silently (spec §1 `cniVersions`, libcni 1.2).
 */
export function selectVersion(cniVersion: string, cniVersions: unknown): string {
  if (cniVersions === undefined) return cniVersion;
  if (!Array.isArray(cniVersions)) throw new ConfError(`error parsing configuration list: invalid type for cniVersions: ${typeName(cniVersions)}`);
  const vs: string[] = [];
  const consider = (v: string, where: string): void => {
    try {
      parseVersion(v);
    } catch {
      throw new ConfError(`error parsing configuration list: invalid ${where} ${JSON.stringify(v)}`);
    }
    if (compareVersions(v, CURRENT_VERSION) <= 0) vs.push(v);
  };
  cniVersions.forEach((v, i) => {
    if (typeof v !== 'string') throw new ConfError(`error parsing configuration list: invalid type for cniVersions index ${i}: ${typeName(v)}`);
    consider(v, `cniVersions entry at index ${i}`);
  });
  if (cniVersion) consider(cniVersion, 'cniVersion');
  vs.sort(compareVersions);
  return vs.length ? vs[vs.length - 1]! : cniVersion;
}

export function confListFromBytes(bytes: Buffer): NetworkConfList {
  const o = parseJson(bytes, 'configuration list');
  const name = o.name;
  if (name === undefined) throw new ConfError('error parsing configuration list: no name');
  if (typeof name !== 'string') throw new ConfError(`error parsing configuration list: invalid name ${JSON.stringify(name)}: expected a string`);
  const rawVersion = o.cniVersion;
  if (rawVersion !== undefined && typeof rawVersion !== 'string')
    throw new ConfError(`error parsing configuration list: invalid cniVersion ${JSON.stringify(rawVersion)}: expected a string`);
  const list: NetworkConfList = {
    name,
    cniVersion: selectVersion(rawVersion ?? '', o.cniVersions),
    disableCheck: readBool(o, 'disableCheck'),
    disableGC: readBool(o, 'disableGC'),
    loadOnlyInlinedPlugins: readBool(o, 'loadOnlyInlinedPlugins'),
    plugins: [],
    bytes,
  };
  const plugins = o.plugins;
  if (plugins === undefined) {
    if (list.loadOnlyInlinedPlugins) throw new ConfError("error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key");
    return list;
  }
  if (!Array.isArray(plugins)) throw new ConfError(`error parsing configuration list: invalid 'plugins' type ${typeName(plugins)}`);
  plugins.forEach((p, i) => {
    if (!isObj(p)) throw new ConfError(`failed to parse plugin config ${i}: expected an object, got ${typeName(p)}`);
    list.plugins.push(pluginFromObject(p, `plugin config ${i}`));
  });
  return list;
}

/** A legacy single-plugin file wrapped into a list (libcni ConfListFromConf). */
export function confListFromConf(bytes: Buffer, file: string): NetworkConfList {
  const o = parseJson(bytes, `configuration ${file}`);
  const plugin = pluginFromObject(o, `configuration ${file}`);
  const wrapped = { name: o.name ?? '', cniVersion: o.cniVersion ?? '', plugins: [plugin.raw] };
  // Go re-marshals the wrapper from maps, so its bytes (cached as `config`) have sorted keys.
  return confListFromBytes(Buffer.from(goMarshal(wrapped)));
}

/** Regular files of `dir` with one of `exts`, sorted by name; a missing dir has none. */
function confFiles(dir: string, exts: string[]): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ConfError(`cannot read ${dir}: ${(e as Error).message}`);
  }
  return entries
    .filter((e) => !e.isDirectory() && exts.includes(extname(e.name)))
    .map((e) => e.name)
    .sort()
    .map((n) => join(dir, n));
}

function readConf(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new ConfError(`error reading ${file}: ${(e as Error).message}`);
  }
}

export function loadConfList(dir: string, name: string): NetworkConfList {
  const lists = confFiles(dir, ['.conflist']);
  for (const f of lists) {
    let list;
    try {
      list = confListFromBytes(readConf(f));
    } catch (e) {
      throw new ConfError(`${f}: ${(e as Error).message}`);
    }
    if (list.name !== name) continue;
    // The fragment directory is named after the network: only a valid name may become a path.
    if (!list.loadOnlyInlinedPlugins && NAME_RE.test(name)) {
      for (const frag of confFiles(join(dir, name), ['.conf'])) {
        const o = parseJson(readConf(frag), `plugin configuration ${frag}`);
        list.plugins.push(pluginFromObject(o, `plugin configuration ${frag}`));
      }
    }
    if (!list.plugins.length) throw new ConfError(`${f}: no plugin configs found for network "${name}"`);
    return list;
  }
  const singles = confFiles(dir, ['.conf', '.json']);
  for (const f of singles) {
    const bytes = readConf(f);
    const o = parseJson(bytes, `configuration ${f}`);
    if (o.name === name) return confListFromConf(bytes, f);
  }
  if (!lists.length && !singles.length) throw new ConfError(`no net configurations found in ${dir}`);
  throw new ConfError(`no net configuration with name "${name}" in ${dir}`);
}
