// CNI error codes (SPEC.md §5 "Error") and the one error type every plugin throws.
export const ErrIncompatibleCNIVersion = 1;
export const ErrUnsupportedField = 2;
export const ErrUnknownContainer = 3;
export const ErrInvalidEnvironmentVariables = 4;
export const ErrIOFailure = 5;
export const ErrDecodingFailure = 6;
export const ErrInvalidNetworkConfig = 7;
export const ErrInvalidNetNS = 8; // Go-only: CNI_NETNS is the plugin's own netns
export const ErrTryAgainLater = 11;
export const ErrPluginNotAvailable = 50;
export const ErrLimitedConnectivity = 51;
export const ErrInternal = 999; // anything not raised as a CniError

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details: string = '',
    options?: ErrorOptions, // { cause }: the error this one reports, kept for logs and callers
  ) {
    super(msg, options);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cniVersion, code: this.code, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

// Errors the JavaScript engine raises for a bug in our code ("null is not an object (evaluating
// 'e.family')", "Cannot read properties of undefined"): their text is the engine's, differs between
// engines, and tells a runtime's user nothing about their config. None of our code throws these kinds.
const ENGINE_ERRORS: ReadonlyArray<new (...a: never[]) => Error> = [TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError];

/**
 * The one-line text of any thrown value for a CNI error message: an engine-raised error (TypeError,
 * RangeError, ...) is "internal error (TypeError)", never the engine's own words; anything else its
 * message's first line. Use it wherever an error's message is put into another message.
 */
export function errorMessage(e: unknown): string {
  if (ENGINE_ERRORS.some((k) => e instanceof k)) return `internal error (${(e as Error).name}); CNIKIT_LOG=debug logs where`;
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0] || 'internal error';
}

/**
 * Wraps an unexpected exception as code 999 (11 when its `kind` is 'try-again') with `errorMessage`'s text, never a stack trace or engine
 * text (issue 10, item 12); the entry point logs an engine error's original at debug (CNIKIT_LOG).
 */
export function asCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  // A transient failure underneath (the xtables lock held, EAGAIN, a link that did not come up in
  // time: errors of shared/linux and shared/netfilter with kind 'try-again') is code 11, so the
  // runtime retries instead of failing the pod.
  const code = (e as { kind?: unknown } | null)?.kind === 'try-again' ? ErrTryAgainLater : ErrInternal;
  return new CniError(code, errorMessage(e), '', { cause: e });
}

/** Prefixes the message of an error with context, keeping its code ("failed to allocate for range 0: ...") and `e` as `cause`. */
export function wrapError(e: unknown, context: string): CniError {
  const c = asCniError(e);
  return new CniError(c.code, `${context}: ${c.message}`, c.details, { cause: e });
}

/**
 * What an error node:util's parseArgs threw says (ERR_PARSE_ARGS_*: a TypeError, so errorMessage
 * would hide it as an engine error; its first sentence is the point), or undefined for any other.
 */
export function parseArgsProblem(e: unknown): string | undefined {
  if (!(e instanceof TypeError) || !String((e as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) return undefined;
  return e.message.split('. ')[0]!.replace(/\.$/, '');
}
