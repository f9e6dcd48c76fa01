// The IpamDriver side (`docker network create --ipam-driver NAME`, libnetwork ipams/remote): this
// driver allocates, from host-local's on-disk store under <state>/docker/ipam, one store per pool.
// The endpoint's chain then gets exactly that address (chain.ts endpointArgs), so nothing is
// allocated twice. RequestAddress carries no endpoint ID: the MAC libnetwork generates for the
// endpoint (RequiresMACAddress) is the lease's owner, so a re-sent request finds its lease again.
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseResult } from '../../shared/cni/types';
import { addTo, contains, formatCIDR, formatIP, lastAddress, networkOf, parseCIDR, parseIP } from '../../shared/ip';
import { confListFromBytes, type NetworkConfList } from '../../runner/conf';
import { resultMap } from '../../runner/result';
import type { Runner, RuntimeConf } from '../../runner/runner';
import { KeyedQueue, OWN_ADDRESS_SPACE } from './driver';
import { objField, ProtocolError, strField, type Json } from './protocol';
import type { PluginState, PoolRecord } from './records';

const GATEWAY_OPTION = 'com.docker.network.gateway';
const REQUEST_TYPE = 'RequestAddressType';
const MAC_OPTION = 'com.docker.network.endpoint.macaddress';

export interface IpamOptions {
  state: PluginState;
  runner: Runner;
  cniPath: string[];
  timeoutMs: number;
  log: (line: string) => void;
}

/** A pool's leases: owner → address (CIDR), kept with the pool record. */
type Leases = Record<string, string>;
type PoolWithLeases = PoolRecord & { leases?: Leases };

export class IpamDriver {
  private readonly queue = new KeyedQueue();
  constructor(private readonly o: IpamOptions) {}

