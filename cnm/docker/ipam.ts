// The IpamDriver side (`docker network create --ipam-driver NAME`, libnetwork ipams/remote): this
// driver allocates, with the CNM library's Docker IPAM on host-local's on-disk store (../ipam.ts),
// one store per pool under <state>/ipam. The endpoint's chain then gets exactly that address
// (chain.ts endpointArgs: `static` IPAM), so nothing is allocated twice. RequestAddress carries no
// endpoint ID: the MAC libnetwork generates for the endpoint (RequiresMACAddress) owns the lease,
// so a re-sent request finds its lease again (cnm-shim.md §2, §5.3 B).
import { randomHex, sha256Hex } from '../../shared/crypto';
import { contains, formatCIDR, formatIP, networkOf, parseCIDR, parseIP } from '../../shared/ip';
import { canonicalizeRange } from '../../ipam/host-local/range';
import { NetworkIpam, type IpamPoolConfig } from '../index';
import { KeyedQueue, OWN_ADDRESS_SPACE } from './driver';
import { objField, ProtocolError, strField, type Json } from './protocol';
import type { PluginState, PoolRecord } from './records';

const GATEWAY_OPTION = 'com.docker.network.gateway';
const REQUEST_TYPE = 'RequestAddressType';
const MAC_OPTION = 'com.docker.network.endpoint.macaddress';

const bare = (cidr: string): string => cidr.split('/')[0] ?? '';

export class IpamDriver {
  private readonly queue = new KeyedQueue();
  constructor(private readonly o: { state: PluginState }) {}

  readonly handlers: Record<string, (b: Json) => Promise<Json>> = {
    'IpamDriver.GetCapabilities': async () => ({ RequiresMACAddress: true, RequiresRequestReplay: false }),
    'IpamDriver.GetDefaultAddressSpaces': async () => ({ LocalDefaultAddressSpace: OWN_ADDRESS_SPACE, GlobalDefaultAddressSpace: OWN_ADDRESS_SPACE }),
    'IpamDriver.RequestPool': (b) => this.requestPool(b),
    'IpamDriver.ReleasePool': (b) => this.releasePool(b),
    'IpamDriver.RequestAddress': (b) => this.requestAddress(b),
    'IpamDriver.ReleaseAddress': (b) => this.releaseAddress(b),
  };

  /** The library's IPAM of a pool: one IpamPoolConfig (subnet, --ip-range, gateway) on the pool's store. */
  private ipam(rec: PoolRecord): NetworkIpam {
    const config: IpamPoolConfig = { subnet: rec.pool, gateway: bare(rec.gateway), ...(rec.subPool ? { ipRange: rec.subPool } : {}) };
    return new NetworkIpam(this.o.state.ipamDir, rec.store, [config]);
  }

  /**
   * A pool is Docker's --subnet (with --ip-range as its sub-pool); this driver picks none itself.
   * Its gateway is the subnet's first usable address (Docker's rule), reported in Data so libnetwork
   * requests no gateway address unless --gateway was given. Overlapping pools are refused.
   */
  private async requestPool(b: Json): Promise<Json> {
    const pool = strField(b, 'Pool');
    const subPool = strField(b, 'SubPool');
    const v6 = b.V6 === true;
    if (!pool) throw new ProtocolError(`this IPAM driver needs a subnet: docker network create --subnet CIDR${v6 ? ' (and one for --ipv6)' : ''}`);
    const net = parseCIDR(pool);
    if (!net || formatCIDR(networkOf(net)) !== formatCIDR(net)) throw new ProtocolError(`Pool ${JSON.stringify(pool)} is not a subnet (CIDR with the host bits zero)`);
    if ((net.ip.family === 6) !== v6) throw new ProtocolError(`Pool ${pool} is not an IPv${v6 ? 6 : 4} subnet`);
    const sub = subPool ? parseCIDR(subPool) : null;
    if (subPool && (!sub || !contains(net, sub.ip) || sub.prefix < net.prefix)) throw new ProtocolError(`SubPool (--ip-range) ${subPool} is not inside ${pool}`);
    const id = sha256Hex(`${pool}|${subPool}`);
    return this.queue.run('pools', async () => {
      for (const p of this.o.state.pools.list()) {
        const o = parseCIDR(p.pool);
        if (o && o.ip.family === net.ip.family && (contains(o, net.ip) || contains(net, o.ip))) throw new ProtocolError(`subnet ${pool} overlaps subnet ${p.pool} of another network of this driver`);
      }
      const gw = canonicalizeRange({ subnet: net }).rangeStart; // the first usable address
      const rec: PoolRecord = { id, pool, subPool, v6, gateway: `${formatIP(gw)}/${net.prefix}`, store: `docker-pool-${id.slice(0, 16)}`, leases: {} };
      this.o.state.pools.write(rec);
      return { PoolID: id, Pool: pool, Data: { [GATEWAY_OPTION]: rec.gateway } };
    });
  }

