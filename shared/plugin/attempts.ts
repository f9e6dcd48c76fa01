// GC and similar best-effort verbs: every step runs even when an earlier one failed (spec 1.1 GC:
// "continue on errors"), and the failures are reported together at the end.

/** Runs steps, keeping each failure as `<what>: <message>`; `throwIfAny` reports them all in one Error. */
export class Attempts {
  private readonly failures: string[] = [];
  private readonly causes: unknown[] = [];

  /** `describe` turns a failure into one line (shared/cni/errors errorMessage, passed in to keep this module free of policy). */
  constructor(private readonly describe: (e: unknown) => string) {}

  /** Runs `step` (sync or async); a failure is recorded, never thrown. */
  async run(what: string, step: () => unknown): Promise<void> {
    try {
      await step();
    } catch (e) {
      this.failures.push(`${what}: ${this.describe(e)}`);
      this.causes.push(e);
    }
  }

  /** Throws one Error joining every failure with "; " (an AggregateError of them as its cause); nothing when all succeeded. */
  throwIfAny(): void {
    if (this.failures.length) throw new Error(this.failures.join('; '), { cause: new AggregateError(this.causes) });
  }
}
