// The CNM library's one error type: a message that names the object and the cause (issue 11:
// `network "web" has active endpoints: 2`), and a kind callers branch on (the CLI's exit code, the
// Docker plugin's reply) without parsing text.

export type CnmErrorKind = 'not-found' | 'conflict' | 'invalid' | 'failed';

export class CnmError extends Error {
  override name = 'CnmError';
  constructor(
    readonly kind: CnmErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const notFound = (what: string, ref: string): CnmError => new CnmError('not-found', `no such ${what} ${JSON.stringify(ref)}`);
export const invalid = (message: string): CnmError => new CnmError('invalid', message);
export const conflict = (message: string): CnmError => new CnmError('conflict', message);

/** --ip/--ip6 on a network that gives no addresses (null, host). */
export const noAddresses = (n: { name: string; driver: string }): CnmError =>
  invalid(`network ${JSON.stringify(n.name)} (driver ${n.driver}) gives no addresses: --ip/--ip6 cannot be used`);

/** `e` as a CnmError of kind 'failed' prefixed with `context` (a CnmError keeps its kind). */
export function failed(context: string, e: unknown): CnmError {
  const text = e instanceof Error ? e.message : String(e);
  return new CnmError(e instanceof CnmError ? e.kind : 'failed', `${context}: ${text}`, { cause: e });
}
