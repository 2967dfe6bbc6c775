/**
 * Writes an esbuild result (built with `write: false`) so that a build can run while processes
 * started from the previous one are still running (a test run's globalSetup beside a running
 * suite): unchanged files are left alone, changed ones are replaced atomically (write + rename),
 * and files of `dir` matching `stale` that the build no longer produces are removed.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

export async function writeOutputs (files: Array<{ path: string, contents: Uint8Array }>, dir: string, stale?: RegExp): Promise<void> {
  await mkdir(dir, { recursive: true })
  for (const f of files) {
    const old = await readFile(f.path).catch(() => undefined)
    if (old !== undefined && Buffer.compare(old, f.contents) === 0) continue
    await mkdir(dirname(f.path), { recursive: true })
    const tmp = `${f.path}.${process.pid}.tmp`
    await writeFile(tmp, f.contents)
    await rename(tmp, f.path)
  }
  const made = new Set(files.map(f => f.path))
  for (const name of await readdir(dir)) {
    const path = join(dir, name)
    if (stale?.test(name) === true && !made.has(path)) await rm(path, { force: true })
  }
}
