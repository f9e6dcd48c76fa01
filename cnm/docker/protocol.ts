// The Docker legacy remote-driver protocol as dockerd 20.10 speaks it (libnetwork
// drivers/remote/api/api.go, ipams/remote/api/api.go; captured bodies in
// shared/research/cnm-shim.md §1-2): request shapes, and the checks every handler runs on what it
// is sent before any of it touches a path or a command line.

/** A request body field was missing or malformed: answered as the call's error, naming the field. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The body as an object: Docker sends an empty body (Content-Length 0) to Activate and GetCapabilities. */
export function bodyObject(text: string): Json {
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError(`request body is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (!isObj(v)) throw new ProtocolError('request body is not a JSON object');
  return v;
}

// Network and endpoint IDs are libnetwork's stringid.GenerateRandomID(): 64 lower-case hex digits.
const ID_RE = /^[0-9a-f]{64}$/;

/** `body[field]` as a Docker object ID (64 hex digits). Throws ProtocolError naming the field and value. */
export function idField(body: Json, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || !ID_RE.test(v)) throw new ProtocolError(`${field} ${JSON.stringify(v ?? null)} is not a 64-hex-digit ID`);
  return v;
}

/** An optional string field; "" when absent. Throws ProtocolError when present and not a string. */
export function strField(body: Json, field: string): string {
  const v = body[field];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new ProtocolError(`${field} ${JSON.stringify(v)} is not a string`);
  return v;
}

/** An optional object field; {} when absent or null. */
export function objField(body: Json, field: string): Json {
  const v = body[field];
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new ProtocolError(`${field} is not a JSON object`);
  return v;
}

/** libnetwork's driverapi.IPAMData as JSON: Pool, Gateway and aux values are CIDR strings. */
export interface IPAMData {
  AddressSpace: string;
  Pool: string;
  Gateway: string; // "" when Docker sent none (--ipam-driver null)
  AuxAddresses: Record<string, string>;
}

/** `body[field]` as IPAMData[] (CreateNetwork's IPv4Data / IPv6Data). */
export function ipamDataField(body: Json, field: string): IPAMData[] {
  const v = body[field];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProtocolError(`${field} is not an array`);
  return v.map((d, i) => {
    if (!isObj(d)) throw new ProtocolError(`${field}[${i}] is not a JSON object`);
    const aux = objField(d, 'AuxAddresses');
    const auxOut: Record<string, string> = {};
    for (const [k, a] of Object.entries(aux)) {
      if (typeof a !== 'string') throw new ProtocolError(`${field}[${i}].AuxAddresses.${k} is not a string`);
      auxOut[k] = a;
    }
    return { AddressSpace: strField(d, 'AddressSpace'), Pool: strField(d, 'Pool'), Gateway: strField(d, 'Gateway'), AuxAddresses: auxOut };
  });
}

/** The endpoint's interface as CreateEndpoint sends it (each field "" when libnetwork left it to the driver). */
export interface EndpointInterface {
  Address: string; // CIDR
  AddressIPv6: string; // CIDR
  MacAddress: string; // 02:42:...
}

export function interfaceField(body: Json): EndpointInterface {
  const i = objField(body, 'Interface');
  return { Address: strField(i, 'Address'), AddressIPv6: strField(i, 'AddressIPv6'), MacAddress: strField(i, 'MacAddress') };
}

/** One `-p` binding as libnetwork sends it in Options["com.docker.network.portmap"] (types.PortBinding). */
export interface DockerPortBinding {
  Proto: number; // 6 tcp, 17 udp, 132 sctp
  IP: string;
  Port: number;
  HostIP: string;
  HostPort: number;
  HostPortEnd: number;
}

/** The CNI portMappings capability entry (CONVENTIONS.md "Port mappings"). */
export interface CniPortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

const PROTOCOLS: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
const MAX_PORT_MAPPINGS = 4096;

/**
 * Options["com.docker.network.portmap"] → the CNI `portMappings` capability: a HostPort..HostPortEnd
 * range becomes one mapping per host port, all to the one container port (Docker's own expansion).
 * HostPort 0 ("any free port") is refused: no CNI plugin allocates host ports. Throws ProtocolError.
 */
export function portMappings(options: Json): CniPortMapping[] {
  const v = options['com.docker.network.portmap'];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProtocolError('Options["com.docker.network.portmap"] is not an array');
  const out: CniPortMapping[] = [];
  v.forEach((b: unknown, i) => {
    const where = `Options["com.docker.network.portmap"][${i}]`;
    if (!isObj(b)) throw new ProtocolError(`${where} is not a JSON object`);
    const port = (k: string): number => {
      const n = b[k] ?? 0;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) throw new ProtocolError(`${where}.${k} ${JSON.stringify(n)} is not a port number`);
      return n;
    };
    const protocol = PROTOCOLS[b.Proto as number];
    if (!protocol) throw new ProtocolError(`${where}.Proto ${JSON.stringify(b.Proto ?? null)} is not 6 (tcp), 17 (udp) or 132 (sctp)`);
    const [containerPort, first] = [port('Port'), port('HostPort')];
    const last = Math.max(port('HostPortEnd'), first);
    if (first === 0) throw new ProtocolError(`${where}: host port 0 (a port picked by Docker) is not supported by the CNI portmap plugin; publish with an explicit host port (-p HOST:${containerPort})`);
    if (containerPort === 0) throw new ProtocolError(`${where}.Port 0 is not a container port`);
    const hostIP = typeof b.HostIP === 'string' && b.HostIP !== '' ? b.HostIP : undefined;
    for (let p = first; p <= last; p++) {
      if (out.length >= MAX_PORT_MAPPINGS) throw new ProtocolError(`${where}: more than ${MAX_PORT_MAPPINGS} port mappings`);
      out.push({ hostPort: p, containerPort, protocol, ...(hostIP ? { hostIP } : {}) });
    }
  });
  return out;
}

/** Docker's `-o k=v` options of a network: CreateNetwork Options["com.docker.network.generic"], all strings. */
export function genericOptions(options: Json): Record<string, string> {
  const g = options['com.docker.network.generic'];
  if (g === undefined || g === null) return {};
  if (!isObj(g)) throw new ProtocolError('Options["com.docker.network.generic"] is not a JSON object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(g)) out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return out;
}
