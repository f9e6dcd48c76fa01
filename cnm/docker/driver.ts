// The NetworkDriver side of the Docker remote-driver protocol (libnetwork drivers/remote): one
// handler per method, each idempotent (Docker re-sends a call whose connection broke) and working
// from the records on disk alone (Docker never re-activates a restarted plugin). The call mapping is
// cnm-shim.md §5.2: CreateEndpoint runs the CNI chain into a scratch netns and hands the link over,
// Join tells libnetwork its name and routes, DeleteEndpoint takes it back (or, for a chain of our
// own plugins, deletes it) and runs DEL.
import { parseResult, type IPConfig, type Result } from '../../shared/cni/types';
import { errorMessage } from '../../shared/cni/errors';
import { findInPath } from '../../shared/cni/invoke';
import { contains, formatIP, parseCIDR, parseIP } from '../../shared/ip';
import { resultMap } from '../../runner/result';
import { Runner, type RuntimeConf } from '../../runner/runner';
import { CNI_NETWORK_OPTION, endpointArgs, networkChain, parseChain } from './chain';
import { addScratchNetns, deleteHostLink, deleteScratchNetns, hasLink, isNetns, moveLink, netnsPath, NETNS_RUN_DIR, restoreAddresses } from './handover';
import { genericOptions, idField, interfaceField, ipamDataField, objField, portMappings, ProtocolError, strField, type Json } from './protocol';
import type { DockerNetworkRecord, DockerEndpointRecord, PluginState } from './records';
import { phase } from './timings';
import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { bridgeDriver } from '../drivers/bridge';
import { NetworkIpam, type DriverContext } from '../index';
import { ownPluginName } from '../../plugins/registry';
import type { NetworkConfList } from '../../runner/conf';

/** The address space this driver's IPAM names (GetDefaultAddressSpaces): a network whose pools carry it uses our IPAM. */
export const OWN_ADDRESS_SPACE = 'cnikit-local';

export interface DriverOptions {
  /** the plugin's name: scratch netns are `<name>-<EndpointID[:12]>`, so each instance knows its own */
  name: string;
  state: PluginState;
  runner: Runner;
  confDir: string;
  cniPath: string[];
  log: (line: string) => void;
}

type Handler = (body: Json) => Promise<Json>;

/**
 * Runs async work one at a time per key: concurrent `docker run`s on one network issue concurrent
 * CreateEndpoints, and a chain's ADDs/DELs on one bridge must not interleave (cnm-shim.md §5.5.7).
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(work, work);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

/** What Join answers, derived from the ADD result at CreateEndpoint. */
interface HandOver {
  mac: string;
  v4?: IPConfig;
  v6?: IPConfig;
  join: DockerEndpointRecord['join'];
}

/**
 * Picks the container interface (`name == CNI_IFNAME`, `sandbox == CNI_NETNS`), its first address of
 * each family, and turns the result's routes into Join's gateway and static routes: the default
 * route's gateway is the Gateway (none: no default route, e.g. an --internal network), the other
 * routes are StaticRoutes (RouteType 0 with a next hop, 1 connected); a route without `gw` goes via
 * its family's address gateway when there is one (as the reference's ipam.ConfigureIface), and a gateway outside the
 * address's prefix gets a connected /32 (/128) route, without which libnetwork cannot add the
 * default route (cnm-shim.md §1.4, "route for the gateway could not be found").
 */
