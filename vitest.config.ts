import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'bpf-ts-loader/test/**/*.test.ts'],
    // Kernel tests wait on real sockets and namespaces; nothing here is a timing assertion.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
