// The CNM records on disk: <id>.json files written atomically 0600 in 0700 directories, IDs checked
// before they name a file, junk and planted symlinks never read or followed.
import { lstatSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CnmError } from '../../cnm/errors';
import { LocalNetworkStore, openStateDir, RecordDir } from '../../cnm/store';
import type { NetworkRecord } from '../../cnm/model';

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'cnm-store-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ID = (c: string): string => c.repeat(64);

test('records are <id>.json, 0600 in a 0700 directory, replaced atomically (no temp file left); the state dir is made 0700 with its parents', () => {
  const state = openStateDir(join(dir, 'a', 'b'));
  expect(statSync(join(dir, 'a', 'b')).mode & 0o777).toBe(0o700);
  const recs = RecordDir.open<{ id: string; v: number }>(state, 'endpoints');
  recs.write({ id: ID('a'), v: 1 });
  recs.write({ id: ID('a'), v: 2 });
  expect(recs.read(ID('a'))).toEqual({ id: ID('a'), v: 2 });
  expect(readdirSync(join(dir, 'a', 'b', 'endpoints'))).toEqual([`${ID('a')}.json`]);
  expect(statSync(join(dir, 'a', 'b', 'endpoints')).mode & 0o777).toBe(0o700);
  expect(statSync(join(dir, 'a', 'b', 'endpoints', `${ID('a')}.json`)).mode & 0o777).toBe(0o600);
  recs.remove(ID('a'));
  expect(recs.read(ID('a'))).toBeNull();
});

test('an ID that is not 64 hex digits never names a file; list skips junk and a planted symlink is neither read nor followed', () => {
  const state = openStateDir(dir);
  const recs = RecordDir.open<{ id: string }>(state, 'networks');
  for (const bad of ['../x', 'A'.repeat(64), ID('a').slice(1), '']) {
    expect(() => recs.read(bad)).toThrow(CnmError);
    expect(() => recs.write({ id: bad })).toThrow(/^invalid ID/);
  }
  writeFileSync(join(dir, 'networks', 'notes.txt'), 'x');
  writeFileSync(join(dir, 'networks', `${ID('b')}.json`), JSON.stringify({ id: ID('b') }));
  writeFileSync(join(dir, 'secret'), JSON.stringify({ id: ID('c'), stolen: true }));
  symlinkSync(join(dir, 'secret'), join(dir, 'networks', `${ID('c')}.json`));
  expect(() => recs.list()).toThrow(/is a symbolic link/);
  rmSync(join(dir, 'networks', `${ID('c')}.json`));
  expect(recs.list()).toEqual([{ id: ID('b') }]);
  writeFileSync(join(dir, 'networks', `${ID('d')}.json`), '{not json');
  expect(() => recs.read(ID('d'))).toThrow(`${join(dir, 'networks')}/${ID('d')}.json: not valid JSON`);
  expect(lstatSync(join(dir, 'secret')).isFile()).toBe(true);
});

test('LocalNetworkStore: put, get, list, remove through the record directory', async () => {
  const store = new LocalNetworkStore(RecordDir.open<NetworkRecord>(openStateDir(dir), 'networks'));
  const n = { id: ID('e'), name: 'web' } as NetworkRecord;
  await store.put(n);
  expect(await store.get(ID('e'))).toEqual(n);
  expect(await store.list()).toEqual([n]);
  await store.remove(ID('e'));
  expect(await store.list()).toEqual([]);
  expect(store.scope).toBe('local');
});
