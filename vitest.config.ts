import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code (*.test.ts); integration and end-to-end suites under test/.
// End-to-end suites drive one shared lab, so files never run in parallel.
export default defineConfig({
  test: {
    include: ['{protocol,compute,monitor,control,policies}/**/*.test.ts', 'test/**/*.test.ts'],
    fileParallelism: false,
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