export function handOver(r: Result, ifName: string, netns: string): HandOver {
  const idx = (r.interfaces ?? []).findIndex((i) => i.name === ifName && (!i.sandbox || i.sandbox === netns));
  const ips = (r.ips ?? []).filter((c) => (idx >= 0 ? c.interface === idx || c.interface === undefined : true));
  const fam = (f: 4 | 6): IPConfig | undefined => ips.find((c) => parseCIDR(c.address)?.ip.family === f);
  const [v4, v6] = [fam(4), fam(6)];
  const join: HandOver['join'] = { gateway: '', gatewayIPv6: '', staticRoutes: [] };
  for (const rt of r.routes ?? []) {
    const dst = parseCIDR(rt.dst);
    if (!dst) continue;
    const own = dst.ip.family === 4 ? v4 : v6;
    // A route without gw goes via the address's gateway, else on-link (the reference's ConfigureIface).
    const gw = rt.gw ?? own?.gateway;
    if (dst.prefix === 0) {
      if (!gw) continue;
      if (dst.ip.family === 4 && !join.gateway) join.gateway = gw;
      if (dst.ip.family === 6 && !join.gatewayIPv6) join.gatewayIPv6 = gw;
      continue;
    }
    const net = own ? parseCIDR(own.address) : null;
    // The subnet route of the address itself: libnetwork adds it with the address.
    if (net && net.prefix === dst.prefix && contains(net, dst.ip)) continue;
    join.staticRoutes.push(gw ? { Destination: rt.dst, RouteType: 0, NextHop: gw } : { Destination: rt.dst, RouteType: 1 });
  }
  for (const [gw, own, host] of [
    [join.gateway, v4, '/32'],
    [join.gatewayIPv6, v6, '/128'],
  ] as const) {
    const g = gw ? parseIP(gw) : null;
    const net = own ? parseCIDR(own.address) : null;
    if (g && !(net && contains(net, g))) join.staticRoutes.push({ Destination: `${formatIP(g)}${host}`, RouteType: 1 });
  }
  return { mac: idx >= 0 ? (r.interfaces![idx]!.mac ?? '') : '', v4, v6, join };
}

const short = (id: string): string => id.slice(0, 12);

export class NetworkDriver {
  private readonly queue = new KeyedQueue();
  /** what the library's drivers are given (the bridge driver creates and deletes generated networks) */
  private readonly ctx: DriverContext;
  constructor(private readonly o: DriverOptions) {
    this.ctx = {
      runner: o.runner,
      cniPath: o.cniPath,
      confDir: o.confDir,
      netDir: o.state.netDir,
      ipamDataDir: o.state.ipamDir,
      // Every network a bridge device could belong to: the cnm CLI's and this plugin's generated ones.
      networks: async () => [...o.state.cnmNetworks.list(), ...o.state.networks.list().flatMap((r) => (r.model ? [r.model] : []))],
    };
  }

  /** True when every plugin of the chain (IPAM included) resolves in the CNI path to one of ours. */
  private ownChain(list: NetworkConfList): boolean {
    const types = list.plugins.flatMap((p) => {
      const ipam = p.raw.ipam as { type?: unknown } | undefined;
      return typeof ipam?.type === 'string' ? [p.type, ipam.type] : [p.type];
    });
    return types.every((t) => {
      try {
        return ownPluginName(findInPath(t, this.o.cniPath.join(':'))) !== undefined;
      } catch {
        return false;
      }
    });
  }

  /** The scratch netns name of an endpoint. */
  scratchName(eid: string): string {
    return `${this.o.name}-${short(eid)}`;
  }

  readonly handlers: Record<string, Handler> = {
    'NetworkDriver.GetCapabilities': async () => ({ Scope: 'local', ConnectivityScope: 'local' }),
    'NetworkDriver.CreateNetwork': (b) => this.createNetwork(b),
    'NetworkDriver.DeleteNetwork': (b) => this.deleteNetwork(b),
    'NetworkDriver.CreateEndpoint': (b) => this.createEndpoint(b),
    'NetworkDriver.DeleteEndpoint': (b) => this.deleteEndpoint(b),
    'NetworkDriver.EndpointOperInfo': (b) => this.endpointOperInfo(b),
    'NetworkDriver.Join': (b) => this.join(b),
    // libnetwork moves the link back to the host after Leave; DeleteEndpoint does the work.
    'NetworkDriver.Leave': async (b) => (idField(b, 'EndpointID'), {}),
    // The chain's portmap published the ports at ADD; nothing is left to program.
    'NetworkDriver.ProgramExternalConnectivity': async () => ({}),
    'NetworkDriver.RevokeExternalConnectivity': async () => ({}),
    // Swarm-only calls of a local-scope driver (cnm-shim.md §1.3).
    'NetworkDriver.DiscoverNew': async () => ({}),
    'NetworkDriver.DiscoverDelete': async () => ({}),
    'NetworkDriver.AllocateNetwork': async () => ({ Options: {} }),
    'NetworkDriver.FreeNetwork': async () => ({}),
  };

