// JSON bytes as Go's encoding/json writes them, so files we write (the result cache) are byte-for-byte
// what libcni writes: map keys sorted at every level, <, >, & and U+2028/9 escaped (Go's HTML-safe
// default), \b and \f as \u0008/\u000c (Go before 1.22), []byte as standard base64.

const GO_ESCAPES: Record<string, string> = {
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
  '\b': '\\u0008',
  '\f': '\\u000c',
};

export function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]|\\[bf]/g, (m) => GO_ESCAPES[m.length === 2 ? (m === '\\b' ? '\b' : '\f') : m]!);
}

/** A value decoded into Go's interface{} and marshalled again: objects become maps, so keys sort. */
export function goMarshal(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return goString(v);
  if (typeof v === 'number') return Number.isFinite(v) ? JSON.stringify(v) : 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map(goMarshal).join(',')}]`;
  if (typeof v !== 'object') return 'null'; // functions, symbols, bigints never reach here from JSON
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${goString(k)}:${goMarshal(o[k])}`).join(',')}}`;
}
