/**
 * Builds the debug page into dist/page/ (signaling/page/location.ts): bundles src/main.ts (with
 * the portable protocol and peer/ modules it imports) into one ES module, and copies index.html,
 * style.css and favicon.svg. Both signaling adapters serve it under /debug/ (Node from the file
 * system, the Worker through wrangler.toml's `[assets]`). Part of `npm run build`
 * (scripts/build.ts), which `npm ci`/`npm install` (prepare) and `npm test` run.
 */
import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeOutputs } from '../../scripts/build-output.ts'
import { PAGE_DIR } from './location.ts'

const HERE = fileURLToPath(new URL('./', import.meta.url))
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const PAGE_DIST = join(ROOT, PAGE_DIR)

export async function buildPage (opts: { minify?: boolean } = {}): Promise<void> {
  const r = await build({
    entryPoints: [`${HERE}src/main.ts`],
    outfile: join(PAGE_DIST, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: opts.minify ?? true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
    write: false,
  })
  const copies = await Promise.all(['index.html', 'style.css', 'favicon.svg'].map(async (f) => {
    return { path: join(PAGE_DIST, f), contents: new Uint8Array(await readFile(`${HERE}${f}`)) }
  }))
  await writeOutputs([...r.outputFiles, ...copies], PAGE_DIST)
}
