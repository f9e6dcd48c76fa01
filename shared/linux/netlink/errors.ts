// The one error type of the netlink layer: which operation, on which object, and the kernel's errno
// (plus the kernel's extended-ack text when it sent one). Messages read like the reference's
// wrapped Go errors: "creating veth vethab12cd34: file exists".
import { EADDRNOTAVAIL, errnoMessage, kindOfErrno, type ErrorKind } from './errno';

export class NetlinkError extends Error {
  /** What the errno means to a caller (see ErrorKind); isNotFound/isExists read it. */
  readonly kind: ErrorKind;

  constructor(
    /** e.g. "creating veth", "deleting link", "adding route" */
    readonly op: string,
    /** e.g. the link name, "198.18.0.2/24 on eth0" */
    readonly object: string,
    /** positive errno from the kernel */
    readonly errno: number,
    /** NLMSGERR_ATTR_MSG from the extended ack, if the kernel gave one */
    readonly extack = '',
  ) {
    super(`${op}${object ? ` ${object}` : ''}: ${errnoMessage(errno)}${extack ? ` (${extack})` : ''}`);
    this.name = 'NetlinkError';
    // Deleting an address that is not there answers EADDRNOTAVAIL, not ENOENT.
    this.kind = errno === EADDRNOTAVAIL && op.startsWith('deleting') ? 'not-found' : kindOfErrno(errno);
  }
}

/**
 * A netlink object is missing: link (ENODEV), route (ESRCH), address being deleted (EADDRNOTAVAIL),
 * or a generic ENOENT. DEL paths treat these as success.
 */
export function isNotFound(e: unknown): boolean {
  return e instanceof NetlinkError && e.kind === 'not-found';
}

/** A netlink object already exists (EEXIST), e.g. a bridge created by an earlier ADD. */
export function isExists(e: unknown): boolean {
  return e instanceof NetlinkError && e.kind === 'exists';
}

/** A link reference for messages: a name, an index, or a decoded link. */
export type LinkRef = string | number | { index: number; name: string };

export function refName(ref: LinkRef): string {
  if (typeof ref === 'string') return ref;
  if (typeof ref === 'number') return `index ${ref}`;
  return ref.name || `index ${ref.index}`;
}
