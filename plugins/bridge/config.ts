// The bridge plugin's network configuration (the reference's NetConf in plugins/main/bridge/bridge.go):
// schema, defaults, and the cross-field rules the reference enforces, with its messages.
import * as z from 'zod/mini';
import { loadArgs } from '../../shared/cni/args';
import { configError, opt, parseConfig, sparseObject } from '../../shared/cni/config';
import { confDNS, dnsSchema } from '../../shared/cni/netconf';
import { CniError, ErrInvalidNetworkConfig } from '../../shared/cni/errors';
import type { CmdArgs } from '../../shared/cni/skel';
import { ifNameProblem } from '../../shared/cni/ifname';
import type { DNS } from '../../shared/cni/types';
import { normalizeMAC } from '../../shared/mac';
import { checkMasqBackend, type MasqBackend } from '../../shared/netfilter/masquerade';

/** The schema for this config: only the keys it has are built (sparseObject). */
function bridgeConfSchema(raw: unknown) {
  const bool = () => opt(z.boolean());
  const int = () => opt(z.int());
  const str = () => opt(z.string());

  return sparseObject(
    raw,
    {
      name: () => z.string(),
      cniVersion: str,
      bridge: str,
      isGateway: bool,
      isDefaultGateway: bool,
      forceAddress: bool,
      ipMasq: bool,
      ipMasqBackend: str,
      mtu: int,
      hairpinMode: bool,
      promiscMode: bool,
      vlan: int,
      vlanTrunk: () => opt(z.array(z.looseObject({ minID: int(), maxID: int(), id: int() }))),
      preserveDefaultVlan: bool,
      macspoofchk: bool,
      enabledad: bool,
      disableContainerInterface: bool,
      portIsolation: bool,
      ipam: (v) => opt(sparseObject(v, { type: str }, { loose: true })),
      dns: dnsSchema,
      args: (v) => opt(sparseObject(v, { cni: (c) => opt(sparseObject(c, { mac: str }, { loose: true })) }, { loose: true })),
      runtimeConfig: (v) => opt(sparseObject(v, { mac: str }, { loose: true })),
      prevResult: () => opt(z.unknown()),
    },
    { required: ['name'], loose: true },
  );
}

/** The parsed config with defaults applied and derived values (MAC, trunk VLAN list, L2/L3). */
export interface BridgeConf {
  name: string;
  cniVersion: string;
  bridge: string;
  isGateway: boolean; // true when isDefaultGateway is (the reference sets IsGW)
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  ipMasqBackend: MasqBackend | undefined; // undefined: autodetect
  mtu: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  vlan: number;
  vlanTrunk: boolean; // the key was given (enables vlan_filtering even if it yields no VIDs)
  vlans: number[]; // trunk VIDs, sorted, unique
  preserveDefaultVlan: boolean;
  macspoofchk: boolean;
  enabledad: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  ipamType: string; // '' = L2-only
  dns: DNS | undefined; // set only when some field is set: it then overrides IPAM's DNS
  mac: string | undefined; // CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac
  prevResult: unknown;
}

const invalid = (msg: string): CniError => new CniError(ErrInvalidNetworkConfig, msg);

type Trunk = Array<{ id?: number | null; minID?: number | null; maxID?: number | null }>;

/** The reference's collectVlanTrunk: IDs 1..4094, min/max together, sorted and deduplicated. */
export function collectVlanTrunk(trunk: Trunk | null | undefined): number[] {
  const vids = new Set<number>();
  for (const t of trunk ?? []) {
    const min = t.minID ?? undefined;
    const max = t.maxID ?? undefined;
    if (min !== undefined && max !== undefined) {
      if (min <= 0 || min > 4094) throw invalid('incorrect trunk minID parameter');
      if (max <= 0 || max > 4094) throw invalid('incorrect trunk maxID parameter');
      if (max < min) throw invalid('minID is greater than maxID in trunk parameter');
      for (let v = min; v <= max; v++) vids.add(v);
    } else if (max !== undefined) {
      throw invalid('minID and maxID should be configured simultaneously, minID is missing');
    } else if (min !== undefined) {
      throw invalid('minID and maxID should be configured simultaneously, maxID is missing');
    }
    const id = t.id ?? undefined;
    if (id !== undefined) {
      if (id <= 0 || id > 4094) throw invalid('incorrect trunk id parameter');
      vids.add(id);
    }
  }
  return [...vids].sort((a, b) => a - b);
}

function checkMac(field: string, mac: string): string {
  const normal = normalizeMAC(mac);
  if (!normal) throw configError(field, mac, 'not a MAC address (expected 6 hex pairs like 0a:58:c6:12:00:02)');
  return normal;
}

/** Parses stdin config and CNI_ARGS (MAC=, with the IgnoreUnknown rule). */
export function loadBridgeConf(a: Pick<CmdArgs, 'conf' | 'args' | 'cniVersion'>): BridgeConf {
  const c = parseConfig(bridgeConfSchema(a.conf), a.conf);
  const bridge = c.bridge ?? 'cni0';
  const badName = ifNameProblem(bridge);
  if (badName) throw configError('bridge', bridge, badName);
  const vlan = c.vlan ?? 0;
  if (vlan < 0 || vlan > 4094) throw invalid(`invalid VLAN ID ${vlan} (must be between 0 and 4094)`);
  const vlans = collectVlanTrunk(c.vlanTrunk);
  const mtu = c.mtu ?? 0;
  if (mtu < 0 || mtu > 65535) throw configError('mtu', mtu, 'must be between 0 (kernel default) and 65535');
  const backend = checkMasqBackend(c.ipMasqBackend);

  let mac: string | undefined;
  const envMac = loadArgs(a.args, ['MAC']).MAC;
  if (envMac) mac = checkMac('CNI_ARGS MAC', envMac);
  if (c.args?.cni?.mac) mac = checkMac('args.cni.mac', c.args.cni.mac);
  if (c.runtimeConfig?.mac) mac = checkMac('runtimeConfig.mac', c.runtimeConfig.mac);

  const dns = confDNS(c.dns);

  const conf: BridgeConf = {
    name: c.name,
    cniVersion: a.cniVersion,
    bridge,
    isGateway: !!c.isGateway || !!c.isDefaultGateway,
    isDefaultGateway: !!c.isDefaultGateway,
    forceAddress: !!c.forceAddress,
    ipMasq: !!c.ipMasq,
    ipMasqBackend: backend,
    mtu,
    hairpinMode: !!c.hairpinMode,
    promiscMode: !!c.promiscMode,
    vlan,
    vlanTrunk: c.vlanTrunk != null,
    vlans,
    preserveDefaultVlan: !!c.preserveDefaultVlan,
    macspoofchk: !!c.macspoofchk,
    enabledad: !!c.enabledad,
    disableContainerInterface: !!c.disableContainerInterface,
    portIsolation: !!c.portIsolation,
    ipamType: c.ipam?.type ?? '',
    dns,
    mac,
    prevResult: c.prevResult ?? undefined,
  };
  return conf;
}

/** Rules the reference checks at the start of ADD (not on DEL, so a DEL of a bad config still cleans up). */
export function checkAddRules(c: BridgeConf): void {
  if (c.ipamType && c.disableContainerInterface) throw invalid('cannot use IPAM when DisableContainerInterface flag is set');
  if (c.hairpinMode && c.promiscMode) throw invalid('cannot set hairpin mode and promiscuous mode at the same time');
}
