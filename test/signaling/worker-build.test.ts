/** `wrangler deploy --dry-run` bundles the Worker offline. */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, WRANGLER } from './servers.ts'

describe('wrangler deploy --dry-run', () => {
  it('builds the Worker bundle offline', async () => {
    const out = await mkdtemp(join(tmpdir(), 'causeway-bundle-'))
    try {
      const result = await new Promise<{ code: number, output: string }>(resolve => {
        execFile(WRANGLER, ['deploy', '--dry-run', '--outdir', out, '--config', join(ROOT, 'wrangler.toml')], {
          cwd: ROOT,
          timeout: 90_000,
          env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: '1', NO_COLOR: '1', WRANGLER_LOG_PATH: out },
        }, (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr }))
      })
      expect(result.code, result.output).toBe(0)
      const bundle = await stat(join(out, 'index.js'))
      expect(bundle.size).toBeGreaterThan(10_000)
      // Keeps the bundle honest (zod imported as a namespace, no Node polyfills): ~290 KiB today.
      expect(bundle.size).toBeLessThan(600 * 1024)
      console.log(`worker bundle: ${(bundle.size / 1024).toFixed(1)} KiB`)
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })
})