  private async createNetwork(b: Json): Promise<Json> {
    const id = idField(b, 'NetworkID');
    return this.queue.run(id, async () => {
      if (this.o.state.networks.read(id)) return {}; // a re-sent call
      const options = objField(b, 'Options');
      const generic = genericOptions(options);
      const [ipv4, ipv6] = [ipamDataField(b, 'IPv4Data'), ipamDataField(b, 'IPv6Data')];
      const internal = options['com.docker.network.internal'] === true;
      const chain = networkChain({ id, options: generic, ipv4, ipv6, internal, confDir: this.o.confDir, cniPath: this.o.cniPath, ipamDir: this.o.state.ipamDir });
      const ownIpam = [...ipv4, ...ipv6].some((d) => d.AddressSpace === OWN_ADDRESS_SPACE);
      await this.checkChain(parseChain(chain.conflist));
      // A generated network is the library's bridge network: its conflist goes to <state>/net.d too.
      if (chain.model) await bridgeDriver.createNetwork(chain.model, this.ctx);
      const rec: DockerNetworkRecord = { id, ...chain, options: generic, ipv4, ipv6, internal, ownIpam };
      this.o.state.networks.write(rec);
      return {};
    });
  }

  /**
   * `docker network create` fails now, naming the plugin, rather than every `docker run` later: each
   * plugin of the chain and its IPAM must be in --cni-path, and a 1.1.0 chain must answer STATUS.
   * Throws ProtocolError.
   */
  private async checkChain(list: ReturnType<typeof parseChain>): Promise<void> {
    for (const p of list.plugins) {
      const ipam = (p.raw.ipam as { type?: unknown } | undefined)?.type;
      for (const type of [p.type, ...(typeof ipam === 'string' && ipam ? [ipam] : [])]) {
        try {
          findInPath(type, this.o.cniPath.join(':'));
        } catch (e) {
          throw new ProtocolError(`CNI network "${list.name}": ${errorMessage(e)}`);
        }
      }
    }
    try {
      await this.o.runner.statusNetworkList(list);
    } catch (e) {
      throw new ProtocolError(`CNI network "${list.name}" is not ready: ${errorMessage(e)}`);
    }
  }

  private async deleteNetwork(b: Json): Promise<Json> {
    const id = idField(b, 'NetworkID');
    return this.queue.run(id, async () => {
      const rec = this.o.state.networks.read(id);
      // Endpoints whose DeleteEndpoint never came (a daemon crash) go first (cnm-shim.md §5.5.8).
      for (const ep of this.o.state.endpoints.list()) if (ep.network === id) await this.removeEndpoint(ep);
      if (!rec) return {};
      try {
        // GC only on our own (generated) chains: a cni.network conflist's stores may hold other runtimes' attachments.
        await this.o.runner.gcNetworkList(parseChain(rec.conflist), [], { sendGC: rec.generated });
      } catch (e) {
        this.o.log(`network ${short(id)}: GC of the chain's leftovers: ${errorMessage(e)}`);
      }
      if (rec.model) {
        // The library's bridge driver removes the conflist in net.d and the bridge once no port is left.
        await bridgeDriver.deleteNetwork(rec.model, this.ctx);
        new NetworkIpam(this.o.state.ipamDir, rec.model.name, rec.model.ipam.config).destroy();
      }
      this.o.state.networks.remove(id);
      return {};
    });
  }