  readonly handlers: Record<string, (b: Json) => Promise<Json>> = {
    'IpamDriver.GetCapabilities': async () => ({ RequiresMACAddress: true, RequiresRequestReplay: false }),
    'IpamDriver.GetDefaultAddressSpaces': async () => ({ LocalDefaultAddressSpace: OWN_ADDRESS_SPACE, GlobalDefaultAddressSpace: OWN_ADDRESS_SPACE }),
    'IpamDriver.RequestPool': (b) => this.requestPool(b),
    'IpamDriver.ReleasePool': (b) => this.releasePool(b),
    'IpamDriver.RequestAddress': (b) => this.requestAddress(b),
    'IpamDriver.ReleaseAddress': (b) => this.releaseAddress(b),
  };

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
    const id = `pool-${createHash('sha256').update(`${pool}|${subPool}`).digest('hex').slice(0, 16)}`;
    return this.queue.run('pools', async () => {
      for (const other of this.o.state.poolIds()) {
        const p = this.o.state.pool(other);
        const o = p ? parseCIDR(p.pool) : null;
        if (o && o.ip.family === net.ip.family && (contains(o, net.ip) || contains(net, o.ip))) throw new ProtocolError(`subnet ${pool} overlaps subnet ${p!.pool} of another network of this driver`);
      }
      const gw = addTo(networkOf(net).ip, 1n);
      if (!gw || !contains(net, gw)) throw new ProtocolError(`subnet ${pool} has no usable address`);
      const rec: PoolWithLeases = { id, pool, subPool, v6, gateway: `${formatIP(gw)}/${net.prefix}`, store: id, leases: {} };
      this.o.state.savePool(rec);
      return { PoolID: id, Pool: pool, Data: { [GATEWAY_OPTION]: rec.gateway } };
    });
  }

  private async releasePool(b: Json): Promise<Json> {
    const id = strField(b, 'PoolID');
    return this.queue.run('pools', async () => {
      const rec = this.pool(id, false);
      if (!rec) return {};
      rmSync(join(this.o.state.ipamDir, rec.store), { recursive: true, force: true });
      this.o.state.removePool(id);
      return {};
    });
  }

  private pool(id: string, must: boolean): PoolWithLeases | null {
    let rec: PoolWithLeases | null = null;
    try {
      rec = this.o.state.pool(id) as PoolWithLeases | null;
    } catch {
      rec = null;
    }
    if (!rec && must) throw new ProtocolError(`PoolID ${JSON.stringify(id)} is not a pool of this driver`);
    return rec;
  }

  /** The one-plugin host-local list whose store (<state>/docker/ipam/<pool ID>) holds the pool's leases. */
  private list(rec: PoolRecord): NetworkConfList {
    const net = parseCIDR(rec.pool)!;
    const sub = rec.subPool ? parseCIDR(rec.subPool) : null;
    const range: Json = { subnet: rec.pool, gateway: rec.gateway.split('/')[0] };
    if (sub && sub.prefix > net.prefix) Object.assign(range, { rangeStart: formatIP(networkOf(sub).ip), rangeEnd: formatIP(lastAddress(sub)) });
    const conf = { cniVersion: '1.0.0', name: rec.store, plugins: [{ type: 'host-local', ipam: { type: 'host-local', dataDir: this.o.state.ipamDir, ranges: [[range]] } }] };
    return confListFromBytes(Buffer.from(JSON.stringify(conf)));
  }

  /**
   * Runs host-local ADD or DEL for `owner` on the pool's store through the runner (bounded, result
   * cached like any attachment). ADD returns the leased CIDR. host-local never enters CNI_NETNS; it
   * gets a path that is not a namespace because ADD requires one.
   */
  private async hostLocal(verb: 'ADD' | 'DEL', rec: PoolRecord, owner: string, ip?: string): Promise<string> {
    const list = this.list(rec);
    const rt: RuntimeConf = { containerID: owner, ifName: 'eth0', netns: `/run/netns/${rec.store}-none`, args: ip ? [['IP', ip]] : [] };
    if (verb === 'DEL') {
      await this.o.runner.delNetworkList(list, rt);
      return '';
    }
    const result = await this.o.runner.addNetworkList(list, rt);
    const a = parseResult(resultMap(result), result.version).ips?.[0]?.address;
    if (!a) throw new ProtocolError(`host-local returned no address for pool ${rec.pool}`);
    return a;
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
    if (want && !parseIP(want)) throw new ProtocolError(`Address ${JSON.stringify(want)} is not an IP address`);
    const mac = typeof opts[MAC_OPTION] === 'string' ? (opts[MAC_OPTION] as string) : '';
    const owner =
      opts[REQUEST_TYPE] === GATEWAY_OPTION ? 'gateway' : mac ? `mac-${mac.toLowerCase().replace(/[^0-9a-f]/g, '')}` : want ? `addr-${want.replace(/[^0-9a-fA-F]/g, '-')}` : `req-${randomBytes(8).toString('hex')}`;
    return this.queue.run(id, async () => {
      const rec = this.pool(id, true)!;
      const leases = rec.leases ?? {};
      const held = leases[owner];
      if (held && (!want || held.split('/')[0] === want)) return { Address: held, Data: {} };
      if (want) {
        const net = parseCIDR(rec.pool)!;
        if (!contains(net, parseIP(want)!)) throw new ProtocolError(`address ${want} is not in subnet ${rec.pool}`);
        // The gateway is excluded from host-local's range; Docker asks for it by address (--gateway).
        if (want === rec.gateway.split('/')[0]) {
          leases[owner] = `${want}/${net.prefix}`;
          this.o.state.savePool({ ...rec, leases } as PoolRecord);
          return { Address: leases[owner], Data: {} };
        }
      }
      const address = await this.hostLocal('ADD', rec, owner, want || undefined);
      leases[owner] = address;
      try {
        this.o.state.savePool({ ...rec, leases } as PoolRecord);
      } catch (e) {
        await this.hostLocal('DEL', rec, owner).catch(() => undefined);
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
      const leases = rec.leases ?? {};
      for (const [owner, a] of Object.entries(leases)) {
        if (a.split('/')[0] !== addr) continue;
        if (owner !== 'gateway' || a.split('/')[0] !== rec.gateway.split('/')[0]) await this.hostLocal('DEL', rec, owner);
        delete leases[owner];
        this.o.state.savePool({ ...rec, leases } as PoolRecord);
      }
      return {};
    });
  }
}
