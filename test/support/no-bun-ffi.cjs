// Loaded by jest in place of bun:ffi: the syscall glue runs only in the compiled executable
// (integration tests), so any call from a unit test is a test bug.
module.exports = new Proxy({}, { get(_t, name) { throw new Error(`bun:ffi.${String(name)} is not available under jest`); } });