  private async createEndpoint(b: Json): Promise<Json> {
    const nid = idField(b, 'NetworkID');
    const eid = idField(b, 'EndpointID');
    const iface = interfaceField(b);
    const ports = portMappings(objField(b, 'Options'));
    return this.queue.run(nid, async () => {
      const done = this.o.state.endpoints.read(eid);
      if (done) return done.network === nid ? { Interface: done.reply } : Promise.reject(new ProtocolError(`endpoint ${short(eid)} exists on another network (${short(done.network)})`));
      const net = this.o.state.networks.read(nid);
      if (!net) throw new ProtocolError(`network ${short(nid)} is not known to this driver (its state directory lost the record)`);
      const gateway = (d: { Gateway: string }[]): string => d[0]?.Gateway ?? '';
      const { list, capabilityArgs, args } = endpointArgs(net.conflist, iface, ports, net.ownIpam ? { gateway4: gateway(net.ipv4), gateway6: gateway(net.ipv6), model: net.model, cniPath: this.o.cniPath } : null);
      const ifName = `cni${short(eid)}`;
      const ns = this.scratchName(eid);
      const rt: RuntimeConf = { containerID: eid, ifName, netns: netnsPath(ns), args, capabilityArgs };
      try {
        await phase('netns', () => {
          addScratchNetns(ns);
          // A link of this name in the host without a record is a crash's leftover (cnm-shim.md §5.5.13).
          deleteHostLink(ifName);
        });
        const result = await phase('ADD', () => this.o.runner.addNetworkList(list, rt));
        const r = parseResult(resultMap(result), result.version);
        const h = handOver(r, ifName, rt.netns);
        if (!(await phase('hand-over', () => moveLink(ifName, rt.netns, null)))) throw new Error(`CNI network "${list.name}" made no interface ${ifName} in ${rt.netns}`);
        // libnetwork refuses an answer that sets a field it sent (cnm-shim.md §1.4).
        const reply: Record<string, string> = {};
        if (!iface.Address && h.v4) reply.Address = h.v4.address;
        if (!iface.AddressIPv6 && h.v6) reply.AddressIPv6 = h.v6.address;
        if (!iface.MacAddress && h.mac) reply.MacAddress = h.mac;
        const rec: DockerEndpointRecord = {
          id: eid,
          network: nid,
          conflist: list.bytes.toString(),
          ifName,
          netns: ns,
          capabilityArgs,
          args,
          reply,
          join: h.join,
          address: iface.Address || h.v4?.address || '',
          addressIPv6: iface.AddressIPv6 || h.v6?.address || '',
          mac: iface.MacAddress || h.mac,
          sandboxKey: '',
        };
        await phase('record', () => this.o.state.endpoints.write(rec));
        return { Interface: reply };
      } catch (e) {
        // Docker sends no DeleteEndpoint after a failed CreateEndpoint: undo everything here.
        await this.undoAdd(list, rt, ns);
        throw e;
      }
    });
  }

  private async undoAdd(list: ReturnType<typeof parseChain>, rt: RuntimeConf, ns: string): Promise<void> {
    try {
      moveLink(rt.ifName, null, rt.netns);
    } catch (e) {
      this.o.log(`undo: moving ${rt.ifName} back: ${errorMessage(e)}`);
    }
    try {
      await this.o.runner.delNetworkList(list, rt);
    } catch (e) {
      this.o.log(`undo: CNI DEL of ${rt.containerID}: ${errorMessage(e)}`);
    }
    try {
      deleteScratchNetns(ns);
    } catch (e) {
      this.o.log(`undo: ${errorMessage(e)}`);
    }
  }

  private async deleteEndpoint(b: Json): Promise<Json> {
    const nid = idField(b, 'NetworkID');
    const eid = idField(b, 'EndpointID');
    return this.queue.run(nid, async () => {
      const ep = this.o.state.endpoints.read(eid);
      if (ep) await this.removeEndpoint(ep);
      return {};
    });
  }

