// Writes a host-local store in the reference's on-disk format, fast (used by the benchmark and the
// tests): N lease files "<containerID>\r\n<ifname>" (mode 0600), last_reserved_ip.0 and `lock`.
// `n` leases are taken from the start of `subnet` (IPv4, gateway .1 skipped).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface GeneratedStore {
  dir: string; // <dataDir>/<network>
  ips: string[];
  ids: string[];
}

function v4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export function writeReferenceStore(dataDir: string, network: string, subnetBase: string, n: number, opts: { idPrefix?: string; ifname?: string } = {}): GeneratedStore {
  const dir = join(dataDir, network);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const base = subnetBase.split('.').reduce((a, b) => a * 256 + Number(b), 0);
  const ips: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const ip = v4(base + 2 + i); // .0 network, .1 gateway
    const id = `${opts.idPrefix ?? 'bench'}${i.toString(16).padStart(8, '0')}`;
    writeFileSync(join(dir, ip), `${id}\r\n${opts.ifname ?? 'eth0'}`, { mode: 0o600 });
    ips.push(ip);
    ids.push(id);
  }
  if (n) writeFileSync(join(dir, 'last_reserved_ip.0'), ips[n - 1]!, { mode: 0o600 });
  writeFileSync(join(dir, 'lock'), '', { mode: 0o750 });
  return { dir, ips, ids };
}

// CLI for the benchmark: node/tsx test/support/host-local-leases.ts <dataDir> <network> <subnetBase> <n>
if (require.main === module) {
  const [dataDir, network, base, n] = process.argv.slice(2);
  if (!dataDir || !network || !base || !n) {
    process.stderr.write('usage: host-local-leases <dataDir> <network> <subnetBase e.g. 198.18.0.0> <count>\n');
    process.exit(2);
  }
  writeReferenceStore(dataDir, network, base, Number(n));
}
