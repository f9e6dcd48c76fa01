// The plugin's environment and code are exactly what the runtime passed and what we built: a
// compiled bun binary would otherwise load `.env` (and bunfig.toml) from its working directory, and
// honour bun's runtime option variables (BUN_OPTIONS="--preload x.js" runs x.js in every plugin).
import { execa } from 'execa';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir } from '../support/cni';

describe('environment isolation', () => {
  let cwd: string;
  let marker: string;
  let preload: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'cnikit-dotenv-'));
    writeFileSync(join(cwd, '.env'), 'CNI_COMMAND=VERSION\n');
    writeFileSync(join(cwd, 'bunfig.toml'), 'this is = not toml [\n');
    marker = join(cwd, 'preloaded');
    preload = join(cwd, 'x.js');
    writeFileSync(preload, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran'); console.log('PRELOADED');\n`);
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));
  afterEach(() => rmSync(marker, { force: true }));

  const version = (env: Record<string, string>) =>
    execa(join(binDir(), 'bridge'), [], { cwd, env: { PATH: process.env.PATH!, CNI_COMMAND: 'VERSION', ...env }, extendEnv: false, reject: false });

  test('a .env and a bunfig.toml in the working directory are ignored', async () => {
    const r = await execa(join(binDir(), 'host-local'), [], { cwd, env: { PATH: process.env.PATH }, extendEnv: false, input: '', reject: false });
    // No CNI_COMMAND in the real environment: the bare invocation's about text, not VERSION's JSON.
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('CNI protocol versions supported: 0.1.0');
  });

  test.each([
    ['BUN_OPTIONS', '--preload PRELOAD'],
    ['BUN_OPTIONS', '--preload=PRELOAD'],
    ['BUN_OPTIONS', '-r PRELOAD'],
    ['BUN_OPTIONS', '--import PRELOAD'],
    ['BUN_INSPECT_PRELOAD', 'PRELOAD'],
  ])('%s=%s runs nothing of its own: VERSION prints only its JSON', async (name, value) => {
    const r = await version({ [name]: value.replace('PRELOAD', preload) });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).supportedVersions).toHaveLength(7);
    expect(existsSync(marker)).toBe(false);
  });

  test('BUN_OPTIONS and BUN_INSPECT_PRELOAD together run nothing either', async () => {
    const r = await version({ BUN_OPTIONS: '--smol', BUN_INSPECT_PRELOAD: preload });
    expect(r.exitCode).toBe(0);
    expect(existsSync(marker)).toBe(false);
  });

  test('BUN_INSPECT opens no debugger (its unix socket is never created)', async () => {
    const sock = join(cwd, 'inspect.sock');
    const r = await version({ BUN_INSPECT: `ws+unix://${sock}` });
    expect(r.exitCode).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });

  test.each(['BUN_BYTECODE_ORDER_OUT', 'BUN_BYTECODE_DIGEST_OUT'])('%s=<path> writes nothing there: the plugin never writes a file its environment names', async (name) => {
    const out = join(cwd, `${name}.out`);
    const r = await version({ [name]: out });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).cniVersion).toBe('1.1.0');
    expect(existsSync(out)).toBe(false);
  });

  test('BUN_BE_BUN does not turn the plugin into the bun CLI', async () => {
    const r = await version({ BUN_BE_BUN: '1' });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).cniVersion).toBe('1.1.0');
  });
});
