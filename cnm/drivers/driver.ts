// A CNM driver (libnetwork driverapi.Driver, reduced): what a network type does when a network is
// created or deleted and when one of its endpoints joins or leaves a sandbox. The controller owns
// the records, the IPAM and the ordering; a driver only acts. New types (remote, overlay) are new
// implementations registered with the controller: the model does not change.
import type { PinnedDir } from '../../shared/linux/files';
import type { Runner } from '../../runner/runner';
import type { EndpointIpam } from '../ipam';
import type { EndpointRecord, NetworkRecord, SandboxRecord, Scope } from '../model';

/** What a driver may use: the runner for CNI verbs and the places conflists and leases live. */
export interface DriverContext {
  runner: Runner;
  cniPath: readonly string[];
  confDir: string; // conflists the `cni` driver names (-o cni.network=NAME)
  netDir: PinnedDir; // <state>/net.d: every network's conflist, so cnitool can drive it
  ipamDataDir: string; // <state>/ipam: host-local stores, one per network
  networks(): Promise<NetworkRecord[]>; // every network of every store (a driver's uniqueness checks)
}

export interface JoinRequest {
  network: NetworkRecord;
  endpoint: EndpointRecord; // ipv4/ipv6 already allocated when the driver uses the controller's IPAM
  sandbox: SandboxRecord;
  ifName: string; // CNI_IFNAME
  defaultRoute: boolean; // this endpoint owns the sandbox's default route
}

/** What the join found out: the addresses and MAC the sandbox's link ended up with. */
export interface JoinResult {
  ipv4?: string;
  ipv6?: string;
  mac?: string;
}

export interface Driver {
  readonly name: string;
  /** Where this driver's networks are stored (and visible): this host, or a cluster store. */
  readonly scope: Scope;
  /** The controller allocates endpoint addresses (Docker IPAM) at createEndpoint, before join. */
  readonly usesIpam: boolean;
  /** The interface name a join uses instead of the next ethN (null: loopback). */
  readonly ifName?: string;
  /** host / null: the sandbox's only network (Docker refuses to mix them with others). */
  readonly exclusive?: boolean;
  /** host: sandboxes share the netns cnm runs in; there is one such network. */
  readonly hostNetwork?: boolean;
  /** The IPAM of a network of this driver when usesIpam (default: host-local's store under <state>/ipam). */
  ipam?(n: NetworkRecord, ctx: DriverContext): EndpointIpam;
  /** Checks the options, fills `n.data`, writes what the network needs (its conflist). Throws CnmError. */
  createNetwork(n: NetworkRecord, ctx: DriverContext): Promise<void>;
  /** Removes what createNetwork made; gone already is success. */
  deleteNetwork(n: NetworkRecord, ctx: DriverContext): Promise<void>;
  /**
   * The driver's part of createEndpoint (libnetwork CreateEndpoint), after the controller's IPAM:
   * may report addresses or a MAC the endpoint did not have yet. Optional (CNI-backed drivers do
   * everything at join); a remote driver is called here. Throws to refuse the endpoint.
   */
  createEndpoint?(n: NetworkRecord, ep: EndpointRecord, ctx: DriverContext): Promise<Partial<Pick<EndpointRecord, 'ipv4' | 'ipv6' | 'mac'>>>;
  /** Undoes createEndpoint; gone already is success. */
  deleteEndpoint?(n: NetworkRecord, ep: EndpointRecord, ctx: DriverContext): Promise<void>;
  /** Attaches the endpoint to the sandbox (CNI ADD for CNI-backed drivers). Undoes its own partial work on failure. */
  join(j: JoinRequest, ctx: DriverContext): Promise<JoinResult>;
  /** Detaches it (CNI DEL with the cached result); idempotent, and succeeds when things are gone. */
  leave(j: JoinRequest, ctx: DriverContext): Promise<void>;
}
