// GC attachments (shared/cni/gc): the one parser the bridge and host-local use for
// cni.dev/valid-attachments, and the keys the runner sends.
import { CniError } from '../../shared/cni/errors';
import { parseValidAttachments, validAttachmentsConf } from '../../shared/cni/gc';

const a1 = { containerID: 'c1', ifname: 'eth0' };

describe('parseValidAttachments', () => {
  test('reads cni.dev/valid-attachments, keeping values as given', () => {
    expect(parseValidAttachments({ 'cni.dev/valid-attachments': [a1, { containerID: ' c2 ', ifname: 'net1', extra: 1 }] })).toEqual([
      a1,
      { containerID: ' c2 ', ifname: 'net1' },
    ]);
  });

  test('falls back to the older cni.dev/attachments when the new key is absent or null', () => {
    expect(parseValidAttachments({ 'cni.dev/attachments': [a1] })).toEqual([a1]);
    expect(parseValidAttachments({ 'cni.dev/valid-attachments': null, 'cni.dev/attachments': [a1] })).toEqual([a1]);
    expect(parseValidAttachments({ 'cni.dev/valid-attachments': [], 'cni.dev/attachments': [a1] })).toEqual([]);
  });

  test('no key means nothing is valid', () => {
    expect(parseValidAttachments({ name: 'n' })).toEqual([]);
  });

  test.each([
    [{ 'cni.dev/valid-attachments': 'all' }, 'field "cni.dev/valid-attachments" = "all": expected a list of {containerID, ifname}'],
    [{ 'cni.dev/valid-attachments': {} }, 'field "cni.dev/valid-attachments"'],
    [{ 'cni.dev/valid-attachments': [a1, { containerID: 'c2' }] }, 'field "cni.dev/valid-attachments[1]"'],
    [{ 'cni.dev/attachments': [null] }, 'field "cni.dev/attachments[0]" = null'],
    [{ 'cni.dev/valid-attachments': [{ containerID: 1, ifname: 'eth0' }] }, 'expected {"containerID": string, "ifname": string}'],
  ])('%j is code 7: %s', (conf, msg) => {
    let err: unknown;
    try {
      parseValidAttachments(conf);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(7);
    expect((err as Error).message).toContain(msg);
  });
});

test('validAttachmentsConf sends both key names, as libcni does (cni#1101)', () => {
  expect(validAttachmentsConf([a1])).toEqual({ 'cni.dev/valid-attachments': [a1], 'cni.dev/attachments': [a1] });
});
