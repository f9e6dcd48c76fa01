// bridge vlan / vlanTrunk / preserveDefaultVlan, observed in a kernel that has bridge VLAN filtering.
// The kernel of this project's machines (and CI's) is built without CONFIG_BRIDGE_VLAN_FILTERING, so
// bridge-keys.test.ts skips its VLAN tests there, and cnitool-conf-examples.test.ts its VLAN examples.
// This suite boots Debian 12's own kernel in qemu (test/vm/), runs those same tests in it against the
// same build (CNIKIT_DIST), and requires each of them to have PASSED: a skip, a rename or a failure
// inside fails here, with the guest's output.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { IN_VM_ENV, runInVm } from '../vm/vm';
import { kernelHasVlanFiltering } from './bridge-harness';
import { exampleCases, exampleTestName } from './conf-examples-cases';

const repo = resolve(__dirname, '..', '..');

/** The VLAN tests of bridge-keys.test.ts (exact titles): the ones gated on the kernel. */
const VLAN_TESTS = [
  'vlan: PVID untagged on the port, vlan_filtering on the bridge, gateway on <bridge>.<vlan>',
  'vlanTrunk: tagged VIDs plus native VLAN 1; preserveDefaultVlan keeps the default entry',
  // Not gated, but its kernel-supported branch (a VLAN ADD succeeds) only runs on such a kernel.
  'vlan and vlanTrunk validation (the reference messages, code 7)',
];
/** The VLAN examples of cnitool-conf-examples.test.ts (full names), through each runner and plugin set. */
const VLAN_EXAMPLES = exampleCases()
  .filter((c) => c.vlan)
  .map(exampleTestName);
const SUITES = ['test/integration/bridge-keys.test.ts', 'test/integration/cnitool-conf-examples.test.ts'];
const EXPECTED = [...VLAN_TESTS, ...VLAN_EXAMPLES];

function hasQemu(): boolean {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const inVm = process.env[IN_VM_ENV] === '1'; // never boot a VM from inside the VM
const needed = !inVm && !kernelHasVlanFiltering('zv');
// On a kernel with VLAN filtering bridge-keys.test.ts runs these tests itself.
const vmTest = needed ? test : test.skip;

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface JestJson {
  numFailedTestSuites: number;
  numRuntimeErrorTestSuites: number;
  testResults: Array<{ name: string; message: string; assertionResults: Array<{ fullName: string; status: string; failureMessages: string[] }> }>;
}

// Emulated (TCG) guests are ~10x slower than the host: boot ~6 s, the tests 2-7 min (a shared machine).
const TIMEOUT_MS = 900_000;

vmTest(
  'bridge-keys VLAN tests and the VLAN conf-examples pass in a VM with Debian 12 kernel (bridge vlan_filtering)',
  async () => {
    // Without qemu the VLAN keys would go untested: fail, naming the missing package.
    expect(hasQemu() ? 'qemu-system-x86_64 found' : 'qemu-system-x86_64 missing (apt-get install qemu-system-x86)').toBe('qemu-system-x86_64 found');
    expect(VLAN_EXAMPLES.length).toBeGreaterThan(0);
    const pattern = `^(${EXPECTED.map(escapeRegExp).join('|')})$`;
    const run = await runInVm(
      [
        // The probe of both suites must find vlan_filtering here, or the run below skips.
        'ip netns add vm-probe && ip -n vm-probe link add probe type bridge vlan_filtering 1 && echo "@@ vlan_filtering ok"; ip netns del vm-probe',
        `exec node node_modules/.bin/jest --ci --runInBand --colors=false --verbose ${SUITES.join(' ')} ` +
          '-t "$VLAN_TESTS" --json --outputFile="$VM_JOB/result.json"',
      ].join('\n'),
      {
        cwd: repo,
        env: { CNIKIT_DIST: process.env.CNIKIT_DIST ? resolve(process.env.CNIKIT_DIST) : undefined, CI: process.env.CI, VLAN_TESTS: pattern },
        timeoutMs: TIMEOUT_MS - 30_000,
        collect: ['result.json'],
      },
    );
    const context = `VM (${Math.round(run.ms / 1000)} s, exit ${run.code}${run.timedOut ? ', TIMED OUT' : ''})\n--- guest output ---\n${run.output.slice(-20000)}\n--- serial ---\n${run.serial.slice(-5000)}`;
    const raw = run.files['result.json'];
    if (raw === undefined) throw new Error(`the VM produced no jest result\n${context}`);
    const result = JSON.parse(raw) as JestJson;
    const statuses = new Map(result.testResults.flatMap((f) => f.assertionResults.map((a) => [a.fullName, a.status] as const)));
    const passed = [...statuses].filter(([, status]) => status === 'passed').map(([name]) => name);
    // Each expected test ran and passed (a skipped one is "pending", like the tests -t filtered out);
    // nothing else passed or failed, so a renamed test cannot hide behind the pattern.
    if (JSON.stringify(passed.sort()) !== JSON.stringify([...EXPECTED].sort()) || [...statuses.values()].includes('failed')) {
      const failures = result.testResults.flatMap((f) => [f.message, ...f.assertionResults.flatMap((a) => a.failureMessages)]).join('\n');
      const got = EXPECTED.map((t) => `${statuses.get(t) ?? 'missing'}: ${t}`).join('\n  ');
      throw new Error(`expected exactly these tests to pass in the VM:\n  ${got}\n${failures}\n${context}`);
    }
    expect(run.output).toContain('@@ vlan_filtering ok');
    expect(result.numFailedTestSuites + result.numRuntimeErrorTestSuites).toBe(0);
    expect(run.code).toBe(0);
  },
  TIMEOUT_MS,
);
