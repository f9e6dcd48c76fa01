/** Unit tests run on Node from the TypeScript sources; integration tests exec the built binary. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  // bun:ffi exists only inside the compiled executable; unit tests never load the syscall glue.
  moduleNameMapper: { '^bun:ffi$': '<rootDir>/test/support/no-bun-ffi.cjs' },
  testTimeout: 60000,
};
