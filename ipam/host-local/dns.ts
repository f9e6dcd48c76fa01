// resolvConf → result dns (the reference's dns.go): nameserver, domain, search, options.
import { readFileSync } from 'node:fs';
import type { DNS } from '../../shared/cni/types';
import { configError } from '../../shared/cni/config';

export function parseResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw configError('ipam.resolvConf', path, (e as Error).message);
  }
  const dns: DNS = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line[0] === '#' || line[0] === ';') continue;
    const f = line.split(/\s+/);
    if (f.length < 2) continue;
    switch (f[0]) {
      case 'nameserver':
        (dns.nameservers ??= []).push(f[1]!);
        break;
      case 'domain':
        dns.domain = f[1]!;
        break;
      case 'search':
        (dns.search ??= []).push(...f.slice(1));
        break;
      case 'options':
        (dns.options ??= []).push(...f.slice(1));
        break;
    }
  }
  return dns;
}
