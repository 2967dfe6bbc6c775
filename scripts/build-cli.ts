/**
 * Compiles the CLI into one JavaScript module, dist/cli/causeway.mjs (our sources bundled,
 * split into a chunk per lazily loaded command; every npm package left external), with linked
 * source maps that bin/causeway enables (`--enable-source-maps`). bin/causeway runs nothing
 * else, so every command a test spawns runs this build. Skipping Node's type stripping at run
 * time also saves ~35 MB of RSS per process. Part of `npm run build` (scripts/build.ts).
 */
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'
import { writeOutputs } from './build-output.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const OUT = `${ROOT}dist/cli`
export const CLI_BUNDLE = `${OUT}/causeway.mjs`

export async function buildCli (): Promise<void> {
  const r = await build({
    entryPoints: [`${ROOT}cli/main.ts`],
    outdir: OUT,
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
    write: false,
  })
  // chunk names carry content hashes: a previous build's chunks are dropped
  await writeOutputs(r.outputFiles, OUT, /^chunk-.*\.mjs(\.map)?$/)
}
