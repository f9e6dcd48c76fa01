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

/** Wraps an unexpected exception as code 999 with a one-line message (never a stack trace); the exception is its `cause`. */
export function asCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new CniError(ErrInternal, msg.split('\n')[0] || 'internal error', '', { cause: e });
}

/** Prefixes the message of an error with context, keeping its code ("failed to allocate for range 0: ...") and `e` as `cause`. */
export function wrapError(e: unknown, context: string): CniError {
  const c = asCniError(e);
  return new CniError(c.code, `${context}: ${c.message}`, c.details, { cause: e });
}