  /**
   * DEL of one endpoint (call inside its network's queue): libnetwork returned the link to the host
   * under its CNI_IFNAME; it is dropped or taken back (below), then DEL runs with
   * the ADD's inputs and cached result, then the scratch netns and the record go. A DEL that fails
   * keeps the record (the next DeleteEndpoint, DeleteNetwork or start-up GC retries) and throws.
   */
  private async removeEndpoint(ep: DockerEndpointRecord): Promise<void> {
    const list = parseChain(ep.conflist);
    const netns = this.ownChain(list) ? await this.dropLink(ep) : await this.takeBack(ep);
    await phase('DEL', () => this.o.runner.delNetworkList(list, { containerID: ep.id, ifName: ep.ifName, netns, args: ep.args, capabilityArgs: ep.capabilityArgs }));
    deleteScratchNetns(ep.netns);
    this.o.state.endpoints.remove(ep.id);
  }

  /**
   * A chain of our own plugins: their DEL needs neither the link nor its addresses (rules go by
   * container ID and comment, plugins#810; a missing interface is a DEL that succeeds), so the link
   * is deleted where libnetwork left it. That spares the move back, a netns change for which the
   * kernel waits out an RCU grace period. Returns the CNI_NETNS for DEL ("" when the scratch netns is gone).
   */
  private async dropLink(ep: DockerEndpointRecord): Promise<string> {
    await phase('delete-link', () => deleteHostLink(ep.ifName));
    const netns = netnsPath(ep.netns);
    return isNetns(netns) ? netns : '';
  }

  /**
   * Any other chain: the link goes back into the scratch netns with its addresses, so the chain's DEL
   * finds the state its ADD left (the Go reference bridge tears its masquerade rules down by the
   * link's addresses). Returns the CNI_NETNS for DEL ("" when no scratch netns can be made, as after
   * a reboot: spec, DEL with an empty CNI_NETNS).
   */
  private async takeBack(ep: DockerEndpointRecord): Promise<string> {
    const netns = netnsPath(ep.netns);
    try {
      addScratchNetns(ep.netns);
      if (await phase('take-back', () => moveLink(ep.ifName, null, netns))) {
        try {
          restoreAddresses(ep.ifName, netns, [ep.address, ep.addressIPv6].filter(Boolean));
        } catch (e) {
          this.o.log(`endpoint ${short(ep.id)}: restoring its addresses before DEL: ${errorMessage(e)}`);
        }
      }
      return netns;
    } catch (e) {
      this.o.log(`endpoint ${short(ep.id)}: ${errorMessage(e)}; DEL runs without a netns`);
      deleteHostLink(ep.ifName);
      return '';
    }
  }

  private async join(b: Json): Promise<Json> {
    const nid = idField(b, 'NetworkID');
    const eid = idField(b, 'EndpointID');
    const sandboxKey = strField(b, 'SandboxKey');
    return this.queue.run(nid, async () => {
      const ep = this.o.state.endpoints.read(eid);
      if (!ep || ep.network !== nid) throw new ProtocolError(`endpoint ${short(eid)} of network ${short(nid)} does not exist`);
      if (!hasLink(ep.ifName)) throw new ProtocolError(`endpoint ${short(eid)}: its interface ${ep.ifName} is not in the host network namespace`);
      if (ep.sandboxKey !== sandboxKey) this.o.state.endpoints.write({ ...ep, sandboxKey, joinedAt: Date.now() });
      const j = ep.join;
      return {
        InterfaceName: { SrcName: ep.ifName, DstPrefix: 'eth' },
        ...(j.gateway ? { Gateway: j.gateway } : {}),
        ...(j.gatewayIPv6 ? { GatewayIPv6: j.gatewayIPv6 } : {}),
        ...(j.staticRoutes.length ? { StaticRoutes: j.staticRoutes } : {}),
        // No docker_gwbridge: the chain decides the connectivity (an --internal network has none).
        DisableGatewayService: true,
      };
    });
  }

