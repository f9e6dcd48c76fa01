// Config schemas are zod/mini (≈1 ms at start-up in the compiled binary, classic zod ≈4 ms: runtime.md).
// This turns a schema failure into CNI code 7 naming the field and the value it had.
import * as z from 'zod/mini';
import { isAbsolute } from 'node:path';
import { CniError, ErrInvalidNetworkConfig, ErrUnsupportedField } from './errors';

type Path = ReadonlyArray<PropertyKey>;

/** Builds one key's schema from the value the input has there (so a nested object can be sparse too). */
export type KeyBuilder = (value: unknown) => z.ZodMiniType;
export type SparseShape = Record<string, KeyBuilder>;
type Built<S extends SparseShape> = { [K in keyof S]: ReturnType<S[K]> };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A zod object over only the keys `value` has, plus `required`, built for this one input. Every
 * plugin pays zod's schema construction per invocation (start-up, not parsing, is the cost: the
 * bridge's 25 keys took ~1.0 ms to build and 0.2 ms to parse), and a config names few of its keys.
 * The result and the errors are the full object's: an absent optional key is absent either way,
 * unknown keys are stripped (or kept with `loose`) as before, and required keys are always checked.
 */
export function sparseObject<S extends SparseShape>(
  value: unknown,
  shape: S,
  opts: { required?: ReadonlyArray<keyof S & string>; loose?: boolean } = {},
): z.ZodMiniObject<Built<S>> {
  const v = isRecord(value) ? value : {};
  const picked: Record<string, z.ZodMiniType> = {};
  for (const k of Object.keys(shape)) if (Object.hasOwn(v, k) || opts.required?.includes(k)) picked[k] = shape[k]!(v[k]);
  return (opts.loose ? z.looseObject(picked) : z.object(picked)) as unknown as z.ZodMiniObject<Built<S>>;
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

/**
 * A state directory a config names (host-local's `ipam.dataDir`, tuning's `dataDir`): `fallback`
 * when unset or empty, else the value if it is absolute with no ".." component and no NUL, so no
 * file name joined to it can land outside it. Throws CniError code 7 naming `field` and the value.
 */
export function stateDirFromConfig(field: string, v: string | null | undefined, fallback: string): string {
  if (v === undefined || v === null || v === '') return fallback;
  if (!isAbsolute(v)) throw configError(field, v, 'must be an absolute path');
  if (v.includes('\0') || v.split('/').some((c) => c === '..')) throw configError(field, v, 'must not contain ".." components or NUL');
  return v;
}
