// Running the netfilter tools (iptables-restore, iptables, nft) for masquerade and spoof-check rules.
// One exec per transaction: the tools are the stable interface to both iptables-legacy/-nft and nft.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

export class NetfilterError extends Error {
  constructor(
    readonly tool: string,
    message: string,
    readonly notFound = false,
  ) {
    super(message);
    this.name = 'NetfilterError';
  }
}

// Runtimes often pass a minimal PATH to plugins; the tools live in sbin on every distribution.
const FALLBACK_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

const found = new Map<string, string | null>();

/** The tool's full path, or null if it is not installed. */
export function findTool(tool: string): string | null {
  if (found.has(tool)) return found.get(tool)!;
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...FALLBACK_DIRS];
  let hit: string | null = null;
  for (const d of dirs) {
    try {
      accessSync(join(d, tool), constants.X_OK);
      hit = join(d, tool);
      break;
    } catch {
      /* next */
    }
  }
  found.set(tool, hit);
  return hit;
}

export interface ToolOutput {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool with optional stdin; never throws for a non-zero exit (callers decide). */
export function runTool(tool: string, args: string[], input?: string): ToolOutput {
  const file = findTool(tool);
  if (!file) throw new NetfilterError(tool, `${tool} not found in PATH or ${FALLBACK_DIRS.join(':')}`, true);
  const r = spawnSync(file, args, { input: input ?? '', encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) throw new NetfilterError(tool, `running ${tool}: ${r.error.message}`);
  return { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs a tool and throws a NetfilterError naming the command and its stderr when it fails. */
export function mustRunTool(tool: string, args: string[], what: string, input?: string): string {
  const r = runTool(tool, args, input);
  if (r.status !== 0) {
    const err = r.stderr.trim().split('\n').slice(0, 3).join('; ');
    throw new NetfilterError(tool, `${what}: ${tool} ${args.join(' ')} failed (exit ${r.status}): ${err}`);
  }
  return r.stdout;
}
