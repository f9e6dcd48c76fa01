// The CNM library's public surface: the model, its drivers and stores, Docker IPAM on host-local's
// store, and the bridge network → CNI conflist mapping (reused by the Docker remote driver).
export { NetworkController, Network, Endpoint, Sandbox, DEFAULT_STATE_DIR, DEFAULT_NETNS_DIR, PREDEFINED } from './controller';
export type { ControllerOptions, NetworkCreateOptions, EndpointCreateOptions, SandboxCreateOptions, InspectContainer } from './controller';
export { CnmError, type CnmErrorKind } from './errors';
export { ID_RE, newID, validateName, validateSandboxName, keyValues } from './model';
export type { NetworkRecord, EndpointRecord, SandboxRecord, EndpointState, IpamPoolConfig, Scope } from './model';
export { LocalNetworkStore, RecordDir, openStateDir, type NetworkStore } from './store';
export {
  NetworkIpam,
  resolveIpamConfig,
  overlappingSubnets,
  subnetsOverlap,
  rangeSets,
  hostLocalRanges,
  pickSubnet,
  parseAddressPool,
  DEFAULT_ADDRESS_POOLS,
  ENDPOINT_LEASE_IFNAME,
  AUX_LEASE_IFNAME,
} from './ipam';
export type { IpamRequest, Allocation, Allocated, EndpointIpam, AddressPool, NetworkIpamOptions } from './ipam';
export { bridgeConflist, bridgeSettings, hasPlugin, BRIDGE_OPTIONS, OPT_BRIDGE_NAME, OPT_MASQUERADE, OPT_MTU, OPT_ICC } from './bridge-conflist';
export type { BridgeNetworkSpec, BridgeSettings, BridgeIpam, BridgeConflistOptions } from './bridge-conflist';
export type { Driver, DriverContext, JoinRequest, JoinResult } from './drivers/driver';
export { builtinDrivers } from './drivers/registry';
export { cniAdd, cniDel, writeConflist, removeConflist, type AttachArgs } from './drivers/cni-attach';
export { OPT_CNI_NETWORK } from './drivers/cni';
