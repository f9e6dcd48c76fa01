// resolvConf → result dns (the reference's dns.go): nameserver, domain, search, options.
import { errorMessage } from '../../shared/cni/errors';
import type { DNS } from '../../shared/cni/types';
import { configError } from '../../shared/cni/config';
import { FileError, readRegularFile } from '../../shared/linux/files';

/** Far more than any resolv.conf; a bound so a config cannot make us read a huge file. */
const MAX_RESOLV_CONF = 1024 * 1024;

/**
 * Reads `path` (ipam.resolvConf) into a result's dns. Issue 10: it must be a regular file (a FIFO
 * would hang us) of at most 1 MiB; symlinks are followed (/etc/resolv.conf often is one).
 * Throws code 7 naming the field and the path.
 */
export function parseResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readRegularFile(path, MAX_RESOLV_CONF, { followSymlinks: true }).toString('utf8');
  } catch (e) {
    const why = e instanceof FileError ? e.reason : errorMessage(e);
    throw configError('ipam.resolvConf', path, why);
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
