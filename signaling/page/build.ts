/**
 * Builds the debug page into signaling/page/dist/: bundles src/main.ts (with the portable
 * protocol and peer/ modules it imports) into one ES module, and copies index.html,
 * style.css and favicon.svg. Both signaling adapters serve dist/ under /debug/. Run: `npm run build:page`.
 * dist/ is not tracked: `npm install` (prepare) and `npm test` (pretest) build it, which also
 * gives wrangler.toml's `[assets]` directory, needed by `wrangler dev`/`deploy` and the workerd
 * tests.
 */
import { build } from 'esbuild'
import { copyFile, mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const HERE = fileURLToPath(new URL('./', import.meta.url))
export const PAGE_DIST = `${HERE}dist/`

export async function buildPage (opts: { minify?: boolean } = {}): Promise<void> {
  await mkdir(PAGE_DIST, { recursive: true })
  await build({
    entryPoints: [`${HERE}src/main.ts`],
    outfile: `${PAGE_DIST}app.js`,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: opts.minify ?? true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
  })
  for (const f of ['index.html', 'style.css', 'favicon.svg']) await copyFile(`${HERE}${f}`, `${PAGE_DIST}${f}`)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildPage()
  process.stdout.write(`debug page built into ${PAGE_DIST}\n`)
}
