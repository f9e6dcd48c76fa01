// The cases of cnitool-conf-examples.test.ts, shared with bridge-vlan-vm.test.ts: that suite runs the
// VLAN examples in a VM (this machine's kernel has no bridge VLAN filtering) and must name exactly
// the tests this file makes.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { drivers, pluginPaths, REFERENCE, type Driver } from '../go/drivers';
import { confListFromBytes, confListFromConf, type Json } from '../../runner/conf';
import { compareVersions } from '../../shared/cni/version';

export const EXAMPLES = join(__dirname, '..', '..', 'conf-examples');

export interface ExampleCase {
  file: string;
  driver: Driver;
  path: { label: string; path: string };
  /** the main plugin sets `vlan` or `vlanTrunk`: needs a kernel with bridge VLAN filtering */
  vlan: boolean;
}

/** The example files (names), sorted. */
export const exampleFiles = (): string[] => readdirSync(EXAMPLES).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort();

/** Every example through every runner and plugin set that can run it. */
export function exampleCases(): ExampleCase[] {
  const cases: ExampleCase[] = [];
  for (const file of exampleFiles()) {
    const bytes = readFileSync(join(EXAMPLES, file));
    const list = file.endsWith('.conflist') ? confListFromBytes(bytes) : confListFromConf(bytes, file);
    const main = (list.plugins[0]?.raw ?? {}) as Json;
    const vlan = Boolean(main.vlan || main.vlanTrunk);
    const upTo100 = compareVersions(list.cniVersion || '0.1.0', '1.0.0') <= 0; // reference plugins and libcni 1.1.2 stop at 1.0.0
    for (const driver of drivers())
      for (const path of pluginPaths())
        if (upTo100 || (driver.name === 'cnitool' && path.path !== REFERENCE)) cases.push({ file, driver, path, vlan });
  }
  return cases;
}

/** The describe block of a case; its one test is EXAMPLE_TEST. */
export const exampleDescribe = (c: ExampleCase): string => `${c.file} through ${c.driver.name} on ${c.path.label}`;
export const EXAMPLE_TEST = 'ADD, CHECK, DEL, DEL again';
/** The full name jest gives the case's test (what `-t` matches and `--json` reports as fullName). */
export const exampleTestName = (c: ExampleCase): string => `${exampleDescribe(c)} ${EXAMPLE_TEST}`;
