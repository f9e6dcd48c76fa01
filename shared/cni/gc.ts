// GC attachments (spec 1.1 "GC"): the one place that reads and writes the list of attachments a
// runtime still uses. libcni sends it under `cni.dev/valid-attachments` and, for plugins built
// against the spec-v1.1.0 tag, again under `cni.dev/attachments` (cni#1101).
import { configError } from './config';

/** One attachment a GC call keeps: a container and one of its interfaces. */
export interface GCAttachment {
  containerID: string;
  ifname: string;
}

export const VALID_ATTACHMENTS_KEY = 'cni.dev/valid-attachments';
export const OLD_ATTACHMENTS_KEY = 'cni.dev/attachments';

/**
 * The attachments a GC config names as still in use: `cni.dev/valid-attachments`, or the older
 * `cni.dev/attachments` when the first is absent or null. Neither key → [] (every attachment is stale,
 * as a Go plugin's nil slice). Values are returned as given (no trimming).
 * Throws CniError code 7 naming the key (and index) when the value is not a list of
 * {"containerID": string, "ifname": string}: a bad list must not read as "nothing is valid".
 */
export function parseValidAttachments(conf: Record<string, unknown>): GCAttachment[] {
  const key = conf[VALID_ATTACHMENTS_KEY] != null ? VALID_ATTACHMENTS_KEY : OLD_ATTACHMENTS_KEY;
  const raw = conf[key] ?? [];
  if (!Array.isArray(raw)) throw configError(key, raw, 'expected a list of {containerID, ifname}');
  return raw.map((a: unknown, i) => {
    const o = a as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || typeof o.containerID !== 'string' || typeof o.ifname !== 'string')
      throw configError(`${key}[${i}]`, a, 'expected {"containerID": string, "ifname": string}');
    return { containerID: o.containerID, ifname: o.ifname };
  });
}

/** The config keys a runtime adds to a GC call for `valid` (both names, as libcni does). */
export function validAttachmentsConf(valid: GCAttachment[]): Record<string, GCAttachment[]> {
  return { [VALID_ATTACHMENTS_KEY]: valid, [OLD_ATTACHMENTS_KEY]: valid };
}
