// The one interface-name rule (the Go library's ValidateInterfaceName, pkg/utils): used for
// CNI_IFNAME and for names a config gives (a bridge's name).

/**
 * Why `name` cannot be a Linux interface name, or undefined when it can: empty, longer than 15 bytes
 * (IFNAMSIZ counts UTF-8 bytes, as Go's len() does), "." or "..", or containing "/", ":" or whitespace
 * (Go's unicode.IsSpace, which also counts U+0085).
 */
export function ifNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'interface name is empty';
  if (Buffer.byteLength(name, 'utf8') > 15) return 'interface name is too long (at most 15 bytes)';
  if (name === '.' || name === '..') return 'interface name is . or ..';
  if (/[/:\s\u0085]/.test(name)) return 'interface name contains / or : or whitespace characters';
  return undefined;
}
