// shared/self.ts: the build ID is read from the executable's trailer with one pread, and only a
// well-formed trailer counts (the format build.mjs appends).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSameBuild, ownBuildId, readBuildId, TRAILER_LEN, TRAILER_MAGIC, VERSION, versionLine } from '../../shared/self';

const ID = '0123456789abcdef0123456789abcdef';
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cnikit-self-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, content: string | Buffer): string => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

test('the trailer is the magic and 32 hex digits at the very end', () => {
  expect(TRAILER_LEN).toBe(TRAILER_MAGIC.length + 32);
  expect(readBuildId(file('ok', Buffer.concat([Buffer.alloc(4096, 7), Buffer.from(TRAILER_MAGIC + ID)])))).toBe(ID);
});

test('a link is followed to the file it names', () => {
  const target = file('target', `ELF...${TRAILER_MAGIC}${ID}`);
  symlinkSync(target, join(dir, 'link'));
  expect(readBuildId(join(dir, 'link'))).toBe(ID);
});

test.each([
  ['no trailer', 'just a file with no id at all, long enough to read the tail of'],
  ['a trailer not at the end', `${TRAILER_MAGIC}${ID}\n`],
  ['upper-case hex', `xx${TRAILER_MAGIC}${ID.toUpperCase()}`],
  ['a short id', `xx${TRAILER_MAGIC}${ID.slice(1)}`],
  ['too short a file', 'x'],
  ['an empty file', ''],
])('%s: no build ID', (_l, content) => {
  expect(readBuildId(file(`bad-${_l.replace(/\W/g, '')}`, content))).toBeNull();
});

test('a directory, a FIFO (not opened blocking) and a missing path have none', () => {
  expect(readBuildId(dir)).toBeNull();
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  expect(readBuildId(fifo)).toBeNull();
  expect(readBuildId(join(dir, 'missing'))).toBeNull();
});

test('from the sources (node has no trailer) nothing is our build, and the version says dev', () => {
  expect(ownBuildId()).toBeNull();
  expect(isSameBuild(file('same', `xx${TRAILER_MAGIC}${ID}`))).toBe(false);
  expect(VERSION).toBe('dev');
  expect(versionLine()).toBe('cnikit dev');
});
