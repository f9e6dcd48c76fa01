// Undo for a failed ADD (the reference's `defer func() { if err != nil { cleanup } }()` chains):
// each step that changed something registers how to take it back; on failure they run newest first.
//
//   const rollback = new Rollback((e) => log(`cleanup after failed ADD: ${e}`));
//   try {
//     createVeth(); rollback.push(() => deleteVeth());
//     await delegateAdd(); rollback.push(() => delegateDel());
//     return result;
//   } catch (e) {
//     await rollback.run();
//     throw e;
//   }

/**
 * Compensating actions, run newest first; a failing step is reported and the rest still run, unless
 * it failed fatally (`fatal: true`, e.g. NetnsRestoreError): the thread is then in an unknown
 * network namespace, and further steps would change the wrong one.
 */
export class Rollback {
  private steps: Array<() => unknown> = [];

  /** `onError` receives each step's failure (never thrown: the ADD's own error is what the caller reports). */
  constructor(private readonly onError: (err: unknown) => void) {}

  /** Registers the undo of a change just made; it may return a promise. */
  push(step: () => unknown): void {
    this.steps.push(step);
  }

  /** Runs every registered step once, newest first, awaiting each; the list is empty afterwards. */
  async run(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const s of steps) {
      try {
        await s();
      } catch (e) {
        this.onError(e);
        if (isFatal(e)) return;
      }
    }
  }
}

const isFatal = (e: unknown): boolean => typeof e === 'object' && e !== null && (e as { fatal?: unknown }).fatal === true;