  /** Never fails: an error here aborts the container's start (cnm-shim.md §1.4). */
  private async endpointOperInfo(b: Json): Promise<Json> {
    try {
      const ep = this.o.state.endpoints.read(idField(b, 'EndpointID'));
      if (!ep) return { Value: {} };
      const net = this.o.state.networks.read(ep.network);
      return {
        Value: {
          'cni.network': parseChain(ep.conflist).name,
          'cni.ifname': ep.ifName,
          ...(net?.options[CNI_NETWORK_OPTION] ? {} : { 'cni.generated': true }),
          ...(ep.address ? { address: ep.address } : {}),
          ...(ep.addressIPv6 ? { addressIPv6: ep.addressIPv6 } : {}),
          ...(ep.mac ? { mac: ep.mac } : {}),
        },
      };
    } catch {
      return { Value: {} };
    }
  }

  /**
   * Start-up (and periodic) garbage collection: endpoints that joined a sandbox which is gone (the
   * container ended while this daemon was down, or dockerd crashed: Docker then sends no
   * DeleteEndpoint, cnm-shim.md §5.5.4) are DEL'ed; then, per network, the chain's cached
   * attachments without a record (a crash inside CreateEndpoint) are DEL'ed and CNI GC runs where
   * the chain supports it (1.1.0) and is ours (generated: a `cni.network` conflist's stores may hold
   * other runtimes' attachments, which GC would take for stale); last, scratch netns of this instance without a record go.
   * `minAgeMs`: a sandbox key younger than this may not be mounted yet (runc creates it after Join).
   * `sweepNetns` only before serving: a CreateEndpoint in flight has a scratch netns and no record yet.
   */
  async collectGarbage(minAgeMs: number, sweepNetns: boolean): Promise<void> {
    const st = this.o.state;
    for (const listed of st.endpoints.list()) {
      if (!listed.sandboxKey || isNetns(listed.sandboxKey) || Date.now() - (listed.joinedAt ?? 0) < minAgeMs) continue;
      // A sandbox directory we cannot see (the plugin in another mount namespace than dockerd) says
      // nothing about the sandbox: such endpoints are kept, never DEL'ed on a guess.
      if (!existsSync(dirname(listed.sandboxKey))) continue;
      await this.queue.run(listed.network, async () => {
        const ep = st.endpoints.read(listed.id);
        if (!ep) return;
        try {
          await this.removeEndpoint(ep);
          this.o.log(`gc: endpoint ${short(ep.id)} (its sandbox ${ep.sandboxKey} is gone) deleted`);
        } catch (e) {
          this.o.log(`gc: endpoint ${short(ep.id)}: ${errorMessage(e)}`);
        }
      });
    }
    for (const listed of st.networks.list()) {
      await this.queue.run(listed.id, async () => {
        const net = st.networks.read(listed.id);
        if (!net) return;
        const valid = st.endpoints
          .list()
          .filter((ep) => ep.network === net.id)
          .map((ep) => ({ containerID: ep.id, ifname: ep.ifName }));
        try {
          await this.o.runner.gcNetworkList(parseChain(net.conflist), valid, { sendGC: net.generated });
        } catch (e) {
          this.o.log(`gc: network ${short(net.id)}: ${errorMessage(e)}`);
        }
      });
    }
    const known = new Set(st.endpoints.list().map((ep) => this.scratchName(ep.id)));
    if (!sweepNetns) return;
    const mine = new RegExp(`^${this.o.name.replace(/[.]/g, '\\.')}-[0-9a-f]{12}$`);
    let names: string[] = [];
    try {
      names = readdirSync(NETNS_RUN_DIR);
    } catch {
      names = [];
    }
    for (const n of names) {
      if (!mine.test(n) || known.has(n)) continue;
      try {
        deleteScratchNetns(n);
        this.o.log(`gc: scratch netns ${n} without an endpoint removed`);
      } catch (e) {
        this.o.log(`gc: ${errorMessage(e)}`);
      }
    }
  }
}
