// Config schemas are zod/mini (≈1 ms at start-up in the compiled binary, classic zod ≈4 ms: runtime.md).
// This turns a schema failure into CNI code 7 naming the field and the value it had.
import * as z from 'zod/mini';
import { CniError, ErrInvalidNetworkConfig, ErrUnsupportedField } from './errors';

type Path = ReadonlyArray<PropertyKey>;

/**
 * Builds a schema on first use. Every plugin is bundled into one executable, so a schema built at
 * module load is paid by every invocation of every plugin (VERSION included): ~1.8 ms for ours.
 */
export function lazy<T>(build: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= build());
}

/** An optional key that also accepts null: Go's encoding/json leaves a field at its zero value for null. */
export const opt = <T extends z.ZodMiniType>(t: T) => z.optional(z.nullable(t));

export function fieldName(path: Path): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || '(config)';
}

function valueAt(root: unknown, path: Path): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

const show = (v: unknown): string => (v === undefined ? 'missing' : JSON.stringify(v));

interface Issue {
  path: Path;
  code: string;
  message: string;
  expected?: string;
  values?: unknown[];
  keys?: string[];
}

function describe(i: Issue): string {
  if (i.message && i.message !== 'Invalid input') return i.message;
  if (i.expected) return `expected ${i.expected}`;
  if (i.values) return `expected one of ${i.values.map((x) => JSON.stringify(x)).join(', ')}`;
  return i.code.replace(/_/g, ' ');
}

/** Parses `raw` with `schema`; the first problem becomes `invalid config: field "a.b[0]" = <value>: <why>`. */
export function parseConfig<T>(schema: z.ZodMiniType<T>, raw: unknown): T {
  const r = z.safeParse(schema, raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0] as unknown as Issue;
  if (issue.code === 'unrecognized_keys' && issue.keys?.length) {
    const key = issue.keys[0]!;
    const full = [...issue.path, key];
    throw new CniError(ErrUnsupportedField, `unsupported field "${fieldName(full)}" = ${show(valueAt(raw, full))}`);
  }
  throw configError(issue.path, valueAt(raw, issue.path), describe(issue));
}

export function configError(path: Path | string, value: unknown, why: string): CniError {
  const name = typeof path === 'string' ? path : fieldName(path);
  return new CniError(ErrInvalidNetworkConfig, `invalid config: field "${name}" = ${show(value)}: ${why}`);
}
