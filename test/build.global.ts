/**
 * vitest globalSetup: runs `npm run build` (scripts/build.ts) before any test, so every command a
 * test spawns through bin/causeway runs the bundle of the sources being tested, in `npm test`
 * and in a single-file run alike. The rule for tests: a test that runs a command spawns
 * bin/causeway (the bundle, as users run it); a test of a module imports its sources.
 */
import { buildAll } from '../scripts/build.ts'

export default async function setup (): Promise<void> {
  await buildAll()
}
