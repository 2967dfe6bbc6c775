/**
 * `npm run build`: the one build that bin/causeway runs, the tests spawn, and the image carries:
 * the CLI bundle (dist/cli/) and the debug page (dist/page/). Run by `npm ci`/`npm install`
 * (prepare), before every vitest run (test/build.global.ts) and by the image builds
 * (Dockerfile, scripts/image/build.sh). Deterministic: rebuilding unchanged sources rewrites no file.
 */
import { fileURLToPath } from 'node:url'
import { buildPage, PAGE_DIST } from '../signaling/page/build.ts'
import { buildCli, CLI_BUNDLE } from './build-cli.ts'

export async function buildAll (): Promise<void> {
  await Promise.all([buildCli(), buildPage()])
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildAll()
  process.stdout.write(`built ${CLI_BUNDLE} and ${PAGE_DIST}\n`)
}
