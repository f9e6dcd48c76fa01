// prevResult for CHECK and DEL (and a chained ADD): parsed at the config's version, as the
// reference's version.ParsePrevResult does. Runtimes send it in that version (libcni converts the
// cached result to the config's version before injecting it, spec "Chained plugins").
import { parseResult, type Result } from '../cni/types';

/**
 * The config's prevResult (`conf.prevResult`) as a current Result, or undefined when absent or null.
 * `cniVersion` is the config's version (CmdArgs.cniVersion). Throws CniError code 6 naming the field
 * when it cannot be read in that version, or code 1 when the version is unsupported.
 */
export function parsePrevResult(raw: unknown, cniVersion: string): Result | undefined {
  if (raw === undefined || raw === null) return undefined;
  return parseResult(raw, cniVersion);
}

/** As parsePrevResult, for verbs that cannot work without it (CHECK): absent throws "Required prevResult missing" (the reference's text). */
export function requirePrevResult(raw: unknown, cniVersion: string): Result {
  const prev = parsePrevResult(raw, cniVersion);
  if (!prev) throw new Error('Required prevResult missing');
  return prev;
}

/**
 * The CIDR addresses of a prevResult, as a hint (DEL narrows its masquerade sweep to the pod's
 * families with it): undefined when absent or unparsable; never throws, since DEL must not fail
 * on a prevResult it only uses as a hint.
 */
export function prevResultAddresses(raw: unknown, cniVersion: string): string[] | undefined {
  try {
    return parsePrevResult(raw, cniVersion)?.ips?.map((ip) => ip.address);
  } catch {
    return undefined;
  }
}
