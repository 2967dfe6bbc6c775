/**
 * Compiles the CLI into one JavaScript module, dist/cli/causeway.mjs (our sources bundled,
 * split into a chunk per lazily loaded command; every npm package left external). bin/causeway runs it when it is newer than every source file,
 * and the TypeScript sources otherwise; skipping Node's type stripping at run time saves
 * ~35 MB of RSS per process. Run by `npm ci` (prepare) and before the tests.
 */
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../', import.meta.url))

await build({
  entryPoints: [`${ROOT}cli/main.ts`],
  outdir: `${ROOT}dist/cli`,
  outExtension: { '.js': '.mjs' },
  entryNames: 'causeway',
  chunkNames: 'chunk-[hash]',
  bundle: true,
  packages: 'external',
  format: 'esm',
  platform: 'node',
  target: 'node22',
  // chunks per lazily imported command: npm packages load only with the command that needs them
  splitting: true,
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
})
process.stdout.write('CLI built into dist/cli/causeway.mjs\n')
