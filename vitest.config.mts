import { defineConfig } from 'vitest/config';

// Forked workers: a crash inside the native addon fails one test file with a message instead of
// taking the whole run down. The JSON report is what .ci/run counts ("N passed, N failed").
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
  },
});
