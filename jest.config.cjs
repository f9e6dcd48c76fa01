/** Unit tests run on Node from the TypeScript sources; integration tests exec the built binary. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // execa and its dependencies are ESM-only; jest on Node 20 needs them compiled to CommonJS.
  transform: { '^.+\\.(t|m?j)s$': ['@swc/jest', { module: { type: 'commonjs' } }] },
  transformIgnorePatterns: [],
  // bun:ffi exists only inside the compiled executable; unit tests never load the syscall glue.
  moduleNameMapper: {
    '^bun:ffi$': '<rootDir>/test/support/no-bun-ffi.cjs',
    // unicorn-magic (an execa dependency) exports only an "import" condition.
    '^unicorn-magic$': '<rootDir>/node_modules/unicorn-magic/node.js',
  },
  testTimeout: 60000,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.cjs'],
};
