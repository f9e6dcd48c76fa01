// Plugin helpers (shared/plugin): the rollback of a failed ADD and prevResult loading, which the
// bridge uses and the next plugins are meant to.
import { CniError } from '../../shared/cni/errors';
import { NetnsRestoreError } from '../../shared/linux/netns';
import { parsePrevResult, requirePrevResult } from '../../shared/plugin/prev-result';
import { Attempts } from '../../shared/plugin/attempts';
import { Rollback } from '../../shared/plugin/rollback';

describe('Rollback', () => {
  test('runs steps newest first, awaits async ones, and goes on past a failing step', async () => {
    const done: string[] = [];
    const errors: unknown[] = [];
    const rb = new Rollback((e) => errors.push(e));
    rb.push(() => done.push('veth'));
    rb.push(async () => {
      await new Promise((r) => setTimeout(r, 5));
      done.push('ipam');
    });
    rb.push(() => {
      throw new Error('nft gone');
    });
    rb.push(() => done.push('masq'));
    await rb.run();
    expect(done).toEqual(['masq', 'ipam', 'veth']);
    expect(errors.map((e) => (e as Error).message)).toEqual(['nft gone']);
  });

  test('a second run does nothing (each undo runs once)', async () => {
    let n = 0;
    const rb = new Rollback(() => undefined);
    rb.push(() => n++);
    await rb.run();
    await rb.run();
    expect(n).toBe(1);
  });

  test('stops after a fatal failure (the thread is in an unknown netns): older steps do not run', async () => {
    const done: string[] = [];
    const errors: unknown[] = [];
    const rb = new Rollback((e) => errors.push(e));
    rb.push(() => done.push('veth'));
    rb.push(() => {
      throw new NetnsRestoreError(1);
    });
    rb.push(() => done.push('masq'));
    await rb.run();
    expect(done).toEqual(['masq']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(NetnsRestoreError);
  });
});

describe('prevResult loading', () => {
  test('absent or null is undefined; requirePrevResult says it is missing', () => {
    expect(parsePrevResult(undefined, '1.0.0')).toBeUndefined();
    expect(parsePrevResult(null, '1.0.0')).toBeUndefined();
    expect(() => requirePrevResult(undefined, '1.0.0')).toThrow('Required prevResult missing');
  });

  test("is read at the config's version (a 0.2.0 config's ip4 becomes an IP entry)", () => {
    const raw = { cniVersion: '0.2.0', ip4: { ip: '198.18.0.5/24', gateway: '198.18.0.1' } };
    expect(requirePrevResult(raw, '0.2.0').ips).toEqual([{ address: '198.18.0.5/24', gateway: '198.18.0.1' }]);
    const v1 = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/p' }], ips: [{ interface: 0, address: 'fd00::5/64' }] };
    expect(requirePrevResult(v1, '1.0.0')).toMatchObject({ interfaces: [{ name: 'eth0' }], ips: [{ interface: 0, address: 'fd00::5/64' }] });
  });

  test('an unreadable prevResult is a decoding failure (code 6) naming the field', () => {
    let err: unknown;
    try {
      parsePrevResult({ ips: [{ address: 'nope' }] }, '1.0.0');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(6);
    expect((err as Error).message).toContain('ips[0].address');
  });
});

describe('Attempts (best-effort verbs such as GC)', () => {
  test('runs every step past failures, then reports them all in one error with their causes', async () => {
    const ran: string[] = [];
    const attempts = new Attempts((e) => (e as Error).message);
    await attempts.run('IPAM GC', () => {
      ran.push('ipam');
      throw new Error('store locked');
    });
    await attempts.run('ipMasq GC', async () => {
      ran.push('masq');
      throw new Error('nft gone');
    });
    await attempts.run('spoof-check GC', () => ran.push('spoof'));
    expect(ran).toEqual(['ipam', 'masq', 'spoof']);
    let thrown: unknown;
    try {
      attempts.throwIfAny();
    } catch (e) {
      thrown = e;
    }
    expect((thrown as Error).message).toBe('IPAM GC: store locked; ipMasq GC: nft gone');
    expect(((thrown as Error).cause as AggregateError).errors).toHaveLength(2);
  });

  test('nothing is thrown when every step succeeded', async () => {
    const attempts = new Attempts(String);
    await attempts.run('a', () => undefined);
    expect(() => attempts.throwIfAny()).not.toThrow();
  });
});
