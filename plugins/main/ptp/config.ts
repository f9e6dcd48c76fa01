// The ptp plugin's network configuration (the reference's NetConf in plugins/main/ptp/ptp.go):
// types.NetConf plus ipMasq, ipMasqBackend and mtu. Errors are code 7 naming the field and value.
import * as z from 'zod/mini';
import { configError, opt, parseConfig, sparseObject } from '../../../shared/cni/config';
import { confDNS, dnsSchema } from '../../../shared/cni/netconf';
import type { CmdArgs } from '../../../shared/cni/skel';
import type { DNS } from '../../../shared/cni/types';
import { checkMasqBackend, type MasqBackend } from '../../../shared/netfilter/masquerade';

/** The schema for this config: only the keys it has are built (sparseObject). Unknown keys are ignored, as in Go. */
function ptpConfSchema(raw: unknown) {
  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: () => opt(z.string()),
      ipMasq: () => opt(z.boolean()),
      ipMasqBackend: () => opt(z.string()),
      mtu: () => opt(z.int()),
      ipam: (v) => opt(sparseObject(v, { type: () => opt(z.string()) }, { loose: true })),
      dns: dnsSchema,
      prevResult: () => opt(z.unknown()),
    },
    { required: ['name'], loose: true },
  );
}

export interface PtpConf {
  name: string;
  cniVersion: string;
  ipMasq: boolean;
  ipMasqBackend: MasqBackend | undefined; // undefined: autodetect
  mtu: number; // 0 = kernel default
  ipamType: string;
  dns: DNS | undefined; // set only when some field is set: it then overrides IPAM's DNS
  prevResult: unknown;
}

/** Parses the stdin config. `ipam.type` is required on ADD (checkAddRules), not on DEL/GC, so they still clean up. */
export function loadPtpConf(a: Pick<CmdArgs, 'conf' | 'cniVersion'>): PtpConf {
  const c = parseConfig(ptpConfSchema(a.conf), a.conf);
  const mtu = c.mtu ?? 0;
  if (mtu < 0 || mtu > 65535) throw configError('mtu', mtu, 'must be between 0 (kernel default) and 65535');
  return {
    name: c.name,
    cniVersion: a.cniVersion,
    ipMasq: !!c.ipMasq,
    ipMasqBackend: checkMasqBackend(c.ipMasqBackend),
    mtu,
    ipamType: c.ipam?.type ?? '',
    dns: confDNS(c.dns),
    prevResult: c.prevResult ?? undefined,
  };
}

/** ptp has no L2-only mode: every address it routes comes from IPAM. */
export function checkAddRules(c: PtpConf): void {
  if (!c.ipamType) throw configError('ipam.type', c.ipamType || undefined, 'ptp needs an IPAM plugin (e.g. "host-local") to get the pod addresses');
}
