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

/**
 * A Go struct value: marshalled with its fields in declaration order (the order given here), where
 * a plain object stands for a map (keys sorted). Omitted (`omitempty`) fields are simply absent.
 */
export class GoStruct {
  constructor(readonly fields: Readonly<Record<string, unknown>>) {}
  /** JSON.stringify/parse turn a struct into plain objects: what Go's marshal-then-unmarshal-into-a-map gives. */
  toJSON(): Readonly<Record<string, unknown>> {
    return this.fields;
  }
}

/**
 * A value as Go's json.Marshal writes it (json.MarshalIndent(v, "", indent) when `indent` is given):
 * objects are maps (keys sorted at every level), GoStructs keep their field order.
 */
export function goMarshal(v: unknown, indent = ''): string {
  const enc = (v: unknown, pad: string): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return goString(v);
    if (typeof v === 'number') return Number.isFinite(v) ? JSON.stringify(v) : 'null';
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v !== 'object') return 'null'; // functions, symbols, bigints never reach here from JSON
    const inner = indent ? pad + indent : '';
    const wrap = (open: string, items: string[], close: string): string =>
      items.length === 0 ? open + close : indent ? `${open}\n${inner}${items.join(`,\n${inner}`)}\n${pad}${close}` : `${open}${items.join(',')}${close}`;
    if (Array.isArray(v)) return wrap('[', v.map((x) => enc(x, inner)), ']');
    const struct = v instanceof GoStruct;
    const o = (struct ? v.fields : v) as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined);
    if (!struct) keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return wrap('{', keys.map((k) => `${goString(k)}:${indent ? ' ' : ''}${enc(o[k], inner)}`), '}');
  };
  return enc(v, '');
}
