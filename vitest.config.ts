import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

// One command runs every suite: unit tests beside the code, then the integration, workerd,
// NAT-lab, Kubernetes and browser suites under test/ (one file at a time: they start real
// processes and WebRTC stacks, and these machines have two cores). Before any of them,
// test/build.global.ts builds the bundle that bin/causeway runs: tests that run a command spawn
// bin/causeway; tests of a module import its sources.
export default defineConfig({
  test: {
    globalSetup: ['test/build.global.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['protocol/**/*.test.ts', 'signaling/**/*.test.ts', 'agent/**/*.test.ts', 'relay/**/*.test.ts', 'peer/**/*.test.ts', 'cli/**/*.test.ts'],
          exclude: ['**/node_modules/**', 'signaling/worker/**'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['**/node_modules/**'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        // Tests that run inside workerd (the Worker adapter's Durable Object store).
        plugins: [cloudflareTest({ wrangler: { configPath: './wrangler.toml' }, miniflare: { bindings: { CAUSEWAY_JOIN_TIMEOUT_MS: '500' } } })],
        test: {
          name: 'workerd',
          include: ['signaling/worker/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
    ],
  },
})
