// shared/linux/files: what a writer into a directory we use can and cannot make us do. Runs on Node
// (the same node:fs calls the compiled binary makes; /proc/self/fd resolves the same way).
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileError, PinnedDir, isSafeName, readRegularFile, writeFileAtomic } from '../../shared/linux/files';

let root: string;
let outside: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'files-'));
  outside = mkdtempSync(join(tmpdir(), 'files-outside-'));
  writeFileSync(join(outside, 'victim'), 'precious', { mode: 0o644 });
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});
const victimIntact = () => {
  expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('precious');
  expect(statSync(join(outside, 'victim')).mode & 0o777).toBe(0o644);
};
const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FileError);
    return (e as FileError).code;
  }
  return undefined;
};

test('isSafeName: one component only', () => {
  for (const n of ['a', '198.18.0.2', 'fd00::2', 'c1+eth0', '.cnikit', '..a']) expect(isSafeName(n)).toBe(true);
  for (const n of ['', '.', '..', 'a/b', '../x', '/abs', 'a\0b', 'x'.repeat(256)]) expect(isSafeName(n)).toBe(false);
});

describe('PinnedDir', () => {
  test('every entry is reached through the fd: renaming the directory and planting a symlink at its path changes nothing', () => {
    const d = PinnedDir.open(join(root, 'store'), { create: 0o755 });
    renameSync(join(root, 'store'), join(root, 'moved'));
    symlinkSync(outside, join(root, 'store'));
    d.writeAtomic('a', 'one');
    expect(d.createExclusive('b', 'two')).toBe(true);
    expect(d.list().sort()).toEqual(['a', 'b']);
    expect(readFileSync(join(root, 'moved', 'a'), 'utf8')).toBe('one');
    expect(readdirSync(outside)).toEqual(['victim']);
    d.close();
  });

  test('open refuses a symlink as the directory unless told to follow (the configured root)', () => {
    symlinkSync(outside, join(root, 'link'));
    expect(code(() => PinnedDir.open(join(root, 'link')))).toBe('ENOTDIR');
    const d = PinnedDir.open(join(root, 'link'), { followSymlinks: true });
    expect(d.list()).toEqual(['victim']);
    d.close();
  });

  test('names that climb or descend are refused before any syscall (EBADNAME)', () => {
    const d = PinnedDir.open(root);
    for (const bad of ['..', '../x', 'a/b', '', '.'])
      for (const op of [() => d.read(bad, 10), () => d.unlink(bad), () => d.writeAtomic(bad, 'x'), () => d.createExclusive(bad, 'x')]) expect(code(op)).toBe('EBADNAME');
    d.close();
  });

  test('writeAtomic: random temp name, O_EXCL, replaces a planted symlink instead of writing through it; mode 0600; no temp left', () => {
    const d = PinnedDir.open(root);
    symlinkSync(join(outside, 'victim'), join(root, 'state'));
    symlinkSync(join(outside, 'victim'), join(root, '.state.cnikit-tmp')); // an old predictable temp name
    d.writeAtomic('state', 'new');
    victimIntact();
    expect(lstatSync(join(root, 'state')).isFile()).toBe(true);
    expect(readFileSync(join(root, 'state'), 'utf8')).toBe('new');
    expect(statSync(join(root, 'state')).mode & 0o777).toBe(0o600);
    expect(readdirSync(root).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    d.writeAtomic('state', 'newer', { durable: false });
    expect(readFileSync(join(root, 'state'), 'utf8')).toBe('newer');
    d.close();
  });

  test('writeAtomic failing (the target is a directory) removes its temp file and names the target', () => {
    const d = PinnedDir.open(root);
    mkdirSync(join(root, 'busy'));
    let err: FileError | undefined;
    try {
      d.writeAtomic('busy', 'x');
    } catch (e) {
      err = e as FileError;
    }
    expect(err?.message).toBe(`${root}/busy: cannot replace: EISDIR`);
    expect(readdirSync(root)).toEqual(['busy']);
    d.close();
  });

  test('createExclusive: false on any existing name, a dangling symlink included (nothing created at its target)', () => {
    const d = PinnedDir.open(root);
    symlinkSync(join(outside, 'new-file'), join(root, 'lease'));
    expect(d.createExclusive('lease', 'x')).toBe(false);
    expect(existsSync(join(outside, 'new-file'))).toBe(false);
    expect(d.createExclusive('fresh', 'x', { mode: 0o600 })).toBe(true);
    expect(d.createExclusive('fresh', 'y')).toBe(false);
    expect(readFileSync(join(root, 'fresh'), 'utf8')).toBe('x');
    d.close();
  });

  test('read: regular files only, bounded; a symlink is ELOOP, a FIFO ENOTREG without blocking, too large EFBIG, missing null', () => {
    const d = PinnedDir.open(root);
    writeFileSync(join(root, 'ok'), '12345');
    symlinkSync(join(outside, 'victim'), join(root, 'link'));
    execFileSync('mkfifo', [join(root, 'fifo')]);
    expect(d.read('ok', 5)?.toString()).toBe('12345');
    expect(code(() => d.read('ok', 4))).toBe('EFBIG');
    expect(code(() => d.read('link', 100))).toBe('ELOOP');
    expect(code(() => d.read('fifo', 100))).toBe('ENOTREG');
    expect(d.read('missing', 100)).toBeNull();
    d.close();
  });

  test('unlink removes a symlink, never its target; a directory is refused', () => {
    const d = PinnedDir.open(root);
    symlinkSync(join(outside, 'victim'), join(root, 'link'));
    expect(d.unlink('link')).toBe(true);
    expect(d.unlink('link')).toBe(false);
    victimIntact();
    mkdirSync(join(root, 'sub'));
    expect(code(() => d.unlink('sub'))).not.toBeUndefined();
    d.close();
  });

  test('subdir with replace: a regular file or a symlink planted at the name is unlinked and a real directory made', () => {
    const d = PinnedDir.open(root);
    writeFileSync(join(root, 'own'), 'not a dir');
    symlinkSync(outside, join(root, 'keys'));
    expect(code(() => d.subdir('own'))).toBe('ENOTDIR');
    const own = d.subdir('own', { create: 0o700, replace: true });
    const keys = d.subdir('keys', { create: 0o700, replace: true });
    keys.writeAtomic('k', 'v');
    expect(lstatSync(join(root, 'keys')).isDirectory()).toBe(true);
    expect(statSync(join(root, 'own')).mode & 0o777).toBe(0o700);
    expect(readdirSync(outside)).toEqual(['victim']);
    own.close();
    keys.close();
    d.close();
  });

  test('rename replaces a symlink at the new name instead of following it', () => {
    const d = PinnedDir.open(root);
    writeFileSync(join(root, 'a'), 'A');
    symlinkSync(join(outside, 'victim'), join(root, 'b'));
    d.rename('a', 'b');
    victimIntact();
    expect(readdirSync(root)).toEqual(['b']);
    expect(readFileSync(join(root, 'b'), 'utf8')).toBe('A');
    expect(code(() => d.rename('a', 'c'))).toBe('ENOENT');
    d.close();
  });

  test('cleanupTemp removes only our `.*.tmp` leftovers', () => {
    const d = PinnedDir.open(root);
    for (const n of ['.a.0123.tmp', '.state.cnikit-tmp', 'lease.tmp', 'keep']) writeFileSync(join(root, n), '');
    d.cleanupTemp();
    expect(readdirSync(root).sort()).toEqual(['.state.cnikit-tmp', 'keep', 'lease.tmp']);
    d.close();
  });
});

describe('readRegularFile', () => {
  test('a FIFO fails at once (O_NONBLOCK, fstat) instead of blocking', () => {
    execFileSync('mkfifo', [join(root, 'fifo')]);
    const t0 = Date.now();
    expect(code(() => readRegularFile(join(root, 'fifo'), 100, { followSymlinks: true }))).toBe('ENOTREG');
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test('st_size is only a hint: /proc files (size 0) are read whole, a file larger than its first buffer too', () => {
    expect(readRegularFile('/proc/self/status', 1 << 20).toString()).toContain('Pid:');
    writeFileSync(join(root, 'big'), 'x'.repeat(100_000));
    expect(readRegularFile(join(root, 'big'), 100_000)).toHaveLength(100_000);
    expect(code(() => readRegularFile(join(root, 'big'), 99_999))).toBe('EFBIG');
  });

  test('follows a symlink only when asked; bounded', () => {
    symlinkSync(join(outside, 'victim'), join(root, 'link'));
    expect(code(() => readRegularFile(join(root, 'link'), 100))).toBe('ELOOP');
    expect(readRegularFile(join(root, 'link'), 100, { followSymlinks: true }).toString()).toBe('precious');
    expect(code(() => readRegularFile(join(root, 'link'), 7, { followSymlinks: true }))).toBe('EFBIG');
    expect(code(() => readRegularFile(join(root, 'nope'), 7))).toBe('ENOENT');
  });
});

test('writeFileAtomic: the final component is never followed; the parent path is the caller’s', () => {
  symlinkSync(join(outside, 'victim'), join(root, 'entry'));
  writeFileAtomic(join(root, 'entry'), 'cache', { mode: 0o600 });
  victimIntact();
  expect(readFileSync(join(root, 'entry'), 'utf8')).toBe('cache');
  expect(readdirSync(root)).toEqual(['entry']);
});
