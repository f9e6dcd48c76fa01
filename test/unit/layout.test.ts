// The layout rules of shared/ (README "Layout"): the protocol core does not depend on Linux, netfilter
// or plugin helpers, and the Linux layer does not depend on netfilter or plugins. The imports are
// read and resolved by esbuild, the bundler that builds the product (static, re-export and dynamic
// imports), and followed transitively, so a rule cannot be broken through a file in between
// (shared/cni -> shared/ip.ts -> shared/linux).
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { buildSync } from 'esbuild';

const ROOT = resolve(__dirname, '../..');

function sourcesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourcesUnder(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

let graph: Map<string, string[]> | undefined;

/** The repository files a source imports (packages, node: and bun: modules are not ours). */
function localImports(file: string): string[] {
  if (!graph) {
    const entryPoints = ['shared', 'plugins', 'ipam', 'runner'].flatMap((d) => sourcesUnder(join(ROOT, d)));
    const { metafile } = buildSync({ entryPoints, bundle: true, write: false, metafile: true, outdir: '/nonexistent', absWorkingDir: ROOT, platform: 'node', packages: 'external', external: ['bun:*'], logLevel: 'silent' });
    graph = new Map(Object.entries(metafile!.inputs).map(([f, i]) => [resolve(ROOT, f), i.imports.filter((x) => !x.external).map((x) => resolve(ROOT, x.path))]));
  }
  const imports = graph.get(file);
  if (!imports) throw new Error(`${relative(ROOT, file)} was not read`);
  return imports;
}

/** Every chain "a -> b -> ... -> x" from a file under `from` to a file under one of `forbidden`. */
function violations(from: string, forbidden: string[]): string[] {
  const bad = forbidden.map((d) => join(ROOT, d) + '/');
  const found: string[] = [];
  for (const start of sourcesUnder(join(ROOT, from))) {
    const seen = new Set<string>([start]);
    const queue: string[][] = [[start]];
    while (queue.length) {
      const chain = queue.shift()!;
      for (const next of localImports(chain[chain.length - 1]!)) {
        if (seen.has(next)) continue;
        seen.add(next);
        const path = [...chain, next];
        if (bad.some((b) => next.startsWith(b))) found.push(path.map((p) => relative(ROOT, p)).join(' -> '));
        else queue.push(path);
      }
    }
  }
  return found;
}

test('the import reader sees static, re-export and dynamic imports (so the rules below can fail)', () => {
  const rel = (f: string) => localImports(join(ROOT, f)).map((p) => relative(ROOT, p));
  expect(rel('shared/linux/netlink/socket.ts')).toContain('shared/linux/netns.ts');
  expect(rel('shared/linux/netlink/index.ts')).toEqual(expect.arrayContaining(['shared/linux/netlink/addr.ts', 'shared/linux/netlink/socket.ts']));
  expect(violations('shared/linux', ['shared/linux/netlink'])).not.toEqual([]);
});

test('shared/cni imports nothing from shared/linux, shared/netfilter or shared/plugin', () => {
  expect(sourcesUnder(join(ROOT, 'shared/cni')).length).toBeGreaterThan(5);
  expect(violations('shared/cni', ['shared/linux', 'shared/netfilter', 'shared/plugin'])).toEqual([]);
});

test('shared/linux imports nothing from shared/netfilter or the plugins', () => {
  expect(violations('shared/linux', ['shared/netfilter', 'plugins', 'ipam'])).toEqual([]);
});
