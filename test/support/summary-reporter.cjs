// Prints the one closing line CI reads: "N passed, N failed[, N skipped]".
class SummaryReporter {
  onRunComplete(_contexts, r) {
    const skipped = r.numPendingTests + r.numTodoTests;
    // A suite that failed to load has no failed tests of its own; count it so it cannot pass silently.
    const failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
    process.stdout.write(`\n${r.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  }
}
module.exports = SummaryReporter;