  private async releasePool(b: Json): Promise<Json> {
    const id = strField(b, 'PoolID');
    return this.queue.run('pools', async () => {
      const rec = this.pool(id, false);
      if (!rec) return {};
      this.ipam(rec).destroy();
      this.o.state.pools.remove(id);
      return {};
    });
  }

  private pool(id: string, must: boolean): PoolRecord | null {
    const rec = /^[0-9a-f]{64}$/.test(id) ? this.o.state.pools.read(id) : null;
    if (!rec && must) throw new ProtocolError(`PoolID ${JSON.stringify(id)} is not a pool of this driver`);
    return rec;
  }

  /**
   * An address from the pool: the one asked for (--gateway, --aux-address, docker run --ip) or the
   * next free one. The owner is the endpoint's MAC (libnetwork passes it because of
   * RequiresMACAddress), "gateway" for the gateway, else the address itself.
   */
  private async requestAddress(b: Json): Promise<Json> {
    const id = strField(b, 'PoolID');
    const want = strField(b, 'Address');
    const opts = objField(b, 'Options');
    const ip = want ? parseIP(want) : null;
    if (want && !ip) throw new ProtocolError(`Address ${JSON.stringify(want)} is not an IP address`);
    const mac = typeof opts[MAC_OPTION] === 'string' ? (opts[MAC_OPTION] as string) : '';
    const isGateway = opts[REQUEST_TYPE] === GATEWAY_OPTION;
    const owner = isGateway ? 'gateway' : mac ? `mac-${mac.toLowerCase().replace(/[^0-9a-f]/g, '')}` : ip ? `addr-${formatIP(ip).replace(/[.:]/g, '-')}` : `req-${randomHex(8)}`;
    return this.queue.run(id, async () => {
      const rec = this.pool(id, true)!;
      const net = parseCIDR(rec.pool)!;
      const held = rec.leases[owner];
      if (held && (!ip || bare(held) === formatIP(ip))) return { Address: held, Data: {} };
      if (ip && !contains(net, ip)) throw new ProtocolError(`address ${want} is not in subnet ${rec.pool}`);
      if (isGateway) {
        // --gateway: the pool's gateway becomes that address; the store's ranges never hand it out.
        if (!ip) throw new ProtocolError('a gateway request without an address');
        const gateway = `${formatIP(ip)}/${net.prefix}`;
        this.o.state.pools.write({ ...rec, gateway, leases: { ...rec.leases, gateway } });
        return { Address: gateway, Data: {} };
      }
      const got = this.ipam(rec).allocate(owner, ip ? { [ip.family === 4 ? 'ipv4' : 'ipv6']: formatIP(ip) } : {});
      const address = (rec.v6 ? got.ipv6 : got.ipv4)?.address;
      if (!address) throw new ProtocolError(`pool ${rec.pool}: no address allocated`);
      try {
        this.o.state.pools.write({ ...rec, leases: { ...rec.leases, [owner]: address } });
      } catch (e) {
        this.ipam(rec).release(owner);
        throw e;
      }
      return { Address: address, Data: {} };
    });
  }

  private async releaseAddress(b: Json): Promise<Json> {
    const id = strField(b, 'PoolID');
    const addr = strField(b, 'Address');
    return this.queue.run(id, async () => {
      const rec = this.pool(id, false);
      if (!rec) return {};
      const leases = { ...rec.leases };
      for (const [owner, a] of Object.entries(leases)) {
        if (bare(a) !== addr) continue;
        if (owner !== 'gateway') this.ipam(rec).release(owner);
        delete leases[owner];
      }
      this.o.state.pools.write({ ...rec, leases });
      return {};
    });
  }
}
