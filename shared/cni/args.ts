// CNI_ARGS "K=V;K2=V2" parsing with the Go library's rules (types.LoadArgs).
import { CniError, ErrInvalidEnvironmentVariables } from './errors';

export function parseCniArgs(s: string): Array<[string, string]> {
  if (!s) return [];
  return s.split(';').map((pair) => {
    const eq = pair.indexOf('=');
    // Only a pair without "=" is malformed: Go's LoadArgs accepts "K=" and "=V" (runtimes send
    // empty values for keys they know nothing about), so they must not fail the whole call.
    if (eq < 0) throw new CniError(ErrInvalidEnvironmentVariables, `CNI_ARGS: invalid pair "${pair}"`);
    return [pair.slice(0, eq), pair.slice(eq + 1)];
  });
}

const ignoreUnknown = (pairs: Array<[string, string]>): boolean =>
  pairs.some(([k, v]) => k === 'IgnoreUnknown' && (v === '1' || v.toLowerCase() === 'true'));

/**
 * Picks the keys a plugin knows (matched case-sensitively, like Go field names such as IP and MAC).
 * Any other key is an error unless IgnoreUnknown=1|true is present (Kubernetes always sends it).
 */
export function loadArgs<K extends string>(s: string, known: readonly K[]): Partial<Record<K, string>> {
  const pairs = parseCniArgs(s);
  const out: Partial<Record<K, string>> = {};
  const unknown: string[] = [];
  for (const [k, v] of pairs) {
    // An empty value leaves the key unset: Go plugins read IP= as a nil net.IP and MAC= as "" (none).
    if ((known as readonly string[]).includes(k)) {
      if (v !== '') out[k as K] = v;
    } else if (k !== 'IgnoreUnknown') unknown.push(`${k}=${v}`);
  }
  if (unknown.length && !ignoreUnknown(pairs)) {
    throw new CniError(ErrInvalidEnvironmentVariables, `CNI_ARGS: unknown args ${JSON.stringify(unknown)}`);
  }
  return out;
}
