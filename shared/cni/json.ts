// What is wrong with a JSON text, in our words: the engine's JSON.parse messages differ between
// engines and versions ("JSON Parse error: Unexpected identifier", "Unexpected token } in JSON") and
// must not reach a CNI error (issue 10, item 12). Only runs after JSON.parse has failed.

const MAX_DEPTH = 512;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /[0-9a-fA-F]{4}/y;

class SyntaxFault {
  constructor(
    readonly at: number,
    readonly what: string,
  ) {}
}

function showChar(s: string, i: number): string {
  const cp = s.codePointAt(i)!;
  return cp > 0x20 && cp < 0x7f ? `'${s[i]}'` : `character U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

function where(s: string, at: number): string {
  let line = 1;
  let col = 1;
  for (let k = 0; k < at && k < s.length; k++) {
    if (s[k] === '\n') {
      line++;
      col = 1;
    } else col++;
  }
  return `line ${line}, column ${col}`;
}

/**
 * Describes the first syntax fault of `text` (RFC 8259), e.g. "unexpected '}' at line 1, column 9"
 * or "unexpected end of input at line 3, column 1"; "empty input" for blank text; "not valid JSON"
 * when no fault is found (the caller's parser refused it for another reason). Never throws.
 */
export function jsonSyntaxError(text: string): string {
  const s = text;
  let i = 0;
  const ws = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  };
  const fault = (what?: string): never => {
    throw new SyntaxFault(i, what ?? (i >= s.length ? 'unexpected end of input' : `unexpected ${showChar(s, i)}`));
  };
  const literal = (word: string): void => {
    if (!s.startsWith(word, i)) fault();
    i += word.length;
  };
  const string = (): void => {
    i++; // the opening quote
    for (;;) {
      if (i >= s.length) fault('unterminated string');
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fault(`unescaped control ${showChar(s, i)} in a string`);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      i++; // the backslash
      const e = s[i];
      if (e === 'u') {
        HEX4.lastIndex = i + 1;
        if (!HEX4.test(s)) fault('invalid \\u escape in a string');
        i += 5;
      } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
      else fault('invalid escape in a string');
    }
  };
  const value = (depth: number): void => {
    ws();
    const c = s[i];
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) fault(`nested deeper than ${MAX_DEPTH} levels`);
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (s[i] === close) {
        i++;
        return;
      }
      for (;;) {
        if (c === '{') {
          ws();
          if (s[i] !== '"') fault(i < s.length ? `expected a quoted member name, found ${showChar(s, i)}` : undefined);
          string();
          ws();
          if (s[i] !== ':') fault(i < s.length ? `expected ':', found ${showChar(s, i)}` : undefined);
          i++;
        }
        value(depth + 1);
        ws();
        if (s[i] === ',') {
          i++;
          continue;
        }
        if (s[i] === close) {
          i++;
          return;
        }
        fault(i < s.length ? `expected ',' or '${close}', found ${showChar(s, i)}` : undefined);
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(s);
      if (!m) fault('invalid number');
      i += m![0].length;
      return;
    }
    fault();
  };
  try {
    ws();
    if (i >= s.length) return 'empty input';
    value(0);
    ws();
    if (i < s.length) fault(`unexpected ${showChar(s, i)} after the end of the JSON value`);
    return 'not valid JSON';
  } catch (e) {
    if (e instanceof SyntaxFault) return `${e.what} at ${where(s, e.at)}`;
    return 'not valid JSON';
  }
}
