/**
 * Where the built debug page lives: the one definition. `npm run build` (signaling/page/build.ts)
 * writes it to dist/page/ under the package root, beside the CLI bundle (dist/cli/), and
 * signaling/node/assets.ts serves it from there whether it runs from the sources or from the
 * bundle. wrangler.toml's `[assets] directory` names the same directory (a TOML file cannot import
 * this constant; location.test.ts fails when the two differ), and the Dockerfile copies dist/ whole.
 */
export const PAGE_DIR = 'dist/page'
