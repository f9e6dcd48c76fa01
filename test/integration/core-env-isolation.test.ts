// The plugin's environment is exactly what the runtime passed: a compiled bun binary would
// otherwise load `.env` (and bunfig.toml) from its working directory.
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir } from '../support/cni';

describe('environment isolation', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'cnikit-dotenv-'));
    writeFileSync(join(cwd, '.env'), 'CNI_COMMAND=VERSION\n');
    writeFileSync(join(cwd, 'bunfig.toml'), 'this is = not toml [\n');
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  test('a .env and a bunfig.toml in the working directory are ignored', async () => {
    const r = await execa(join(binDir(), 'host-local'), [], { cwd, env: { PATH: process.env.PATH }, extendEnv: false, input: '', reject: false });
    // No CNI_COMMAND in the real environment: the bare invocation's about text, not VERSION's JSON.
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('CNI protocol versions supported: 0.1.0');
  });
});
